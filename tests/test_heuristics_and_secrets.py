"""Diff heuristics, and secrets in any language with the value never shown."""

from __future__ import annotations

from agents.pipeline import analyze_branch
from agents.report import Severity
from tests.support.gitrepo import RepoBuilder


def test_sensitive_paths_are_flagged_by_kind(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/sensitive",
        {
            ".github/workflows/ci.yml": "on: push\njobs: {}\n",
            "db/migrations/0002_add_index.sql": "CREATE INDEX i ON t (c);\n",
            "deploy/Dockerfile": "FROM python:3.12\n",
            "shop/auth/session.py": "TIMEOUT = 30\n",
            "docs/guide.md": "hello\n",
        },
    )
    report = analyze_branch(repo.root, "feature/sensitive")
    flagged = {
        f.file: (f.rule, f.severity) for f in report.findings if f.rule.startswith("sensitive")
    }
    # A sensitive area is a notice (it points the reviewer there and weighs in the verdict),
    # not a problem in itself; an ordinary CI edit is one too.
    assert flagged == {
        ".github/workflows/ci.yml": ("sensitive-path:ci", Severity.info),
        "db/migrations/0002_add_index.sql": ("sensitive-path:migration", Severity.low),
        "deploy/Dockerfile": ("sensitive-path:infra", Severity.info),
        "shop/auth/session.py": ("sensitive-path:auth", Severity.info),
    }
    assert report.risk.level.value == "medium"
    assert any(
        r.startswith("medium because it touches sensitive areas:")
        and "shop/auth/session.py" in r
        and "db/migrations/0002_add_index.sql" in r
        for r in report.risk.reasons
    ), report.risk.reasons


def test_deleted_tests_are_flagged(repo: RepoBuilder) -> None:
    repo.commit({"tests/test_more.py": "def test_a():\n    pass\n\n\ndef test_b():\n    pass\n"})
    repo.branch("feature/less-tests")
    repo.commit({"tests/test_cart.py": None, "tests/test_more.py": "def test_a():\n    pass\n"})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/less-tests")
    deleted = {f.title: f.severity for f in report.findings if f.rule == "deleted-test"}
    assert deleted == {
        "Test file deleted: tests/test_cart.py": Severity.medium,
        "1 test(s) removed from tests/test_more.py": Severity.medium,
    }


def test_large_change_is_flagged(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch("feature/big", {f"data/f{i}.txt": "x\n" * 30 for i in range(30)})
    report = analyze_branch(repo.root, "feature/big")
    [size] = [f for f in report.findings if f.rule == "size"]
    assert size.title == "Large change: 30 files, +900 -0 lines"
    assert size.severity is Severity.info  # a notice for the reviewer, not a problem


def test_code_without_test_changes_in_another_language(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/js", {"web/app.js": "".join(f"export const v{i} = {i};\n" for i in range(25))}
    )
    report = analyze_branch(repo.root, "feature/js")
    assert [f.rule for f in report.findings if f.rule == "no-test-changes"] == ["no-test-changes"]


def test_secrets_in_any_text_file_are_found_and_masked(make_branch) -> None:  # type: ignore[no-untyped-def]
    key = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    private = "-----BEGIN RSA PRIVATE KEY-----"
    repo = make_branch(
        "feature/creds",
        {
            "web/config.js": f'const token = "{key}";\n',
            "deploy/id_rsa": f"{private}\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n",
            "settings.yaml": "db:\n  password: hunter2-very-long-Secret-9\n",
        },
    )
    report = analyze_branch(repo.root, "feature/creds")
    secrets = {(f.file, f.rule): f for f in report.findings if f.category == "secret"}
    assert secrets[("web/config.js", "GitHub Token")].severity is Severity.critical
    assert secrets[("deploy/id_rsa", "Private Key")].severity is Severity.critical
    assert secrets[("settings.yaml", "Secret Keyword")].severity is Severity.high
    dumped = report.model_dump_json()
    assert key not in dumped
    assert "hunter2-very-long-Secret-9" not in dumped
    assert "ghp_********" in secrets[("web/config.js", "GitHub Token")].detail


def test_a_secret_already_on_the_base_is_not_reported(repo: RepoBuilder) -> None:
    repo.commit({"old.env": 'API_TOKEN="AKIA4HJXZQ2WBNVGL7PK"\n'}, "old secret")
    repo.branch("feature/unrelated")
    repo.commit({"old.env": 'API_TOKEN="AKIA4HJXZQ2WBNVGL7PK"\nDEBUG=1\n'})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/unrelated")
    assert [f for f in report.findings if f.category == "secret"] == []


def test_a_large_scan_spread_over_processes_finds_what_one_process_finds(
    make_branch,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """detect-secrets and bandit are pure Python: a large change is dealt out to a process per
    core. The findings are the same, and a worker that fails costs time, never findings."""
    from agents.analyzers import processes, secrets_scan, security
    from agents.pipeline import analyze_branch
    from agents.reuse import MemoryAnswers

    files = {
        f"app/m{n}.py": f'TOKEN_{n} = "ghp_{n:04d}abcdefghijklmnopqrstuvwxyzABCDEFGH"\n'
        f"def f{n}(x):\n    return eval(x)\n"
        for n in range(6)
    }
    files["config/prod.env"] = 'AWS_KEY="AKIA4HJXZQ2WBNVGL7PK"\n'
    repo = make_branch("feature/many", files)

    def found() -> list[tuple[str | None, str, int | None, str]]:
        report = analyze_branch(repo.root, "feature/many", kept=MemoryAnswers())
        assert not report.coverage.not_run
        return sorted((f.file, f.rule, f.start_line, f.fingerprint) for f in report.findings)

    alone = found()
    monkeypatch.setattr(processes, "spread_over", lambda: 3)
    monkeypatch.setattr(secrets_scan, "spread_over", lambda: 3)
    monkeypatch.setattr(security, "spread_over", lambda: 3)
    monkeypatch.setattr(secrets_scan, "PARALLEL_FROM_LINES", 1)
    monkeypatch.setattr(security, "PARALLEL_FROM_BYTES", 1)
    started: list[list[str]] = []
    real_bandit = security._bandit
    monkeypatch.setattr(
        security, "_bandit", lambda ws, targets: started.append(targets) or real_bandit(ws, targets)
    )
    spread = found()
    assert spread == alone and len(alone) >= 13
    assert len(started) == 3 and sorted(t for share in started for t in share) == sorted(
        p for p in files if p.endswith(".py")
    )

    # A worker that fails: its share is scanned in this process instead.
    monkeypatch.setattr(secrets_scan, "WORKER", "agents.analyzers.no_such_module")
    assert found() == alone
