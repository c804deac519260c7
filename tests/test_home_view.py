"""The Home tab as a reader sees it: each run's status at a glance, when it ran in the reader's
own time (Slack's date token, UTC where a client cannot format it), and a link that says what it
opens: the report once posted, else the run's thread (never a report still being posted)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bot.core.actor import Actor, Surface
from bot.core.feedback import Acceptance
from bot.store.models import Run
from bot.store.runs import NewRun
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.home import publish_home
from bot.surfaces.slack.views import HomeRun, home_view, local_time
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.test_feedback import make_app

WHEN = datetime(2026, 11, 24, 9, 5, tzinfo=UTC)


def a_run(run_id: str, status: str) -> Run:
    return Run(
        id=run_id,
        requester="W111",
        surface="slack",
        repo="shop",
        target="feature/x",
        status=status,
        created_at=WHEN,
    )


def test_a_run_shows_its_status_local_time_and_what_its_link_opens() -> None:
    view = home_view(
        [
            HomeRun(a_run("aaa111", "done"), "https://x/report", "report"),
            HomeRun(a_run("bbb222", "running"), "https://x/thread", "thread"),
            HomeRun(a_run("ccc333", "failed"), None, "thread"),
        ],
        [],
        Acceptance(3, 1),
    )
    texts = [b["text"]["text"] for b in view.to_dict()["blocks"] if b["type"] == "section"]
    done, running, failed = (t for t in texts if "feature/x" in t)
    assert done.startswith(":white_check_mark: `aaa111` *feature/x* in shop: done")
    assert "<https://x/report|report>" in done
    assert (
        running.startswith(":hourglass_flowing_sand: ") and "<https://x/thread|thread>" in running
    )
    assert failed.startswith(":x: ") and "<" not in failed.split("\n")[0]  # no link, no label
    stamp = int(WHEN.timestamp())
    assert done.endswith(f"<!date^{stamp}^{{date_short_pretty}} at {{time}}|2026-11-24 09:05 UTC>")
    assert "75% (3 👍, 1 👎)" in json.dumps(view.to_dict(), ensure_ascii=False)


def test_a_naive_time_is_taken_as_utc() -> None:
    assert local_time(WHEN.replace(tzinfo=None)) == local_time(WHEN)


def test_a_report_being_posted_links_the_thread_instead(tmp_path: Path, repo: RepoBuilder) -> None:
    app = make_app(tmp_path, repo)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        parent = str(client.chat_postMessage(channel="C111", text="parent")["ts"])
        report = client.chat_postMessage(channel="C111", text="report", thread_ts=parent)
        for n, claim in enumerate((f"pending:{'0' * 12}", str(report["ts"]))):
            run, _ = app.store.create(
                NewRun(requester="W111", surface="slack", repo="shop", target=f"f/{n}")
            )
            app.store.set_message(run.id, "C111", parent)
            app.store.set_report_message(run.id, claim)
        publish_home(client, app.service, Actor("W111", Surface.slack, "T111"))
        [home] = slack.views
        text = json.dumps(home["blocks"])
        archive = f"{slack.url}/archives/C111/p"
        assert f"<{archive}{parent.replace('.', '')}|thread>" in text  # not "pending:..."
        assert f"<{archive}{str(report['ts']).replace('.', '')}|report>" in text
    app.engine.dispose()
