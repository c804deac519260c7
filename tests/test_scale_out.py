"""Several instances on one PostgreSQL database and one Redis queue: the same Slack event
delivered to two of them starts one run, and two instances handling two Approve clicks at once
make one commit. Each instance is a whole app (its own engine, pool, queue client and Bolt app),
as `chatops serve` builds it; requests go through Bolt's dispatch concurrently. And the servers
themselves restart: queued runs survive a Redis restart, a run survives a PostgreSQL restart."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App as BoltApp
from slack_bolt import BoltRequest
from slack_sdk import WebClient
from sqlalchemy import update

from bot.app import Runtime, build_app
from bot.core.actor import Actor
from bot.core.commands import AnalyzeBranch
from bot.settings import Settings
from bot.store.db import session_scope, upgrade
from bot.store.inbox import InboxStore
from bot.store.models import Run
from bot.store.runs import NewRun
from bot.store.types import utcnow
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import handlers, register
from tests.support.fakes.anthropic_api import FakeAnthropic
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.support.llm_helpers import model_env
from tests.support.processes import start_worker, stop, wait_for
from tests.support.services import (
    Servers,
    needs_postgres,
    needs_redis,
    private_servers,
    shared_servers,
)
from tests.support.testdata import slack_testdata

UNUSED_IMPORTS = "import json\nimport os\nimport sys\n\n\ndef main():\n    return sys.argv\n"


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    """Shared PostgreSQL and Redis; servers of the test's own where it restarts them."""
    private = request.node.get_closest_marker("private_servers") is not None
    with private_servers() if private else shared_servers() as chosen:
        yield chosen


@pytest.fixture
def deployment(
    tmp_path: Path, repo: RepoBuilder, servers: Servers
) -> Iterator[Callable[[], Runtime]]:
    """A factory of instances sharing PostgreSQL, a Redis queue and a policy file."""
    repo.branch("feature/imports")
    repo.commit({"shop/cli.py": UNUSED_IMPORTS})
    repo.checkout("main")
    policy = tmp_path / "chatops.toml"
    policy.write_text(
        f'[repos.shop]\npath = "{repo.root}"\n\n[approvals]\napprovers = ["UAPP1", "UAPP2"]\n'
    )
    apps: list[Runtime] = []
    url = servers.database_url
    upgrade(url)

    def instance() -> Runtime:
        app = build_app(
            Settings(
                database_url=url,
                chatops_queue="redis",
                chatops_redis_url=servers.redis_url,
                chatops_queue_name=f"scale-{uuid.uuid4().hex[:8]}"
                if not apps
                else apps[0].settings.chatops_queue_name,
                chatops_data_dir=tmp_path / "data",
                chatops_config=policy,
            )
        )
        apps.append(app)
        return app

    try:
        yield instance
    finally:
        for app in apps:
            app.jobs.huey.storage.flush_queue()
            app.close()


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def bolt_for(app: Runtime, slack: FakeSlack) -> BoltApp:
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
    bolt = BoltApp(
        client=client,
        signing_secret="unused",
        request_verification_enabled=False,
        process_before_response=True,  # dispatch returns when the listener is done
    )
    inbox = SlackInbox(
        InboxStore(app.engine),
        client,
        handlers(app.service),
        worker=app.reaper.process,
        lease_s=60,
    )
    register(bolt, inbox)
    return bolt


