"""Durable jobs, with real processes: a run survives a restart, and a worker killed with SIGKILL
mid-run still ends in exactly one report. Each on SQLite, and on PostgreSQL and Redis when the
environment provides them."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from bot.app import Runtime, build_app
from bot.core.actor import Actor
from bot.core.commands import AnalyzeBranch
from bot.settings import Settings
from bot.store.db import upgrade
from tests.support.fakes.anthropic_api import API_KEY, FakeAnthropic
from tests.support.gitrepo import RepoBuilder
from tests.support.llm_helpers import model_env
from tests.support.processes import ended, start_worker, stop, wait_for
from tests.support.services import REDIS_URL, fresh_postgres, needs_postgres, needs_redis

pytestmark = pytest.mark.slow

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=needs_postgres),
    pytest.param("redis", id="redis", marks=needs_redis),
]


@pytest.fixture
def environment(
    request: pytest.FixtureRequest, planted_repo: RepoBuilder, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The environment every process of one deployment shares."""
    backend = request.param
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{planted_repo.root}"\n')
    env = {
        "CHATOPS_DATA_DIR": str(tmp_path / "data"),
        "CHATOPS_CONFIG": str(policy),
        "CHATOPS_QUEUE": "sqlite",
        "CHATOPS_QUEUE_NAME": f"chatops-test-{uuid.uuid4().hex[:8]}",
        "CHATOPS_LEASE_S": "1.5",
        "CHATOPS_WORKERS": "1",
    }
    with ExitStack() as stack:
        if backend == "postgres":
            url = stack.enter_context(fresh_postgres())
            upgrade(url)
            env.update(DATABASE_URL=url, CHATOPS_QUEUE="postgres")
        elif backend == "redis":
            assert REDIS_URL
            env.update(CHATOPS_QUEUE="redis", CHATOPS_REDIS_URL=REDIS_URL)
        yield env


def make_app(env: dict[str, str]) -> Runtime:
    settings = Settings(**{key.lower(): value for key, value in env.items()})  # type: ignore[arg-type]
    return build_app(settings)


@pytest.mark.parametrize("environment", BACKENDS, indirect=True)
def test_a_run_queued_by_one_process_is_finished_by_another(environment: dict[str, str]) -> None:
    # The requesting process queues the run and goes away before any worker exists.
    requester = make_app(environment)
    requested = requester.service.request_analysis(
        Actor("U1", "shell"), AnalyzeBranch("feature/planted")
    )
    run_id = requested.run.id
    requester.close()
    assert requested.created

    worker = start_worker(environment)
    observer = make_app(environment)
    try:
        run = ended(observer.store, run_id, "the run to finish")
        assert run.status == "done", run.error
        assert run.attempts == 1
        assert observer.store.reports_count(run_id) == 1
        report = observer.store.report(run_id)
        assert report is not None and any(f.rule == "B307" for f in report.findings)
    finally:
        stop(worker)
        observer.close()


@pytest.mark.parametrize("environment", BACKENDS, indirect=True)
def test_a_worker_killed_mid_run_still_ends_in_exactly_one_report(
    environment: dict[str, str],
) -> None:
    with FakeAnthropic(latency_s=30) as model:  # the first worker hangs in its first model call
        slow_model = model_env(model)
        observer = make_app(environment)
        first = start_worker(environment, slow_model)
        second: subprocess.Popen[bytes] | None = None
        try:
            run_id = observer.service.request_analysis(
                Actor("U1", "shell"), AnalyzeBranch("feature/planted")
            ).run.id
            wait_for(lambda: model.messages("code_review"), what="the first model call")
            held = observer.store.get(run_id)
            assert held is not None and held.status == "running" and held.attempts == 1
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            model.latency_s = 0
            second = start_worker(environment, slow_model)
            run = ended(observer.store, run_id, "the reaper and second worker")
            assert run.status == "done", run.error
            assert run.attempts == 2
            assert observer.store.reports_count(run_id) == 1
            report = observer.store.report(run_id)
            assert report is not None and report.usage.input_tokens > 0
        finally:
            if first.poll() is None:
                first.kill()
            if second is not None:
                stop(second)
            observer.close()


