"""A very long name a person typed (a branch, a repository, a run, a proposal, a ticket key, a
date) is echoed clipped, never whole: a 5,000-character name must not flood Slack or a
terminal. Everything here goes through the real grammar and use cases (the shell in process)
or the real command line (in process)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bot.cli import app as cli
from bot.surfaces.shell import Shell
from tests.support.gitrepo import RepoBuilder
from tests.test_feedback import APPROVER, make_app

LONG = "x" * 1900  # a chat command is at most 2,000 characters
LONGEST_LINE = 200  # what any answer here may print on one line


@pytest.mark.parametrize(
    "command",
    [
        f"analyze branch {LONG}",
        f"analyze branch feature/planted against {LONG}",
        f"analyze branch feature/planted in {LONG}",
        f"status {LONG}",
        f"stop {LONG}",
        f"approve {LONG}",
        f"reject {LONG} not needed",
        f"approve abcdef12/{LONG}",
        f"up {LONG}",
        f"down {LONG}",
        f"learnings {LONG}",
        f"follow branch {LONG}",
        f"follow branch feature/planted in {LONG}",
        f"unfollow branch {LONG}",
        f"unfollow branch feature/planted in {LONG}",
        f"{LONG}",
        f"analyze branch feature/planted {LONG} x",
    ],
)
def test_the_shell_echoes_a_long_name_clipped(
    tmp_path: Path, planted_repo: RepoBuilder, command: str
) -> None:
    app = make_app(tmp_path, planted_repo)
    try:
        out = io.StringIO()
        Shell(app.service, APPROVER.user, Console(file=out, width=10_000)).handle(command)
        said = out.getvalue()
    finally:
        app.close()
    assert said.strip()  # it answered
    longest = max(said.splitlines(), key=len)
    assert len(longest) <= LONGEST_LINE, longest[:300]
    assert "x" * 61 not in said  # at most the 60 characters `shown()` keeps
    assert "x" * 20 in said or "xxx..." in said or "Unknown" in said  # still recognisable


def test_forget_echoes_a_long_id_clipped(tmp_path: Path, planted_repo: RepoBuilder) -> None:
    app = make_app(tmp_path, planted_repo)
    try:
        out = io.StringIO()
        Shell(app.service, APPROVER.user, Console(file=out, width=10_000)).handle(f"forget {LONG}")
    finally:
        app.close()
    said = out.getvalue()
    assert "No active learning 'xxxxxxxx" in said and "...'" in said
    assert len(max(said.splitlines(), key=len)) <= LONGEST_LINE


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["digest", "--at", "9" * 5000], "is not a time."),
        (["audit", "--since", "2026" * 1250], "is not a date."),
        (["analyze", "ticket", "PAY-" + "1" * 5000], "is not a Jira issue key."),
    ],
)
def test_the_command_line_echoes_a_long_value_clipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], said: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JIRA_URL", "http://127.0.0.1:9")  # never reached: the key is refused
    monkeypatch.setenv("JIRA_EMAIL", "dev@example.invalid")
    monkeypatch.setenv("JIRA_API_TOKEN", "t")
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 2, done.output
    assert said in done.stderr
    assert "reading" not in done.stderr  # nothing echoed before the check
    assert len(done.stderr) < 400, done.stderr[:500]
