"""What a run looks like in Slack when it fails, and when the parent message comes late."""

from __future__ import annotations

import json
from pathlib import Path

from agents.pipeline import AgentProgress, Progress
from bot.slack.app import web_client
from bot.slack.notifier import SlackNotifier
from bot.store.db import make_engine, upgrade
from bot.store.runs import NewRun, RunStore
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack


def store_at(tmp_path: Path) -> RunStore:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    return RunStore(make_engine(url))


def test_a_failed_run_says_so_and_why_in_the_thread(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        posted = client.chat_postMessage(channel="C111", text="Analyzing feature/x in shop")
        run, _ = store.create(
            NewRun(
                requester="W111", surface="slack", repo="shop", target="feature/x", channel="C111"
            )
        )
        store.set_message(run.id, "C111", str(posted["ts"]))
        notifier = SlackNotifier(client, store)
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
        SlackNotifier(web_client(BOT_TOKEN, slack.api_url), store).failed(run.id, "boom")
        assert slack.calls == []
