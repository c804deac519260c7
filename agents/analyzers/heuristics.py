"""Diff heuristics: what the shape of a change says about its risk, without reading its meaning."""

from __future__ import annotations

import re

from agents.context import files as kinds
from agents.context.code import HIDDEN_CHARS
from agents.context.git import DiffContext, FileDiff
from agents.report import Finding, Severity, Source, fingerprint

LARGE_CHANGE_LINES = 500
LARGE_CHANGE_FILES = 25
HUGE_CHANGE_LINES = 2000

# A sensitive area touched is a notice, not a problem: it points the reviewer (and the model)
# there and weighs in the verdict. CI changes are judged by what they change (`_ci_change`).
_SENSITIVE = {
    "ci": (
        Severity.info,
        "CI configuration changed",
        "Check who can trigger it and what "
        "secrets it can read; CI runs with the repository's credentials.",
    ),
    "migration": (
        Severity.low,
        "Database migration changed",
        "Check it is reversible, "
        "safe on a live table (locks, backfills) and ordered after the code it needs.",
    ),
    "infra": (
        Severity.info,
        "Infrastructure definition changed",
        "Check the blast radius: network exposure, permissions, and what changes on apply.",
    ),
    "auth": (
        Severity.info,
        "Security-sensitive code changed",
        "Review authentication, "
        "authorization and secret handling with extra care; add tests for denial paths.",
    ),
}
_TEST_DEF = re.compile(
    r"^\s*(async\s+)?def\s+(test_\w+)|^\s*func\s+(Test\w+)|\b(it|test)\(\s*['\"]"
)


def _finding(
    rule: str,
    severity: Severity,
    title: str,
    detail: str,
    suggestion: str,
    file: str | None = None,
    line: int | None = None,
    confidence: float = 0.8,
) -> Finding:
    return Finding(
        fingerprint=fingerprint(source=Source.heuristic, rule=rule, file=file, anchor=title),
        agent="risk",
        category="risk",
        rule=rule,
        severity=severity,
        confidence=confidence,
        file=file,
        start_line=line,
        end_line=line,
        title=title,
        detail=detail,
        suggestion=suggestion,
        source=Source.heuristic,
    )


def change_size(diff: DiffContext) -> tuple[int, int]:
    added = sum(len(f.added_lines) for f in diff.files)
    removed = sum(len(f.removed_lines) for f in diff.files)
    return added, removed


def run_heuristics(diff: DiffContext) -> list[Finding]:
    findings: list[Finding] = []
    added, removed = change_size(diff)
    changed = added + removed
    if changed >= LARGE_CHANGE_LINES or len(diff.files) >= LARGE_CHANGE_FILES:
        findings.append(
            _finding(
                "size",
                # A notice for the reviewer, not a problem in the code.
                Severity.low if changed >= HUGE_CHANGE_LINES else Severity.info,
                f"Large change: {len(diff.files)} files, +{added} -{removed} lines",
                "Large changes are reviewed less carefully and are harder to roll back.",
                "Split it into smaller branches that can be reviewed and reverted on their own.",
            )
        )
    added_tests = {
        name for f in diff.files for line in f.added_lines.values() if (name := _test_name(line))
    }
    # A branch that removes more code than it adds is retiring a feature: its tests go too.
    source = [f for f in diff.files if not kinds.is_test_path(f.old_path or f.path)]
    retiring = sum(len(f.removed_lines) for f in source) > sum(len(f.added_lines) for f in source)
    for file in diff.files:
        findings.extend(_sensitive(file))
        findings.extend(_removed_tests(file, added_tests, retiring))
        findings.extend(_hidden_characters(file))
    findings.extend(_no_test_changes(diff))
    return findings