@pytest.mark.parametrize("environment", [BACKENDS[0]], indirect=True)
def test_a_stopped_run_ends_at_the_next_checkpoint(environment: dict[str, str]) -> None:
    with FakeAnthropic(latency_s=2) as model:
        slow_model = model_env(model)
        observer = make_app(environment)
        worker = start_worker(environment, slow_model)
        try:
            run_id = observer.service.request_analysis(
                Actor("U1", "shell"), AnalyzeBranch("feature/planted")
            ).run.id
            wait_for(lambda: model.messages("code_review"), what="the first model call")
            observer.service.cancel_run(Actor("U1", "shell"), run_id)
            run = wait_for(
                lambda: (
                    (r := observer.store.get(run_id))
                    and r.status in ("done", "failed", "cancelled")
                    and r
                ),
                what="the stop",
            )
            assert run.status == "cancelled"
            report = observer.store.report(run_id)
            assert report is not None and report.stopped_early
            assert [(a.name, a.status) for a in report.agents] == [
                ("code_review", "done"),
                ("tests", "cancelled"),
                ("dependencies", "cancelled"),
                ("feature_flags", "cancelled"),
                ("risk", "cancelled"),
            ]
        finally:
            stop(worker)
            observer.close()


@pytest.mark.parametrize("environment", [BACKENDS[2]], indirect=True)
def test_sigterm_hands_a_long_run_back_and_another_worker_finishes_it(
    environment: dict[str, str],
) -> None:
    with FakeAnthropic(latency_s=30) as model:
        # a hand-back, not an expired lease, must free the run
        slow_model = model_env(model, CHATOPS_SHUTDOWN_GRACE_S="1", CHATOPS_LEASE_S="60")
        observer = make_app(environment)
        first = start_worker(environment, slow_model)
        second: subprocess.Popen[bytes] | None = None
        try:
            run_id = observer.service.request_analysis(
                Actor("U1", "shell"), AnalyzeBranch("feature/planted")
            ).run.id
            wait_for(lambda: model.messages("code_review"), what="the first model call")
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=15) == 0  # grace 1 s, then out, not after the 30 s call
            handed = observer.store.get(run_id)
            assert handed is not None and (handed.status, handed.attempts) == ("queued", 0)
            [seen] = observer.reaper.workers.seen_since(handed.created_at)
            assert (seen.kind, seen.state) == ("worker", "stopped")
            model.latency_s = 0
            second = start_worker(environment, slow_model)
            run = ended(observer.store, run_id, "the second worker")
            assert (run.status, run.attempts) == ("done", 1), run.error
            assert observer.store.reports_count(run_id) == 1
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.kill()
            observer.close()


def in_process_app(
    repo: RepoBuilder, tmp_path: Path, model: FakeAnthropic, **settings: object
) -> Runtime:
    """The embedded deployment (`chatops serve`, `shell`): the consumer in this process."""
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{repo.root}"\n')
    app = build_app(
        Settings(
            chatops_data_dir=tmp_path / "data",
            chatops_config=policy,
            anthropic_api_key=API_KEY,
            anthropic_base_url=model.base_url,
            chatops_count_tokens=False,
            chatops_llm_max_retries=0,
            chatops_scheduler=False,
            **settings,  # type: ignore[arg-type]
        )
    )
    app.start_jobs()
    return app


def test_stopping_hands_back_a_run_still_going_after_the_grace_period(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    """The in-process consumer on SQLite: a model call outlasting the grace is handed back."""
    with FakeAnthropic(latency_s=30) as model:
        app = in_process_app(planted_repo, tmp_path, model, chatops_shutdown_grace_s=0.5)
        try:
            run_id = app.service.request_analysis(
                Actor("U1", "shell"), AnalyzeBranch("feature/planted")
            ).run.id
            wait_for(lambda: model.messages("code_review"), what="the first model call")
            started = time.monotonic()
            app.jobs.stop()
            assert time.monotonic() - started < 10  # the grace, not the 30 s call
            run = app.store.get(run_id)
            assert run is not None and (run.status, run.attempts, run.worker) == ("queued", 0, None)
            assert app.jobs.pending() == 1  # enqueued again for the next consumer
        finally:
            app.close()


def test_stopping_lets_a_run_finish_within_the_grace_period(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    """The in-process consumer (`chatops serve`, `shell`) stops the same way: no new tasks, the
    running one finishes within the grace period, nothing is handed back."""
    with FakeAnthropic(latency_s=0.5) as model:
        app = in_process_app(planted_repo, tmp_path, model, chatops_shutdown_grace_s=60)
        try:
            run_id = app.service.request_analysis(
                Actor("U1", "shell"), AnalyzeBranch("feature/planted")
            ).run.id
            wait_for(lambda: model.messages("code_review"), what="the first model call")
            running = app.store.get(run_id)
            assert running is not None and running.status == "running"
            app.jobs.stop()  # returns once the running job is done
            run = app.store.get(run_id)
            assert run is not None and (run.status, run.attempts) == ("done", 1), run
            assert app.store.reports_count(run_id) == 1
        finally:
            app.close()
