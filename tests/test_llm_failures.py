"""Model failures end in a clear, tested outcome, and never lose the analyzers' results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from agents.llm import LLMSession, LLMSettings
from agents.pipeline import analyze_branch
from agents.report import Report, Source
from tests.support.fakes.anthropic_api import API_KEY, FakeAnthropic, tokens
from tests.support.gitrepo import RepoBuilder
from tests.support.llm_helpers import session_for


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def run(
    repo: RepoBuilder, fake: FakeAnthropic, branch: str = "feature/planted", **settings: Any
) -> Report:
    return analyze_branch(repo.root, branch, llm=session_for(fake, **settings))


def agent(report: Report, name: str) -> tuple[str, str | None]:
    found = next(a for a in report.agents if a.name == name)
    return found.status, found.error


def test_401_says_to_check_the_key_and_keeps_the_analyzers(
    planted_repo: RepoBuilder, fake: FakeAnthropic
) -> None:
    report = analyze_branch(
        planted_repo.root, "feature/planted", llm=session_for(fake, api_key="sk-ant-wrong")
    )
    status, error = agent(report, "code_review")
    assert status == "failed"
    assert error == "Anthropic rejected the API key (401): check ANTHROPIC_API_KEY."
    assert any(f.rule == "B307" for f in report.findings)  # analyzers' findings stay
    assert agent(report, "dependencies") == ("done", None)
    assert any(f.rule == "dependency-downgraded" for f in report.findings)
    assert [c.outcome for c in report.llm_calls if c.agent == "code_review"] == []  # counted first
    assert len(fake.requests) >= 1 and fake.requests[0].path.endswith("count_tokens")


def test_429_is_retried_after_retry_after(planted_repo: RepoBuilder, fake: FakeAnthropic) -> None:
    fake.fail_next(429, role="code_review")
    report = run(planted_repo, fake)
    assert agent(report, "code_review") == ("done", None)
    first, second = fake.messages("code_review")[:2]
    assert second.at - first.at >= 0.9  # the fake said retry-after: 1
    assert second.headers["x-stainless-retry-count"] == "1"


def test_429_that_persists_fails_the_agent_as_retryable(
    planted_repo: RepoBuilder, fake: FakeAnthropic
) -> None:
    fake.fail_next(429, times=3, role="code_review", headers={"retry-after": "0"})
    report = run(planted_repo, fake, max_retries=2)
    status, error = agent(report, "code_review")
    assert status == "failed"
    assert error == "Rate limited by the Anthropic API (429), still after 2 retries. (retryable)"
    assert len(fake.messages("code_review")) == 3
    assert agent(report, "tests")[0] == "done"
    assert agent(report, "risk")[0] == "done"
    assert [c.outcome for c in report.llm_calls if c.agent == "code_review"] == ["rate_limited"]


def test_529_overloaded_fails_the_agent_as_retryable(
    planted_repo: RepoBuilder, fake: FakeAnthropic
) -> None:
    fake.fail_next(529, times=3, role="risk", headers={"retry-after": "0"})
    report = run(planted_repo, fake, max_retries=2)
    status, error = agent(report, "risk")
    assert status == "failed"
    assert error is not None and "overloaded (529)" in error and "retryable" in error
    assert agent(report, "code_review")[0] == "done"
    assert report.risk.level.value == "critical"  # the verdict still comes from the findings


def test_max_tokens_is_retried_once_with_a_smaller_chunk(
    planted_repo: RepoBuilder, fake: FakeAnthropic
) -> None:
    fake.odd_next("max_tokens", role="code_review")
    report = run(planted_repo, fake)
    calls = [c for c in report.llm_calls if c.agent == "code_review"]
    assert [c.outcome for c in calls] == ["max_tokens", "ok", "ok"]
    sizes = [len(r.user) for r in fake.messages("code_review")]
    assert sizes[1] < sizes[0] and sizes[2] < sizes[0]
    assert not [s for s in report.coverage.files_skipped if "not reviewed" in s.reason]


def test_malformed_json_twice_is_disclosed_in_coverage(
    make_branch,
    fake: FakeAnthropic,  # type: ignore[no-untyped-def]
) -> None:
    repo = make_branch("feature/one", {"shop/one.py": "def one():\n    return 1\n"})
    fake.odd_next("malformed", role="code_review", times=2)
    report = run(repo, fake, branch="feature/one")
    assert agent(report, "code_review") == ("done", None)
    skipped = {s.file: s.reason for s in report.coverage.files_skipped}
    assert skipped["shop/one.py"].startswith(
        "not reviewed by the model (model answer unusable: The model's answer did not match"
    )
    assert "shop/one.py" in report.coverage.files_analyzed  # the analyzers still ran on it


def test_the_cost_cap_stops_calls_and_says_so(
    planted_repo: RepoBuilder, fake: FakeAnthropic
) -> None:
    report = run(planted_repo, fake, max_run_cost_usd=0.0001)
    assert fake.messages() == []
    assert "cost cap (CHATOPS_MAX_RUN_COST_USD = $0.00) would be passed" in report.summary
    skipped = [s for s in report.coverage.files_skipped if "cost cap" in s.reason]
    assert {s.file for s in skipped} == {"shop/orders.py", "shop/config.py", "requirements.txt"}
    assert report.usage.cost_usd == 0
    assert any(f.rule == "B307" for f in report.findings)


def test_the_cost_cap_is_never_passed(make_branch, fake: FakeAnthropic) -> None:  # type: ignore[no-untyped-def]
    files = {
        f"shop/m{i}.py": "".join(f"def f{i}_{n}(x):\n    return x + {n}\n" for n in range(40))
        for i in range(12)
    }
    repo = make_branch("feature/many", files)
    cap = 0.1
    report = run(
        repo,
        fake,
        branch="feature/many",
        max_run_cost_usd=cap,
        input_budget_tokens=4000,
        max_output_tokens=2048,
        concurrency=4,
    )
    assert 0 < report.usage.cost_usd <= cap
    assert any("cost cap" in s.reason for s in report.coverage.files_skipped)


def test_a_large_branch_is_split_under_budget_and_every_file_accounted_for(
    make_branch,
    fake: FakeAnthropic,  # type: ignore[no-untyped-def]
) -> None:
    files = {
        f"shop/m{i}.py": "".join(f"def f{i}_{n}(x):\n    return x * {n}\n" for n in range(60))
        for i in range(10)
    }
    files["shop/huge.py"] = "".join(f"VALUE_{n} = {n}\n" for n in range(4000))
    repo = make_branch("feature/big", files)
    report = run(repo, fake, branch="feature/big", input_budget_tokens=5000, concurrency=3)
    reviews = fake.messages("code_review")
    assert len(reviews) > 2
    for request in fake.messages():
        assert tokens(request.system) + tokens(request.user) <= 5000
    reviewed = {path for r in reviews for path in files if f'path="{path}"' in r.user}
    skipped = {s.file for s in report.coverage.files_skipped if "not reviewed" in s.reason}
    assert reviewed | skipped == set(files)
    assert "shop/huge.py" in skipped


def test_sensitive_files_are_packed_first(make_branch, fake: FakeAnthropic) -> None:  # type: ignore[no-untyped-def]
    files = {f"shop/m{i}.py": "".join(f"X{n} = {n}\n" for n in range(200)) for i in range(4)}
    files["shop/auth/login.py"] = "def login(user):\n    return True\n"
    repo = make_branch("feature/order", files)
    run(repo, fake, branch="feature/order", input_budget_tokens=4000, concurrency=1)
    first = fake.messages("code_review")[0].user
    assert first.index('path="shop/auth/login.py"') < first.index('path="shop/m')


@pytest.mark.slow
def test_cli_uses_the_model_when_a_key_is_set(
    planted_repo: RepoBuilder, fake: FakeAnthropic, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    fake.responders["risk"] = lambda body: {"summary": "Risky: an AWS key.", "findings": []}
    fake.responders["code_review"] = lambda body: {
        "findings": [
            {
                "file": "shop/orders.py",
                "start_line": 7,
                "end_line": 7,
                "severity": "critical",
                "category": "injection",
                "title": "User input reaches eval",
                "detail": "input() goes to eval.",
                "suggestion": "Parse the expression.",
                "confidence": 0.95,
            }
        ],
        "patches": [],
    }
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "CHATOPS_LLM_MAX_RETRIES": "0",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "analyze",
            "branch",
            "feature/planted",
            "--repo",
            str(planted_repo.root),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"].startswith("Risky: an AWS key.")
    assert report["usage"]["model"] == "claude-haiku-5-5, claude-sonnet-5-5"
    assert report["usage"]["input_tokens"] > 0
    assert report["usage"]["cost_usd"] == pytest.approx(
        sum(c["cost_usd"] for c in report["llm_calls"]), abs=1e-5
    )
    [llm] = [f for f in report["findings"] if f["source"] == "llm"]
    assert (llm["title"], llm["severity"], llm["start_line"]) == (
        "User input reaches eval",
        "critical",
        7,
    )
    offline = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "analyze",
            "branch",
            "feature/planted",
            "--repo",
            str(planted_repo.root),
            "--format",
            "json",
            "--offline",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert json.loads(offline.stdout)["usage"]["model"] is None


@pytest.mark.slow
def test_cli_refuses_an_invalid_setting(planted_repo: RepoBuilder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "ANTHROPIC_API_KEY": API_KEY, "CHATOPS_MAX_RUN_COST_USD": "lots"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "analyze",
            "branch",
            "feature/planted",
            "--repo",
            str(planted_repo.root),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "invalid setting: CHATOPS_MAX_RUN_COST_USD" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_api_is_a_clear_retryable_failure(planted_repo: RepoBuilder) -> None:
    with FakeAnthropic() as gone:
        url = gone.base_url  # nothing listens here once the block ends
    session = LLMSession(LLMSettings(api_key=API_KEY, base_url=url, max_retries=0, timeout_s=2))
    report = analyze_branch(planted_repo.root, "feature/planted", llm=session)
    status, error = agent(report, "code_review")
    assert status == "failed"
    assert error == f"Cannot reach {url}: check ANTHROPIC_BASE_URL and the network. (retryable)"
    assert any(f.source is Source.bandit for f in report.findings)


def test_todays_budget_reached_mid_run_finishes_on_the_analyzers_and_says_so(
    planted_repo: RepoBuilder, fake: FakeAnthropic
) -> None:
    from dataclasses import replace

    session = session_for(fake)
    session = LLMSession(replace(session.settings), budget_left=lambda: 0.0)
    report = analyze_branch(planted_repo.root, "feature/planted", llm=session)
    assert all(a.status == "done" for a in report.agents), report.agents
    assert report.complete and report.coverage.not_run == []
    assert "today's budget" in report.summary and "analyzers alone" in report.summary
    reasons = {s.reason for s in report.coverage.files_skipped}
    assert any("today's budget was reached" in r for r in reasons), reasons
    assert any(f.rule == "B307" for f in report.findings)