def _sensitive(file: FileDiff) -> list[Finding]:
    kind = kinds.sensitive_kind(file.path)
    if kind is None or file.status == "deleted":
        return []
    severity, title, suggestion = _SENSITIVE[kind]
    if kind == "ci":
        judged = _ci_change(file)
        if judged is None:
            return []
        severity, title, suggestion = judged
    return [
        _finding(
            f"sensitive-path:{kind}",
            severity,
            f"{title}: {file.path}",
            f"The branch changes {file.path} (+{len(file.added_lines)} "
            f"-{len(file.removed_lines)} lines).",
            suggestion,
            file=file.path,
            line=min(file.added_lines) if file.added_lines else None,
            confidence=0.7,
        )
    ]


def _hidden_characters(file: FileDiff) -> list[Finding]:
    """Zero-width and bidirectional control characters make code read differently from how it
    runs ("Trojan Source"), and can hide instructions from a human reviewer."""
    lines = [
        n
        for n, text in sorted(file.added_lines.items())
        # A byte-order mark at the very start of a file is an encoding marker, not a trick.
        if HIDDEN_CHARS.search(text[1:] if n == 1 and text.startswith("\ufeff") else text)
    ]
    if not lines:
        return []
    shown = ", ".join(str(n) for n in lines[:10])
    # Test vectors and fixtures (URL, IDNA, bidi parsing) contain them on purpose.
    where = kinds.illustrative_kind(file.path)
    return [
        _finding(
            "hidden-unicode",
            Severity.high if where is None else Severity.low,
            f"Hidden Unicode control characters in {file.path}",
            f"Added lines {shown} contain zero-width or bidirectional control characters."
            + (f" Rated low: in {where}." if where else ""),
            "Remove them; if a string needs one, write it as an escape sequence.",
            file=file.path,
            line=lines[0],
            confidence=0.9,
        )
    ]


def _removed_tests(file: FileDiff, added_anywhere: set[str], retiring: bool) -> list[Finding]:
    """Tests whose name the branch removed and added nowhere: a renamed, moved or split test is
    not a deleted one. When the branch removes more code than it adds, the tests likely went
    with the feature they tested: low, and said."""
    if not kinds.is_test_path(file.old_path or file.path):
        return []
    removed = {name for line in file.removed_lines if (name := _test_name(line))}
    gone = sorted(removed - added_anywhere)
    if not gone:
        return []
    listed = "Removed: " + ", ".join(gone[:10]) + (" ..." if len(gone) > 10 else "")
    severity = Severity.low if retiring else Severity.medium
    if retiring:
        listed += " (the branch removes more code than it adds: a feature going away?)"
    if file.status == "deleted":
        return [
            _finding(
                "deleted-test",
                severity,
                f"Test file deleted: {file.path}",
                f"{listed}; no test of these names is added elsewhere in the branch.",
                "Say in the branch why these tests are no longer needed, or move them.",
                file=file.path,
                confidence=0.9,
            )
        ]
    return [
        _finding(
            "deleted-test",
            severity,
            f"{len(gone)} test(s) removed from {file.path}",
            f"{listed}; no test of these names is added elsewhere in the branch.",
            "Make sure the behaviour they checked is still tested elsewhere.",
            file=file.path,
            confidence=0.8,
        )
    ]


# CI lines that only say which versions and platforms to run on.
_CI_MATRIX_LINE = re.compile(
    r"^\s*+(?:-\s*+)?((\{[^}]*\}|\[[^\]]*\]|['\"]?[\w.*+~^<>=-]++['\"]?)(?:\s*+,)?"
    r"|(python|python-version|pythons?|node|node-version|go|go-version|java|java-version|ruby"
    r"|ruby-version|rust|toolchain|os|platform|tox|toxenv|tox-env|env|envs|version|versions"
    r"|include|exclude|matrix|name|experimental|allow-prereleases|fail-fast|max-parallel"
    r"|continue-on-error|cache|architecture|arch)\s*+:.*)\s*+(#.*)?$",
    re.IGNORECASE,
)
_CI_USES = re.compile(r"^\s*+(?:-\s*+)?uses\s*+:\s*+['\"]?([^@\s'\"]++)@\S+")
# Past this length a line is data (a key, a blob), not a CI edit to classify by pattern.
_LONG_LINE = 1000
_CI_INJECTION = re.compile(
    r"\$\{\{\s*(github\.event\.(issue|pull_request|comment|review|review_comment|discussion"
    r"|head_commit|commits|pages|workflow_run)[\w.\[\]*]*\.(title|body|name|message|label|ref"
    r"|email|head_ref|default_branch)|github\.head_ref)",
    re.IGNORECASE,
)
_CI_RISKY = re.compile(
    r"pull_request_target|workflow_run|\bpermissions\s*:|write-all|:\s*write\b|\bsecrets\."
    r"|id-token|self-hosted|persist-credentials\s*:\s*true|(curl|wget)[^|\n]*\|\s*(ba|z)?sh\b",
    re.IGNORECASE,
)


