"""Dependency manifests of five ecosystems: added, removed, upgraded, downgraded, unpinned."""

from __future__ import annotations

import json

import pytest

from agents.pipeline import analyze_branch
from agents.report import Severity
from tests.support.gitrepo import RepoBuilder

CASES = {
    "requirements-dev.txt": (
        "pytest==8.2.0\nblack==24.4.0\nmypy==1.10.0\n",
        "pytest==7.4.0\nmypy==2.0.0\nhypothesis\nruff>=0.5\n",
    ),
    "pyproject.toml": (
        '[project]\nname = "x"\ndependencies = ["httpx==0.27.0", "rich>=13.0"]\n',
        '[project]\nname = "x"\ndependencies = ["httpx==0.26.0", "rich>=13.7", "attrs"]\n',
    ),
    "web/package.json": (
        json.dumps({"dependencies": {"react": "^18.2.0", "lodash": "4.17.21"}}),
        json.dumps(
            {
                "dependencies": {"react": "^17.0.2", "left-pad": "*"},
                "devDependencies": {"vitest": "^1.6.0"},
            }
        ),
    ),
    "svc/go.mod": (
        "module x\n\ngo 1.22\n\nrequire (\n\tgithub.com/pkg/errors v0.9.1\n)\n",
        "module x\n\ngo 1.22\n\nrequire (\n\tgithub.com/pkg/errors v0.8.0\n"
        "\tgolang.org/x/sync v0.7.0\n)\n",
    ),
    "core/Cargo.toml": (
        '[package]\nname = "x"\n\n[dependencies]\nserde = "1.0.200"\n'
        'tokio = { version = "1.37" }\n',
        '[package]\nname = "x"\n\n[dependencies]\nserde = "1.0.150"\ntokio = { version = "2.0" }\n'
        'rand = "*"\n',
    ),
}


@pytest.fixture
def rules(repo: RepoBuilder) -> dict[tuple[str, str], tuple[str, Severity, int | None]]:
    repo.commit({path: old for path, (old, _) in CASES.items()}, "manifests")
    repo.branch("feature/deps")
    repo.commit({path: new for path, (_, new) in CASES.items()})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/deps")
    out = {}
    for f in report.findings:
        if f.source.value == "dependencies":
            name = f.title.split(": ", 1)[1].split(" ")[0]
            out[(f.file or "", name)] = (f.rule, f.severity, f.start_line)
    return out


@pytest.mark.parametrize(
    ("file", "package", "rule", "severity"),
    [
        ("requirements-dev.txt", "pytest", "dependency-downgraded", Severity.medium),
        ("requirements-dev.txt", "black", "dependency-removed", Severity.info),
        ("requirements-dev.txt", "mypy", "dependency-upgraded", Severity.low),
        # Unpinned is normal in dev requirements and a library's metadata: info there.
        ("requirements-dev.txt", "hypothesis", "dependency-unpinned", Severity.info),
        ("requirements-dev.txt", "ruff", "dependency-added", Severity.info),
        ("pyproject.toml", "httpx", "dependency-downgraded", Severity.medium),
        ("pyproject.toml", "rich", "dependency-upgraded", Severity.info),
        ("pyproject.toml", "attrs", "dependency-unpinned", Severity.info),
        ("web/package.json", "react", "dependency-downgraded", Severity.medium),
        ("web/package.json", "lodash", "dependency-removed", Severity.info),
        ("web/package.json", "left-pad", "dependency-unpinned", Severity.low),
        ("web/package.json", "vitest", "dependency-added", Severity.info),
        ("svc/go.mod", "github.com/pkg/errors", "dependency-downgraded", Severity.medium),
        ("svc/go.mod", "golang.org/x/sync", "dependency-added", Severity.info),
        ("core/Cargo.toml", "serde", "dependency-downgraded", Severity.medium),
        ("core/Cargo.toml", "tokio", "dependency-upgraded", Severity.low),
        ("core/Cargo.toml", "rand", "dependency-unpinned", Severity.low),
    ],
)
def test_manifest_change_is_classified(
    rules: dict[tuple[str, str], tuple[str, Severity, int | None]],
    file: str,
    package: str,
    rule: str,
    severity: Severity,
) -> None:
    assert (file, package) in rules, sorted(rules)
    got_rule, got_severity, line = rules[(file, package)]
    assert (got_rule, got_severity) == (rule, severity)
    if rule != "dependency-removed":
        assert line is not None


def test_broken_manifest_is_reported_not_crashed(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch("feature/broken", {"pyproject.toml": "[project\nname = 'x'\n"})
    report = analyze_branch(repo.root, "feature/broken")
    [finding] = [f for f in report.findings if f.rule == "invalid-manifest"]
    assert finding.file == "pyproject.toml"
    assert next(a for a in report.agents if a.name == "dependencies").status == "done"
