"""A branch with planted problems yields each as a finding with a sensible severity."""

from __future__ import annotations

import pytest

from agents.pipeline import analyze_branch
from agents.report import Finding, Report, RiskLevel, Severity
from tests.support.gitrepo import RepoBuilder


@pytest.fixture
def report(planted_repo: RepoBuilder) -> Report:
    return analyze_branch(planted_repo.root, "feature/planted")


def only(report: Report, **match: object) -> Finding:
    found = [f for f in report.findings if all(getattr(f, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one finding matching {match}, got {found}"
    return found[0]


def test_hard_coded_aws_key_is_critical_and_masked(report: Report) -> None:
    finding = only(report, rule="AWS Access Key")
    assert finding.severity is Severity.critical
    assert (finding.file, finding.start_line) == ("shop/config.py", 1)
    assert "AKIA4HJXZQ2WBNVGL7PK" not in report.model_dump_json()
    assert "AKIA****" in finding.detail


def test_eval_of_input_is_high(report: Report) -> None:
    finding = only(report, rule="B307")
    assert finding.severity is Severity.high
    assert (finding.file, finding.start_line) == ("shop/orders.py", 7)


def test_sql_from_f_string_is_high(report: Report) -> None:
    finding = only(report, rule="B608")
    assert finding.severity is Severity.high
    assert finding.start_line == 11
    assert "parameterized" in finding.suggestion


def test_shell_true_is_high(report: Report) -> None:
    finding = only(report, rule="B602")
    assert finding.severity is Severity.high
    assert finding.start_line == 16


def test_yaml_load_without_loader_is_high(report: Report) -> None:
    # yaml.load without a safe loader builds arbitrary objects: remote code execution.
    finding = only(report, rule="B506")
    assert finding.severity is Severity.high
    assert finding.start_line == 20


def test_new_functions_without_tests_are_named(report: Report) -> None:
    finding = only(report, rule="untested-code", file="shop/orders.py")
    assert finding.severity is Severity.low
    for name in ("apply_discount", "find_order", "export", "load_rules"):
        assert name in finding.detail


def test_downgraded_dependency_is_medium(report: Report) -> None:
    finding = only(report, rule="dependency-downgraded")
    assert finding.severity is Severity.medium
    assert (finding.file, finding.start_line) == ("requirements.txt", 1)
    assert "requests" in finding.title


def test_risk_verdict_is_critical_with_reasons(report: Report) -> None:
    assert report.risk.level is RiskLevel.critical
    assert report.risk.score >= 75
    assert any("AWS Access Key" in reason for reason in report.risk.reasons)


def test_every_agent_ran_and_coverage_lists_every_changed_file(report: Report) -> None:
    assert [(a.name, a.status) for a in report.agents] == [
        ("code_review", "done"),
        ("tests", "done"),
        ("dependencies", "done"),
        ("feature_flags", "done"),
        ("risk", "done"),
    ]
    covered = set(report.coverage.files_analyzed) | {s.file for s in report.coverage.files_skipped}
    assert covered == {"requirements.txt", "shop/config.py", "shop/orders.py"}


def test_clean_branch_has_no_high_findings(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/clean",
        {
            "shop/cart.py": (
                "def total(prices):\n    return sum(prices)\n\n\n"
                "def average(prices):\n    return total(prices) / len(prices) if prices else 0\n"
            ),
            "tests/test_cart.py": (
                "from shop.cart import average, total\n\n\n"
                "def test_total():\n    assert total([1, 2]) == 3\n\n\n"
                "def test_average():\n    assert average([2, 4]) == 3\n"
            ),
        },
    )
    report = analyze_branch(repo.root, "feature/clean")
    assert report.findings_at_least(Severity.medium) == []
    assert report.risk.level is RiskLevel.low


def test_findings_only_on_changed_lines(make_branch) -> None:  # type: ignore[no-untyped-def]
    """A problem already on the base branch is not the branch's problem."""
    repo = make_branch(
        "feature/touch", {"shop/cart.py": "def total(prices):\n    return sum(prices)\n# tweak\n"}
    )
    repo.checkout("main")
    repo.commit({"shop/legacy.py": "def run(x):\n    return eval(x)\n"}, "legacy on main")
    repo.git("checkout", "-q", "feature/touch")
    repo.git("merge", "-q", "--no-edit", "main")
    repo.commit({"shop/legacy.py": "def run(x):\n    return eval(x)\n\n\nVERSION = 2\n"}, "edit")
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/touch")
    assert not [f for f in report.findings if f.rule == "B307"]
