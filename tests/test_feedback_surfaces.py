"""Feedback on the other surfaces: the shell's `up` / `down` / `learnings` / `forget` /
`digest`, and the `chatops feedback` and `chatops digest` commands in a real process."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from rich.console import Console
from typer.testing import CliRunner

from bot.app import Runtime
from bot.cli import app as cli
from bot.surfaces.shell import Shell
from tests.support.gitrepo import RepoBuilder
from tests.support.processes import clean_env
from tests.test_feedback import ANA, analyzed, make_app


@pytest.fixture
def app(tmp_path: Path, planted_repo: RepoBuilder) -> Runtime:
    built = make_app(tmp_path, planted_repo)
    yield built
    built.close()


def shell(app: Runtime, user: str, lines: list[str]) -> str:
    out = io.StringIO()
    Shell(app.service, user, Console(file=out, width=200)).run(lines)
    return out.getvalue()


def test_the_shell_votes_curates_lists_and_forgets(app: Runtime) -> None:
    run_id = analyzed(app).run_id
    said = shell(
        app,
        "ana",
        [
            f"status {run_id}",  # shows the report; `up F1` now means its F1
            "up F1",
            'down F2 "tests may use assert"',
            "down F9",
            f"down {run_id}",
            "learnings",
        ],
    )
    assert f"Recorded 👍 on F1 of run {run_id}." in said
    assert f"Recorded 👎 on F2 of run {run_id}." in said
    assert "error: The report has no F9" in said
    assert f"Recorded 👎 on the report of run {run_id}." in said
    assert f'Say what was wrong: down {run_id} "REASON"' in said  # a command that parses
    assert "No learnings yet" in said
    rows = app.service.feedback.store.votes()
    assert [(r.user, r.vote, r.reason, r.via) for r in rows] == [
        ("ana", 1, None, "shell"),
        ("ana", -1, "tests may use assert", "shell"),
        ("ana", -1, None, "shell"),
    ]
    [note] = app.service.feedback.curate().active
    listed = shell(app, "ana", ["learnings shop", "learnings nope", f"forget {note.id}"])
    assert note.id in listed and "tests may use assert" in listed
    assert "error: Unknown repository 'nope'." in listed
    assert "error: Only approvers may forget a learning: ana is not an approver." in listed
    assert f"Forgot {note.id}" in shell(app, "UAPPROVER", [f"forget {note.id}"])
    digest = shell(app, "ana", ["digest"])
    assert "chatops digest" in digest and "code_review: 50% (1👍 1👎)" in digest


def chatops(data: Path, policy: Path, *args: str) -> Result:
    """The command in this process (CliRunner): the same code as the console script, without
    a new interpreter for each call (one test below runs the real process)."""
    env = {key: None for key in os.environ if key.startswith(("CHATOPS_", "ANTHROPIC_", "SLACK_"))}
    env.update(CHATOPS_DATA_DIR=str(data), CHATOPS_CONFIG=str(policy), DATABASE_URL=None)
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.mark.slow
def test_feedback_export_curate_stats_and_digest_commands(app: Runtime, tmp_path: Path) -> None:
    report = analyzed(app)
    for user in (ANA.user, "UBEN"):
        app.service.feedback.vote(
            ANA.__class__(user, "shell"), report.run_id, "F1", -1, via="shell", reason="noise"
        )
    data, policy = tmp_path / "data", tmp_path / "chatops.toml"

    out = tmp_path / "votes.csv"
    done = chatops(data, policy, "feedback", "export", "--format", "csv", "-o", str(out))
    assert done.exit_code == 0, done.output
    assert "2 vote(s) exported" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["user"] for r in rows] == ["UANA", "UBEN"] and rows[0]["reason"] == "noise"
    later = chatops(data, policy, "feedback", "export", "--since", "2999-01-01")
    assert later.exit_code == 0 and later.stdout == "" and "0 vote(s)" in later.stderr
    # the real process: a bad date is exit 2 and one line, no traceback
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "feedback", "export", "--since", "yesterday"],
        capture_output=True,
        text=True,
        env=clean_env(CHATOPS_DATA_DIR=str(data), CHATOPS_CONFIG=str(policy)),
        timeout=60,
    )
    assert bad.returncode == 2
    assert "--since 'yesterday' is not a date." in bad.stderr and "Traceback" not in bad.stderr

    curated = chatops(data, policy, "feedback", "curate")
    assert curated.exit_code == 0, curated.output
    assert "suppress" in curated.stdout and "(new)" in curated.stdout
    assert "Curated: 3 learning(s) active, 3 new, 0 retired." in curated.stdout
    stats = chatops(data, policy, "feedback", "stats")
    assert stats.exit_code == 0
    assert "(analyzers)" in stats.stdout and "0%" in stats.stdout

    # hourly digests: the one due in an hour covers now
    policy.write_text(policy.read_text() + '\n[digest]\ncron = "0 * * * *"\n')
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    chart = tmp_path / "digest.png"
    dry = chatops(data, policy, "digest", "--dry-run", "--at", in_an_hour, "--chart", str(chart))
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("chatops digest") and "1 run(s): 1 done" in dry.stdout
    first = report.findings[0]
    kind = f"{first.category} {first.rule}".strip()
    assert f"{first.agent}: {kind} (2👎)" in dry.stdout  # the failure mode
    assert chart.read_bytes().startswith(b"\x89PNG")
    unposted = chatops(data, policy, "digest")
    assert unposted.exit_code == 2
    assert "No digest channel: set [digest] channel in the policy." in unposted.stderr
    assert app.service.digests.store.rows() == []  # nothing claimed
    wrong = chatops(data, policy, "digest", "--at", "tomorrow")
    assert wrong.exit_code == 2 and "--at 'tomorrow' is not a time." in wrong.stderr
