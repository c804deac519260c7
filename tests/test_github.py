"""`analyze pr N` over a fake GitHub on 127.0.0.1 (githubkit speaking HTTP to it), with a real
bare repository as the remote: the command line, the shell, re-runs after a push, pagination,
and the code host's refusals (401, 404 for a private repository, rate limits) as clear errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.request

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bot.app import build_app
from bot.cli import app as cli
from bot.codehost.github import GitHub, GitHubCredentials
from bot.codehost.port import CodeHostError
from bot.core.actor import Actor, UserError
from bot.core.commands import AnalyzePullRequest, CommandError, parse
from bot.surfaces.shell import Shell
from tests.support.fakes.github_api import TOKEN
from tests.support.hosted import Hosted
from tests.support.processes import clean_env


def run_cli(hosted: Hosted, *args: str, token: str = TOKEN) -> tuple[int, str, str]:
    env = {"GITHUB_TOKEN": token, "GITHUB_API_URL": hosted.fake.url, "ANTHROPIC_API_KEY": ""}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def bare_head(hosted: Hosted, ref: str = "refs/heads/feature/pr") -> str:
    return subprocess.run(
        ["git", "rev-parse", ref], cwd=hosted.bare, check=True, capture_output=True, text=True
    ).stdout.strip()


# -- the grammar ---------------------------------------------------------------------------------


def test_the_grammar_reads_a_pull_request_and_says_what_is_wrong() -> None:
    assert parse("/agent analyze pr 123 in shop") == AnalyzePullRequest(123, "shop")
    assert parse("analyze pr #9") == AnalyzePullRequest(9)
    for text, said in (
        ("analyze pr", "Say which pull request"),
        ("analyze pr abc", "'abc' is not a pull request number"),
        ("analyze pr 0", "'0' is not a pull request number"),
        ("analyze pr 5 on shop", "Unexpected 'on'"),
    ):
        with pytest.raises(CommandError) as caught:
            parse(text)
        assert said in caught.value.message
        assert "analyze pr NUMBER" in caught.value.usage


# -- the command line ------------------------------------------------------------------------------


def test_the_cli_analyzes_a_pull_request_fetched_from_the_remote(hosted: Hosted) -> None:
    code, out, err = run_cli(
        hosted, "analyze", "pr", "7", "--repo", str(hosted.clone), "--github", "org/shop",
        "--format", "json", "--offline",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    target = report["target"]
    assert target["pull_request"] == 7
    assert target["url"] == "https://github.example/org/shop/pull/7"
    assert target["branch"] == "pr/7" and target["base"] == "origin/main"
    assert target["head_sha"] == bare_head(hosted)
    # The planted problems were found in the fetched head.
    files = {f["file"] for f in report["findings"]}
    assert {"shop/orders.py", "shop/config.py"} <= files
    assert hosted.fake.paths() == ["/repos/org/shop/pulls/7", "/repos/org/shop/pulls/7/files"]
    # Fetched into the bot's clone through origin's refs/pull/7/head.
    fetched = subprocess.run(
        ["git", "rev-parse", "refs/remotes/origin/pr/7"],
        cwd=hosted.clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert fetched == bare_head(hosted)


def test_the_cli_takes_the_repository_from_the_policy(
    hosted: Hosted, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = hosted.settings()
    monkeypatch.setenv("CHATOPS_CONFIG", str(settings.chatops_config))
    code, out, err = run_cli(
        hosted, "analyze", "pr", "7", "--repo", str(hosted.clone), "--format", "json", "--offline"
    )
    assert code == 0, err
    assert json.loads(out)["target"]["pull_request"] == 7


@pytest.mark.parametrize(
    ("arrange", "token", "said"),
    [
        (lambda fake: None, "ghp_wrong", "refused the bot's credentials (401)"),
        (lambda fake: fake.projects["org/shop"].__setattr__("private", True), TOKEN, "(404)"),
        (lambda fake: fake.__setattr__("used", fake.rate_limit), TOKEN, "rate limit"),
        (lambda fake: fake.__setattr__("secondary_next", 5), TOKEN, "secondary rate limit"),
    ],
    ids=["401", "404-private", "primary-rate-limit", "secondary-rate-limit"],
)
def test_the_code_hosts_refusals_are_clear_errors_with_exit_2(
    hosted: Hosted, arrange: object, token: str, said: str
) -> None:
    arrange(hosted.fake)  # type: ignore[operator]
    code, out, err = run_cli(
        hosted, "analyze", "pr", "7", "--repo", str(hosted.clone), "--github", "org/shop",
        "--offline", token=token,
    )  # fmt: skip
    assert code == 2, err
    assert said in " ".join(err.split())
    assert "Traceback" not in err and out == ""
    hints = {
        "401": "GITHUB_TOKEN is wrong",
        "(404)": "give the bot's token access",
        "rate limit": "Try again",
    }
    assert any(hint in " ".join(err.split()) for hint in hints.values())
    # Nothing was fetched.
    assert (
        "pr/7"
        not in subprocess.run(
            ["git", "for-each-ref"], cwd=hosted.clone, capture_output=True, text=True, check=True
        ).stdout
    )


def test_a_short_secondary_limit_is_waited_once_and_the_request_goes_through(
    hosted: Hosted,
) -> None:
    hosted.fake.secondary_next = 1
    hosted.fake.secondary_retry_after = 1
    pull = GitHub(GitHubCredentials(api_url=hosted.fake.url, token=TOKEN)).pull_request(
        "org/shop", 7
    )
    assert pull.head_sha == bare_head(hosted)
    assert hosted.fake.paths().count("/repos/org/shop/pulls/7") == 2  # limited, then answered


def test_every_page_of_the_files_is_followed(hosted: Hosted) -> None:
    hosted.push({f"docs/page{n}.md": f"page {n}\n" for n in range(5)}, "five more files")
    hosted.fake.max_per_page = 2
    pull = GitHub(GitHubCredentials(api_url=hosted.fake.url, token=TOKEN)).pull_request(
        "org/shop", 7
    )
    expected = {"requirements.txt", "shop/config.py", "shop/orders.py"}
    expected |= {f"docs/page{n}.md" for n in range(5)}
    assert set(pull.files) == expected and len(pull.files) == 8
    pages = [q.get("page", "1") for _, path, q in hosted.fake.requests if path.endswith("/files")]
    assert pages == ["1", "2", "3", "4"]


def test_a_token_is_needed_and_the_error_says_how_to_give_one() -> None:
    with pytest.raises(CodeHostError) as caught:
        GitHub(GitHubCredentials(api_url="http://127.0.0.1:9"))
    assert "GITHUB_TOKEN" in caught.value.hint and caught.value.problem == "config"


# -- the shell, through the service ----------------------------------------------------------------


def test_the_shell_analyzes_a_pull_request_and_a_rerun_after_a_push_compares(
    hosted: Hosted,
) -> None:
    app = build_app(hosted.settings())
    app.start_jobs()
    try:
        out = io.StringIO()
        shell = Shell(app.service, "ana", Console(file=out, width=200))
        shell.handle("analyze pr 7 in shop")
        first = shell.last_run
        assert first is not None
        said = out.getvalue()
        assert "analyzing pr/7 in shop" in said
        assert "pull request #7: https://github.example/org/shop/pull/7" in said
        report = app.service.report(first)
        assert report is not None and report.target.pull_request == 7
        assert report.previous is None
        assert any(f.file == "shop/config.py" for f in report.findings)

        # A push to the pull request: the credential goes, an eval stays.
        head = hosted.push({"shop/config.py": 'REGION = "eu-north-1"\n'}, "drop the key")
        shell.handle("analyze pr 7")
        second = shell.last_run
        assert second is not None and second != first
        again = app.service.report(second)
        assert again is not None and again.target.head_sha == head
        assert again.previous is not None and again.previous.run_id == first
        assert any(r.file == "shop/config.py" for r in again.resolved)
        assert all(f.status == "open" for f in again.findings if f.file == "shop/orders.py")

        # The host's refusals, in the shell's words (no run is queued).
        hosted.fake.used = hosted.fake.rate_limit
        before = len(app.service.recent_runs(limit=50))
        shell.handle("analyze pr 7")
        assert "error: GitHub's rate limit for this token is used up" in out.getvalue()
        assert len(app.service.recent_runs(limit=50)) == before
    finally:
        app.close()


def test_the_service_refuses_a_repository_without_a_code_host_and_a_closed_pr(
    hosted: Hosted,
) -> None:
    settings = hosted.settings()
    assert settings.chatops_config is not None
    settings.chatops_config.write_text(f'[repos.shop]\npath = "{hosted.clone}"\n', "utf-8")
    app = build_app(settings)
    try:
        with pytest.raises(UserError) as caught:
            app.service.carry_out(Actor("ana", "shell"), AnalyzePullRequest(7))
        assert "has no code host configured" in caught.value.message
        assert "[repos.shop]" in caught.value.hint
    finally:
        app.close()
    settings.chatops_config.write_text(
        f'[repos.shop]\npath = "{hosted.clone}"\ngithub = "org/shop"\n', "utf-8"
    )
    hosted.fake.projects["org/shop"].pulls[7].state = "closed"
    app = build_app(settings)
    try:
        with pytest.raises(UserError) as caught:
            app.service.carry_out(Actor("ana", "shell"), AnalyzePullRequest(7))
        assert "is closed" in caught.value.message
    finally:
        app.close()


@pytest.mark.slow
def test_the_real_command_reads_the_token_from_the_environment(hosted: Hosted) -> None:
    env = clean_env(GITHUB_TOKEN="ghp_wrong", GITHUB_API_URL=hosted.fake.url)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "analyze", "pr", "7", "--repo", str(hosted.clone),
         "--github", "org/shop", "--offline"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "401" in done.stderr and "Traceback" not in done.stderr


# -- Slack, through `chatops serve` ----------------------------------------------------------------


@pytest.mark.slow
def test_slack_analyzes_a_pull_request_in_the_thread_with_its_link(hosted: Hosted) -> None:
    from tests.support.fakes.jira_api import FakeJira
    from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
    from tests.test_slack import SECRET, Served, click, free_port, parent_for

    settings = hosted.settings('[approvals]\napprovers = ["U222"]\n')
    port = free_port()
    with FakeSlack() as slack, FakeJira() as jira:
        env = clean_env(
            CHATOPS_DATA_DIR=str(hosted.tmp / "data"),
            CHATOPS_CONFIG=str(settings.chatops_config),
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            GITHUB_TOKEN=TOKEN,
            GITHUB_API_URL=hosted.fake.url,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                        break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline
                    time.sleep(0.1)
            served = Served(url, slack, hosted.dev, hosted.tmp / "data", jira)
            status, body, _ = served.command("analyze pr 7 in shop")
            assert status == 200 and body == b""
            ts = parent_for(slack, "pr/7")
            [report] = slack.wait_for(
                lambda: [m for m in slack.thread(ts) if m.text.startswith("Report for")]
            )
            blocks = json.dumps(report.blocks)
            assert "<https://github.example/org/shop/pull/7|pull request #7>" in blocks
            assert "Possible AWS Access Key added" in blocks

            # The review is offered; an approver's click posts it on the pull request, once.
            [value] = [
                e["value"]
                for b in report.blocks
                if b.get("type") == "actions"
                for e in b["elements"]
                if e["action_id"] == "proposal_approve"
            ]
            ref = value.split(":")[0]
            assert click(served, "U222", report.ts, value, "proposal_approve") == 200
            assert click(served, "U222", report.ts, value, "proposal_approve") == 200
            slack.wait_for(lambda: [m for m in slack.thread(ts) if f"{ref} applied" in m.text])
            [review] = hosted.fake.reviews("org/shop")
            assert review.event == "COMMENT" and "after U222 approved" in review.body
            assert hosted.fake.comments("org/shop")

            # A private repository the token cannot see: an ephemeral answer, no run.
            hosted.fake.projects["org/shop"].private = True
            before = len(slack.responses)
            status, _, _ = served.command("analyze pr 7 in shop")
            assert status == 200
            [reply] = slack.wait_for(lambda: slack.responses[before:])
            assert reply["response_type"] == "ephemeral"
            assert "(404)" in reply["text"] and "give the bot" in reply["text"]
        finally:
            server.terminate()
            server.wait(timeout=10)
