"""What a run looks like in Slack when it fails, and when the parent message comes late."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slack_sdk import WebClient

from agents.pipeline import AgentProgress, Progress
from bot.core.messages import RunMessages
from bot.store.db import make_engine, upgrade
from bot.store.models import Run
from bot.store.runs import NewRun, RunStore
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.notifier import SlackNotifier
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack


def store_at(tmp_path: Path) -> RunStore:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    return RunStore(make_engine(url))


def a_slack_run(store: RunStore, client: WebClient, text: str) -> tuple[Run, dict[str, Any]]:
    """A run asked for in C111, with its parent message posted there."""
    posted = client.chat_postMessage(channel="C111", text=text)
    run, _ = store.create(
        NewRun(requester="W111", surface="slack", repo="shop", target="feature/x", place="C111")
    )
    store.set_message(run.id, "C111", str(posted["ts"]))
    return run, {"ts": str(posted["ts"])}


def test_a_failed_run_says_so_and_why_in_the_thread(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
        notifier = SlackNotifier(client, RunMessages(store))
        notifier.progress(run.id, Progress(run.id, [AgentProgress("code_review", "running")]))
        notifier.failed(run.id, "No branch named 'feature/x' in /srv/shop. <!channel>")
        [reply] = slack.thread(str(posted["ts"]))
        text = json.dumps(reply.blocks)
        assert "The analysis failed." in text
        assert "No branch named 'feature/x'" in text
        assert "<!channel>" not in text
        parent = slack.top_level()[0]
        assert parent.edits == 2
        assert ": failed" in json.dumps(parent.blocks)


def test_runs_from_other_surfaces_are_left_alone(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        run, _ = store.create(
            NewRun(requester="ana", surface="shell", repo="shop", target="feature/x")
        )
        SlackNotifier(web_client(BOT_TOKEN, slack.api_url), RunMessages(store)).failed(
            run.id, "boom"
        )
        assert slack.calls == []


def test_a_long_proposal_is_uploaded_whole_for_the_approvers(tmp_path: Path) -> None:
    from agents.report import (
        Proposal,
        ProposalKind,
        Report,
        Risk,
        RiskLevel,
        Target,
        sha256_hex,
    )

    store = store_at(tmp_path)
    content = "".join(f"+line {n}\n" for n in range(600))
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
        report = Report(
            run_id=run.id,
            summary="s",
            risk=Risk(level=RiskLevel.low, score=0),
            target=Target(
                repo="/r", branch="feature/x", base="main", head_sha="a" * 40, base_sha="b" * 40
            ),
            proposals=[
                Proposal(
                    id="P1",
                    kind=ProposalKind.patch,
                    agent="code_review",
                    title="t",
                    target="feature/x",
                    base_sha="a" * 40,
                    content=content,
                    content_sha256=sha256_hex(content),
                )
            ],
        )
        SlackNotifier(client, RunMessages(store)).finished(run.id, report)
        [shared] = slack.shared_files
        assert shared["content"].decode() == content
        assert shared["thread_ts"] == posted["ts"]
        [message] = slack.thread(str(posted["ts"]))
        assert "the exact change is in the file below" in json.dumps(message.blocks)


def test_a_cancelled_queued_run_says_so_and_by_whom(tmp_path: Path) -> None:
    from bot.surfaces.slack.listeners import _say_cancelled

    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop: queued")
        stopped = store.request_stop(run.id)
        assert stopped is not None and stopped.status == "cancelled"
        _say_cancelled(client, stopped, "W222")
        [parent] = slack.top_level()
        assert "cancelled by <@W222>" in parent.text
        assert "queued" not in parent.text


def test_a_running_run_stopped_at_a_checkpoint_says_by_whom(tmp_path: Path) -> None:
    from agents.report import Report, Risk, RiskLevel, Target

    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
        assert store.claim(run.id, "w", 60) is not None
        stopping = store.request_stop(run.id, by="W222")
        assert stopping is not None and stopping.status == "running"
        report = Report(
            run_id=run.id,
            summary="s",
            risk=Risk(level=RiskLevel.low, score=0),
            target=Target(
                repo="/r", branch="feature/x", base="main", head_sha="a" * 40, base_sha="b" * 40
            ),
            stopped_early=True,
        )
        SlackNotifier(client, RunMessages(store)).finished(run.id, report)
        [parent] = slack.top_level()
        assert "stopped by <@W222>" in json.dumps(parent.blocks)
