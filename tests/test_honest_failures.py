"""Nothing fails silently: an analyzer that breaks costs only its own findings, the report says
what did not run, and the exit code says the report is partial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import RepoBuilder

AWS = "AKIA4HJXZQ2WBNVGL7PK"


def broken_bandit(tmp_path: Path) -> dict[str, str]:
    """An environment in which `python -m bandit` is a bandit that crashes (exit 2), as a broken
    install or a bandit bug would: a real process, failing for real."""
    fake = tmp_path / "fake-tools" / "bandit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import sys\nprint('bandit: internal error', file=sys.stderr)\nsys.exit(2)\n"
    )
    return {**os.environ, "PYTHONPATH": str(fake.parent)}


def analyze(
    repo: RepoBuilder, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "analyze",
            "branch",
            "feature/leak",
            "--repo",
            str(repo.root),
            "--format",
            "json",
            "--offline",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_a_crashing_bandit_keeps_the_other_findings_and_exits_3(
    repo: RepoBuilder, tmp_path: Path
) -> None:
    repo.branch("feature/leak")
    repo.commit(
        {"shop/config.py": f'AWS_ACCESS_KEY_ID = "{AWS}"\n\n\ndef run(x):\n    return eval(x)\n'}
    )
    repo.checkout("main")
    env = broken_bandit(tmp_path)
    done = analyze(repo, env, "--fail-on", "critical")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    rules = {f["rule"] for f in report["findings"]}
    assert "AWS Access Key" in rules  # detect-secrets' finding survived bandit's crash
    assert report["risk"]["level"] == "critical"
    assert any(p.startswith("bandit did not run:") for p in report["coverage"]["not_run"])
    assert "Partial: bandit did not run" in report["summary"]
    assert "partial: bandit did not run" in done.stderr
    assert "Traceback" not in done.stderr
    # --allow-partial: the findings decide the exit code (a critical finding: 1).
    allowed = analyze(repo, env, "--fail-on", "critical", "--allow-partial")
    assert allowed.returncode == 1, allowed.stderr
    # And with a working bandit the same branch is a complete report.
    whole = analyze(repo, dict(os.environ), "--fail-on", "critical")
    assert whole.returncode == 1, whole.stderr
    assert json.loads(whole.stdout)["coverage"]["not_run"] == []


def test_a_bad_output_path_is_refused_before_any_work(repo: RepoBuilder, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    repo.branch("feature/leak")
    repo.commit({"shop/a.py": "X = 1\n"})
    repo.checkout("main")
    base = ["analyze", "branch", "feature/leak", "--repo", str(repo.root), "--offline"]
    missing = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "nope" / "r.json")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output and "Traceback" not in missing.output
    folder = CliRunner().invoke(app, [*base, "--output", str(tmp_path)])
    assert folder.exit_code == 2
    assert "is a directory" in folder.output
    existing = CliRunner().invoke(app, [*base, "--output", os.devnull, "--format", "json"])
    assert existing.exit_code == 0, existing.output  # an existing writable file is fine
    export = CliRunner().invoke(app, ["feedback", "export", "-o", str(tmp_path)])
    assert export.exit_code == 2
    assert "is a directory" in export.output


def test_in_the_shell_analyzers_run_in_a_session_of_their_own(
    repo: RepoBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal's Ctrl-C goes to its foreground process group: in the shell, ruff and bandit
    are not in it; for `chatops analyze` they are, so Ctrl-C stops them with the command."""
    from agents.analyzers.processes import detach_from_terminal
    from agents.pipeline import analyze_branch

    fake = tmp_path / "fake-tools" / "bandit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    seen = tmp_path / "sid.txt"
    (fake / "__main__.py").write_text(
        f"import os, sys\nopen({str(seen)!r}, 'w').write(str(os.getsid(0)))\nsys.exit(2)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    repo.branch("feature/leak")
    # Content no other test analyzes: bandit's answers are kept by content in a process.
    repo.commit({"shop/a.py": f"X = 1  # {tmp_path}\n"})
    repo.checkout("main")
    analyze_branch(repo.root, "feature/leak")
    assert int(seen.read_text()) == os.getsid(0)  # `chatops analyze`: the caller's session
    detach_from_terminal()  # what `chatops shell` does as it starts
    try:
        analyze_branch(repo.root, "feature/leak")
    finally:
        detach_from_terminal(False)
    assert int(seen.read_text()) != os.getsid(0)


def test_in_the_shell_background_log_lines_wait_for_the_next_command(
    repo: RepoBuilder, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A worker thread that logs while a person types at the prompt writes nothing to the
    terminal then; its line is shown after the person's line, before the command's answer."""
    import io
    import logging
    import threading

    from rich.console import Console

    from bot.app import build_app
    from bot.settings import Settings
    from bot.surfaces.shell import Shell

    app = build_app(Settings(chatops_data_dir=tmp_path / "data"), repo_override=repo.root)
    terminal = logging.StreamHandler()  # as `configure` sets it up
    logging.getLogger().addHandler(terminal)
    console = Console(file=io.StringIO(), width=200)
    at_the_prompt: list[str] = []

    def typed() -> Iterator[str]:
        capfd.readouterr()
        worker = threading.Thread(
            target=lambda: logging.getLogger("bot.worker.jobs").warning("re-enqueuing run abc123")
        )
        worker.start()
        worker.join()
        at_the_prompt.append(capfd.readouterr().err + console.file.getvalue())  # type: ignore[attr-defined]
        yield "/agent help"

    try:
        Shell(app.service, "ana", console).run(typed())
    finally:
        app.close()
        logging.getLogger().removeHandler(terminal)
    assert "re-enqueuing" not in at_the_prompt[0]  # nothing over the prompt
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "WARNING bot.worker.jobs: re-enqueuing run abc123" in out
    assert out.index("re-enqueuing run abc123") < out.index("Commands:")  # help's answer
    assert "re-enqueuing" not in capfd.readouterr().err


def test_a_stopped_run_gives_no_verdict_on_any_surface(repo: RepoBuilder) -> None:
    from rich.console import Console

    from agents.pipeline import Progress, analyze_branch
    from bot.surfaces.render.markdown import render_markdown
    from bot.surfaces.render.terminal import print_report
    from bot.surfaces.slack.blocks import report_blocks

    repo.branch("feature/leak")
    repo.commit({"shop/config.py": f'AWS_ACCESS_KEY_ID = "{AWS}"\n'})
    repo.checkout("main")

    def stop_after_first(progress: Progress) -> bool:
        return progress.agents[0].status != "done"

    finished = analyze_branch(
        repo.root,
        "feature/leak",
        checkpoint=lambda p: all(a.status != "running" or a.name != "risk" for a in p.agents),
    )  # a stop asked for while the last agent runs: every agent still finished
    assert finished.complete and finished.verdict() != "incomplete: no verdict"
    report = analyze_branch(repo.root, "feature/leak", checkpoint=stop_after_first)
    assert report.stopped_early and not report.complete
    assert report.verdict() == "incomplete: no verdict"
    line = "ran: code_review; did not run: tests (cancelled), dependencies (cancelled)"
    assert report.agents_line().startswith(line)
    markdown = render_markdown(report)
    assert "incomplete: no verdict" in markdown and "LOW" not in markdown.split("##")[0]
    console = Console(record=True, width=200)
    print_report(console, report)
    assert "incomplete: no verdict" in console.export_text()
    blocks, _ = report_blocks(report)
    text = json.dumps(blocks)
    assert "incomplete: no verdict" in text and "did not run: tests" in text


@pytest.mark.slow
def test_chat_errors_name_the_repository_not_the_servers_path(
    repo: RepoBuilder, tmp_path: Path
) -> None:
    from tests.test_shell import shell

    out = shell(
        repo.root,
        tmp_path / "data",
        ["/agent analyze branch feature/nope", "/agent analyze branch main against nothere"],
    ).stdout
    errors = [line for line in out.splitlines() if "error:" in line]
    assert any("No branch named 'feature/nope' in repo." in line for line in errors), errors
    assert any("No base branch named 'nothere' in repo." in line for line in errors), errors
    assert not any(str(repo.root) in line for line in errors)  # never the server's folders


def test_cli_hints_become_the_chat_grammar() -> None:
    from agents.errors import AnalysisInputError
    from bot.core.chat_errors import for_chat

    error = AnalysisInputError(
        "shop and main share no history in /srv/git/shop.",
        "Pass --base with the branch it was made from.",
    )
    message, hint = for_chat(error, "shop", "/srv/git/shop")
    assert "/srv" not in message + hint
    assert hint == "Add `against BASE` with the branch it was made from."


def test_a_huge_command_is_never_echoed_back_whole() -> None:
    import pytest

    from bot.core.commands import CommandError, parse
    from bot.surfaces.slack.listeners import _usage_error

    huge = "analyze branch " + "x" * 40_000
    with pytest.raises(CommandError) as error:
        parse(huge)
    reply = _usage_error(error.value)
    assert "at most 2,000" in reply
    assert "x" * 100 not in reply and len(reply) < 500
    for typed in ("frob" * 5000, "analyze branch main against", "up " + "F" * 5000):
        with pytest.raises(CommandError) as error:
            parse(typed[:1999])
        assert len(_usage_error(error.value)) < 1000


@pytest.mark.slow
def test_serve_with_a_wrong_token_or_no_slack_says_so_in_one_line(tmp_path: Path) -> None:
    from tests.support.fakes.slack_api import FakeSlack
    from tests.support.processes import clean_env
    from tests.test_slack import free_port

    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.here]\npath = "{tmp_path}"\n')

    def serve(api_url: str) -> subprocess.CompletedProcess[str]:
        env = clean_env(
            CHATOPS_DATA_DIR=str(tmp_path / "data"),
            CHATOPS_CONFIG=str(policy),
            SLACK_BOT_TOKEN="xoxb-wrong",
            SLACK_SIGNING_SECRET="s",
            SLACK_API_URL=api_url,
        )
        return subprocess.run(
            [sys.executable, "-m", "bot", "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    with FakeSlack() as slack:
        wrong = serve(slack.api_url)
    assert wrong.returncode == 2, wrong.stderr
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in wrong.stderr
    assert "Traceback" not in wrong.stderr and len(wrong.stderr.splitlines()) <= 3
    down = serve(f"http://127.0.0.1:{free_port()}/api/")
    assert down.returncode == 2, down.stderr
    assert "Could not reach the Slack API" in down.stderr
    assert "Traceback" not in down.stderr and len(down.stderr.splitlines()) <= 3


def test_the_slack_endpoint_never_answers_500_to_a_malformed_request() -> None:
    import asyncio
    import hashlib
    import hmac
    import time

    import httpx
    from slack_bolt import App

    from bot.surfaces.http import HttpApp
    from bot.surfaces.slack.app import ThreadedSlackRequestHandler, web_client
    from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack

    secret = "test-signing-secret"

    def signed(body: str, content_type: str) -> dict[str, str]:
        ts = str(int(time.time()))
        digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256)
        return {
            "x-slack-request-timestamp": ts,
            "x-slack-signature": f"v0={digest.hexdigest()}",
            "content-type": content_type,
        }

    form = "application/x-www-form-urlencoded"
    with FakeSlack() as slack:
        bolt = App(client=web_client(BOT_TOKEN, slack.api_url), signing_secret=secret)
        app = HttpApp(ThreadedSlackRequestHandler(bolt, secret))

        async def post(body: str, headers: dict[str, str]) -> int:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return (
                    await client.post("/slack/events", content=body, headers=headers)
                ).status_code

        def status(body: str, headers: dict[str, str]) -> int:
            return asyncio.run(post(body, headers))

        stranger = {
            "x-slack-request-timestamp": "soon",
            "x-slack-signature": "v0=00",
            "content-type": form,
        }
        assert status("payload=%5B%5D", stranger) == 401  # non-numeric timestamp, unsigned
        odd = {**stranger, "x-slack-request-timestamp": "\u00b2".encode()}  # int() refuses it
        assert status("payload=%5B%5D", odd) == 401
        assert status("payload=null", {"content-type": form}) == 401  # no signature at all
        for body in ("payload=%5B%5D", "payload=null", "payload=%7B%22type%22%3A"):
            assert status(body, signed(body, form)) == 400, body
        truncated = '{"type": "event_callback", "event": {"type": "app_mention"'
        assert status(truncated, signed(truncated, "application/json")) == 400