@needs_postgres
@needs_redis
def test_the_same_slack_event_delivered_to_two_instances_starts_one_run(
    deployment: Callable[[], Runtime],
) -> None:
    first, second = deployment(), deployment()
    payload = json.loads(slack_testdata("payloads", "AppMentionPayload.json").read_text())
    payload.update(type="event_callback", team_id="T111", event_id="Ev0SAME")
    payload["event"].update(
        type="app_mention",
        user="W111",
        channel="C111",
        ts="1700000000.000100",
        text="<@UBOT> analyze branch feature/imports",
    )
    body = json.dumps(payload)
    with FakeSlack() as slack:
        bolts = [bolt_for(first, slack), bolt_for(second, slack)]
        statuses = at_once(
            *[
                (
                    lambda b=b: (
                        b.dispatch(
                            BoltRequest(body=body, headers={"content-type": ["application/json"]})
                        ).status
                    )
                )
                for b in bolts
            ]
        )
        assert statuses == [200, 200]
        runs = first.store.recent(limit=10)
        assert [(r.target, r.requester) for r in runs] == [("feature/imports", "W111")]
        assert len(slack.top_level()) == 1  # one parent message
        assert first.jobs.pending() == 1  # one task on the shared queue


@needs_postgres
@needs_redis
def test_two_instances_handling_two_approve_clicks_at_once_make_one_commit(
    deployment: Callable[[], Runtime], repo: RepoBuilder
) -> None:
    first, second = deployment(), deployment()
    run = first.service.request_analysis(Actor("UREQ", "slack"), AnalyzeBranch("feature/imports"))
    first.executor(run.run.id)
    [proposal] = first.service.proposals(run.run.id)
    ref = f"{run.run.id}/{proposal.pid}"
    base = repo.head("feature/imports")
    shown = proposal.content_sha256[:16]

    outcomes = at_once(
        lambda: first.service.decide(Actor("UAPP1", "shell"), ref, "approve", shown_sha=shown),
        lambda: second.service.decide(Actor("UAPP2", "shell"), ref, "approve", shown_sha=shown),
    )
    assert sorted(o.ok for o in outcomes) == [False, True]
    [denied] = [o for o in outcomes if not o.ok]
    # which check stops the second depends on timing: the status read, or the conditional update
    assert re.search(r"already approved|decided by someone else", denied.message), denied.message
    # the apply task, delivered twice (a retry, a reaper), runs on both instances at once
    assert proposal.id is not None
    assert first.service.approvals is not None and second.service.approvals is not None
    at_once(
        lambda: first.service.approvals.apply(proposal.id),  # type: ignore[union-attr,arg-type]
        lambda: second.service.approvals.apply(proposal.id),  # type: ignore[union-attr,arg-type]
    )
    head = repo.head("feature/imports")
    assert repo.git("rev-list", "--count", f"{base}..{head}").strip() == "1"
    [done] = first.service.proposals(run.run.id)
    assert done.status == "applied"


def restartable(test: Callable[..., None]) -> Callable[..., None]:
    """On servers of the test's own (restarting the shared ones would break the tests running
    beside it); skipped where they cannot be made."""
    can = shutil.which("redis-server") and shutil.which("pg_createcluster") and os.geteuid() == 0
    skip = pytest.mark.skipif(
        not can, reason="private servers need redis-server, pg_createcluster and root"
    )
    return skip(pytest.mark.private_servers(test))


@pytest.fixture
def worker_env(deployment: Callable[[], Runtime], tmp_path: Path) -> dict[str, str]:
    app = deployment()
    s = app.settings
    return {
        "DATABASE_URL": str(s.database_url),
        "CHATOPS_QUEUE": "redis",
        "CHATOPS_REDIS_URL": s.chatops_redis_url,
        "CHATOPS_QUEUE_NAME": s.chatops_queue_name,
        "CHATOPS_DATA_DIR": str(s.chatops_data_dir),
        "CHATOPS_CONFIG": str(s.chatops_config),
        "CHATOPS_LEASE_S": "3",
        "CHATOPS_REQUEUE_AFTER_S": "2",
        "CHATOPS_WORKERS": "2",
    }


