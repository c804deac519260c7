"""The shortcut secrets scan gives exactly what detect-secrets' own `scan_diff` gives."""

from __future__ import annotations

import pytest
from detect_secrets.core.scan import scan_diff as library_scan
from detect_secrets.settings import default_settings, get_settings

from agents.analyzers import secrets_lines

# Lines of every kind the default plugins and filters treat differently: real key formats,
# guesses (keywords, entropy above and below the limit), what the filters drop (templates,
# indirect references, sequences, UUIDs, allowlist pragmas on the line and the line before),
# and ordinary code.
LINES = [
    'AWS_KEY = "AKIAIOSFODNN7EXAMPLE"',
    'token = "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"',
    "-----BEGIN RSA PRIVATE KEY-----",
    'jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.'
    'dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"',
    'url = "https://admin:hunter2hunter2@db.internal.example.com/x"',
    'password = "correct-horse-battery"',
    'db_password = os.environ["DB_PASSWORD"]',
    'secret = "${SECRET_FROM_ENV}"',
    'api_key = "abcdefghijklmnopqrstuvwxyz"',
    'blob = "c2VjcmV0LXRva2VuLXRoYXQtaXMtcXVpdGUtbG9uZy1hbmQtcmFuZG9tLTk4MzQ3"',
    'low = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"',
    'hexy = "8f14e45fceea167a5a36dedd4bea2543aa0f1e3b"',
    'uuid = "3fa85f64-5717-4562-b3fc-2c963f66afa6"',
    'allowed = "AKIAIOSFODNN7EXAMPLF"  # pragma: allowlist secret',
    "# pragma: allowlist nextline secret",
    'next_one = "AKIAIOSFODNN7EXAMPLG"',
    'server = "93.184.216.34"',
    "def handler(payload):",
    "    return json.loads(payload)",
    'stripe = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
    'slack = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"',
    "",
]


def _file(name: str, lines: list[str], start: int, old: int) -> str:
    """One file's diff adding `lines` at line `start`, after `old` context lines."""
    body = [f"diff --git a/{name} b/{name}", f"--- a/{name}", f"+++ b/{name}"]
    body.append(f"@@ -{start},{old} +{start},{old + len(lines)} @@")
    body += [" kept line" for _ in range(old)]
    body += [f"+{line}" for line in lines]
    return "\n".join(body) + "\n"


DIFF = (
    _file("f0.py", LINES, 1, 0)  # a new file: line numbers match positions
    + _file("f1.py", LINES[::-1], 40, 3)  # added lower down a longer file
    + _file("f2.yaml", [line.replace(" = ", ": ") for line in LINES], 7, 1)
    + _file("package-lock.json", LINES[:4], 1, 0)  # a lock file: filtered by name
    + _file("f3.md", LINES[5:9] * 3, 100, 2)
)


def _answers(scan: object) -> list[tuple[str, str, int, str, bool]]:
    with default_settings():
        get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")
        return [
            (s.filename, s.type, s.line_number, s.secret_value, s.is_verified)
            for s in scan(DIFF)  # type: ignore[operator]
        ]


def test_the_shortcut_scan_answers_as_detect_secrets_does() -> None:
    expected = _answers(library_scan)
    kinds = {kind for _, kind, _, _, _ in expected}
    # The corpus exercises real formats and guesses, and the filters drop some of its lines.
    assert {"AWS Access Key", "Secret Keyword", "Private Key"} <= kinds, kinds
    assert len(kinds) >= 6
    assert not any(value.endswith("EXAMPLF") for _, _, _, value, _ in expected)
    assert not any(name == "package-lock.json" for name, _, _, _, _ in expected)
    # The pragma on the line before works through the context (in a new file, where the
    # library's context is the file's own lines).
    assert not any(name == "f0.py" and v.endswith("EXAMPLG") for name, _, _, v, _ in expected)
    assert _answers(secrets_lines.scan_diff) == expected


def test_a_shortcut_that_no_longer_fits_falls_back_to_detect_secrets_own_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A detect-secrets release whose private helpers take other arguments: the scan falls back
    to the library's own `scan_diff`, with the same answers, instead of failing every file."""

    def changed(*args: object, **kwargs: object) -> bool:
        raise TypeError("_is_filtered_out() got an unexpected keyword argument 'context'")

    monkeypatch.setattr(secrets_lines, "_filtered_out", changed)
    expected = _answers(library_scan)
    hits, failed = _scan_all()
    assert failed == [] and len(hits) == len(expected) > 0


def _scan_all() -> tuple[list[secrets_lines.Hit], list[int]]:
    return secrets_lines.scan_diffs([("f0.py", DIFF)])


def test_a_file_whose_scan_fails_is_said_never_taken_for_clean(
    make_branch,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One file's scan fails: the others' findings stay, the report says detect-secrets did not
    check that file (a partial report), and nothing is kept for it, so the next run scans it."""
    from agents.pipeline import analyze_branch
    from agents.reuse import MemoryAnswers

    repo = make_branch(
        "feature/keys",
        {
            "deploy/a.env": 'AWS_ACCESS_KEY_ID="AKIA4HJXZQ2WBNVGL7PK"\n',
            "deploy/b.env": 'OTHER_KEY_ID="AKIA4HJXZQ2WBNVGL7PQ"\n',
        },
    )
    real = secrets_lines.scan_diff

    def flaky(text: str):  # type: ignore[no-untyped-def]
        if "OTHER_KEY_ID" in text:
            raise RuntimeError("a file detect-secrets chokes on")
        return real(text)

    monkeypatch.setattr(secrets_lines, "scan_diff", flaky)
    kept = MemoryAnswers()
    report = analyze_branch(repo.root, "feature/keys", kept=kept)
    assert [f.file for f in report.findings if f.category == "secret"] == ["deploy/a.env"]
    assert any(
        "detect-secrets on deploy/b.env did not run" in line for line in report.coverage.not_run
    ), report.coverage.not_run
    monkeypatch.setattr(secrets_lines, "scan_diff", real)
    again = analyze_branch(repo.root, "feature/keys", kept=kept)
    assert sorted(f.file for f in again.findings if f.category == "secret") == [
        "deploy/a.env",
        "deploy/b.env",
    ]
    assert again.coverage.not_run == []