def _ci_change(file: FileDiff) -> tuple[Severity, str, str] | None:
    """How risky a CI edit is, from its lines: untrusted input in a script is high; triggers,
    permissions and secrets are medium; bumping an action's version is a notice; a change to
    the version matrix alone is nothing to report."""
    added = [t for t in file.added_lines.values() if t.strip() and not t.strip().startswith("#")]
    removed = [t for t in file.removed_lines if t.strip() and not t.strip().startswith("#")]
    if any(len(t) > _LONG_LINE for t in added + removed):
        return _SENSITIVE["ci"]
    if any(_CI_INJECTION.search(t) for t in added):
        return (
            Severity.high,
            "Untrusted event text expanded in a CI script",
            "Pass it through an environment variable (env: TITLE: ${{ ... }}) and quote "
            '"$TITLE"; never expand ${{ github.event.* }} inside run:.',
        )
    if any(_CI_RISKY.search(t) for t in added):
        return (
            Severity.medium,
            "CI triggers, permissions or secrets changed",
            "Check who can trigger it, which token permissions and secrets it gets, and "
            "whether code from a fork can run with them.",
        )
    changed = added + removed
    if not changed or all(_CI_MATRIX_LINE.match(t) and not _CI_USES.match(t) for t in changed):
        return None
    bumps_old = {m.group(1) for t in removed if (m := _CI_USES.match(t))}
    bumps_new = {m.group(1) for t in added if (m := _CI_USES.match(t))}
    others = [t for t in changed if not _CI_USES.match(t) and not _CI_MATRIX_LINE.match(t)]
    if bumps_new and bumps_new <= bumps_old and not others:
        return (
            Severity.info,
            "CI action versions changed",
            "Pin actions to a full commit id, and read what the new version changes.",
        )
    severity, title, suggestion = _SENSITIVE["ci"]
    return severity, title, suggestion


def _test_name(line: str) -> str | None:
    match = _TEST_DEF.search(line)
    if not match:
        return None
    return match.group(2) or match.group(3) or line.strip()[:80]


def _no_test_changes(diff: DiffContext) -> list[Finding]:
    """Code added while no test file changed at all. Python is left to the tests agent, which
    checks each new function precisely; this covers every other language."""
    source_added = sum(
        len(f.added_lines)
        for f in diff.files
        if not kinds.is_test_path(f.path)
        and not kinds.is_python(f.path)
        and kinds.sensitive_kind(f.path) not in ("ci", "infra")
        and _is_code(f.path)
    )
    tests_touched = any(kinds.is_test_path(f.path) for f in diff.files)
    if source_added < 20 or tests_touched:
        return []
    return [
        _finding(
            "no-test-changes",
            Severity.low,
            f"{source_added} lines of code added and no test changed",
            "No file under a test folder or named like a test was touched by this branch.",
            "Add tests for the new behaviour, or say why none are needed.",
            confidence=0.6,
        )
    ]


_CODE_SUFFIXES = (
    ".py",
    ".js",
    ".jsx",
    ".ts",
    ".tsx",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".rb",
    ".php",
    ".cs",
    ".c",
    ".cc",
    ".cpp",
    ".h",
    ".hpp",
    ".swift",
    ".scala",
)


def _is_code(path: str) -> bool:
    return path.endswith(_CODE_SUFFIXES) and not kinds.is_generated_name(path)