@needs_postgres
@needs_redis
@pytest.mark.slow
@restartable
def test_runs_queued_before_the_queue_server_restarts_still_execute(
    deployment: Callable[[], Runtime], worker_env: dict[str, str], servers: Servers
) -> None:
    app = deployment()
    ids = [
        app.service.request_analysis(Actor("U1", "shell"), AnalyzeBranch("feature/imports")).run.id
        for _ in range(3)
    ]
    assert app.jobs.pending() == 3
    servers.restart_redis()
    assert app.jobs.pending() == 0  # the tasks are gone with the server's memory
    worker = start_worker(worker_env)
    try:
        finished = wait_for(
            lambda: all((r := app.store.get(i)) is not None and r.status == "done" for i in ids),
            what="the reaper to re-enqueue the lost tasks and a worker to run them",
        )
        assert finished
        assert [app.store.reports_count(i) for i in ids] == [1, 1, 1]
    finally:
        stop(worker)


@needs_postgres
@needs_redis
@pytest.mark.slow
@restartable
def test_a_postgres_restart_during_a_run_loses_nothing(
    deployment: Callable[[], Runtime], worker_env: dict[str, str], servers: Servers
) -> None:
    app = deployment()
    with FakeAnthropic(latency_s=3) as model:
        worker = start_worker(worker_env, model_env(model))
        try:
            run_id = app.service.request_analysis(
                Actor("U1", "shell"), AnalyzeBranch("feature/imports")
            ).run.id
            wait_for(lambda: model.messages("code_review"), what="the first model call")
            servers.restart_postgres()
            # a request arriving after the restart is recorded (the pool reconnects)
            later = app.service.request_analysis(
                Actor("U2", "shell"), AnalyzeBranch("feature/imports")
            ).run.id
            runs = wait_for(
                lambda: (
                    [
                        r
                        for i in (run_id, later)
                        if (r := app.store.get(i)) is not None and r.status in ("done", "failed")
                    ]
                    if all(
                        (r := app.store.get(i)) is not None and r.status in ("done", "failed")
                        for i in (run_id, later)
                    )
                    else None
                ),
                timeout=90,
                what="both runs to end",
            )
            assert [r.status for r in runs] == ["done", "done"], [r.error for r in runs]
            assert [app.store.reports_count(r.id) for r in runs] == [1, 1]
        finally:
            stop(worker)


def test_a_report_stored_but_never_posted_is_posted_once_by_a_reaper(
    tmp_path: Path, planted_repo: RepoBuilder
) -> None:
    """The worker died between storing the report and posting it: a reaper posts it, once."""
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{planted_repo.root}"\n')
    with FakeSlack() as slack:
        app = build_app(
            Settings(
                chatops_data_dir=tmp_path / "data",
                chatops_config=policy,
                slack_bot_token=BOT_TOKEN,
                slack_api_url=slack.api_url,
            )
        )
        try:
            parent = WebClient(token=BOT_TOKEN, base_url=slack.api_url).chat_postMessage(
                channel="C111", text="Analyzing feature/planted"
            )
            run, _ = app.store.create(
                NewRun("W111", "slack", "shop", "feature/planted", place="C111")
            )
            app.store.set_message(run.id, "C111", str(parent["ts"]))
            observers, app.executor.observers = app.executor.observers, []
            app.executor(run.id)  # stored; "dies" before posting
            app.executor.observers = observers
            assert slack.thread(str(parent["ts"])) == []
            app.reaper.reap_once()
            assert slack.thread(str(parent["ts"])) == []  # too soon: the worker may be posting
            with session_scope(app.engine) as session:
                session.execute(
                    update(Run)
                    .where(Run.id == run.id)
                    .values(finished_at=utcnow() - timedelta(minutes=5))
                )
            app.reaper.reap_once()
            app.reaper.reap_once()  # a second reaper pass (or another worker's) posts nothing more
            reports = [m for m in slack.thread(str(parent["ts"])) if m.text.startswith("Report")]
            assert len(reports) == 1
            stored = app.store.get(run.id)
            assert stored is not None and stored.report_message == reports[0].ts
        finally:
            app.close()
