"""What an operator sees: Prometheus metrics, `chatops status`, and JSON logs with the run id."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import update

from bot.app import Runtime
from bot.core.actor import Actor
from bot.core.commands import AnalyzeBranch
from bot.logs import JsonFormatter, run_context
from bot.metrics import StoreCollector
from bot.store.db import make_engine, session_scope
from bot.store.models import Run
from bot.store.types import utcnow
from tests.support.gitrepo import RepoBuilder
from tests.support.processes import clean_env, wait_for
from tests.test_feedback import analyzed, make_app, spend


@pytest.fixture
def app(tmp_path: Path, planted_repo: RepoBuilder) -> Runtime:
    built = make_app(tmp_path, planted_repo)
    yield built
    built.close()


def scrape(app: Runtime) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(app.engine, app.jobs.pending))
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_runs_queue_tokens_cost_and_approvals(app: Runtime) -> None:
    report = analyzed(app)
    app.service.request_analysis(Actor("U1", "shell"), AnalyzeBranch("feature/planted"))
    spend(app, report.run_id, 0.25, input_tokens=1200, output_tokens=300)
    app.service.decide(Actor("U9", "shell"), f"{report.run_id}/P1", "approve")  # denied
    app.reaper.beat("running")
    samples = scrape(app)
    assert samples['chatops_runs{status="done"}'] == 1
    assert samples['chatops_runs{status="queued"}'] == 1
    # two requests, two tasks: the first run was executed here directly, its task still waits
    assert samples["chatops_queue_depth"] == 2
    assert samples['chatops_llm_tokens_total{direction="input"}'] == 1200
    assert samples["chatops_llm_cost_usd_total"] == 0.25
    assert samples['chatops_approvals_total{action="approve_proposal",outcome="denied"}'] == 1
    assert samples['chatops_workers{kind="worker"}'] == 1
    assert samples["chatops_store_up"] == 1


def test_a_scrape_answers_when_the_store_and_queue_do_not(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    gone = make_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'chatops.db'}")
    registry.register(StoreCollector(gone, lambda: 1 // 0))
    text = generate_latest(registry).decode()
    assert "chatops_store_up 0.0" in text and "chatops_queue_up 0.0" in text


def chatops(app: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        CHATOPS_DATA_DIR=str(app.settings.chatops_data_dir),
        CHATOPS_CONFIG=str(app.settings.chatops_config),
    )
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.slow
def test_status_shows_queue_workers_and_stuck_runs(app: Runtime) -> None:
    stuck = app.service.request_analysis(Actor("U1", "shell"), AnalyzeBranch("feature/planted"))
    assert app.store.claim(stuck.run.id, "dead-worker", 60)
    with session_scope(app.engine) as session:  # its worker died: the lease ran out
        session.execute(
            update(Run)
            .where(Run.id == stuck.run.id)
            .values(lease_until=utcnow() - timedelta(minutes=5))
        )
    app.reaper.beat("running")
    done = chatops(app, "status")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "queue (sqlite): 1 task(s) waiting" in out
    assert "runs: 1 running" in out
    assert app.reaper.process in out and "worker" in out
    assert "stuck runs" in out and stuck.run.id in out


def test_json_logs_carry_the_run_id() -> None:
    import logging

    record = logging.LogRecord(
        "bot.worker.executor", logging.INFO, __file__, 1, "claimed %s", ("x",), None
    )
    with run_context("abc123def456"):
        line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["run_id"] == "abc123def456" and entry["message"] == "claimed x"
    assert entry["level"] == "info" and entry["logger"] == "bot.worker.executor"
    assert "run_id" not in json.loads(JsonFormatter().format(record))  # outside a run


@pytest.mark.slow
def test_a_worker_logs_json_lines_with_the_run_id(app: Runtime) -> None:
    run = app.service.request_analysis(Actor("U1", "shell"), AnalyzeBranch("feature/planted")).run
    env = clean_env(
        CHATOPS_DATA_DIR=str(app.settings.chatops_data_dir),
        CHATOPS_CONFIG=str(app.settings.chatops_config),
        CHATOPS_LOG_FORMAT="json",
        CHATOPS_LOG_LEVEL="INFO",
        CHATOPS_SHUTDOWN_GRACE_S="5",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (r := app.store.get(run.id)) and r.status == "done", what="the run")
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert entries and len(entries) == len([x for x in err.splitlines() if x.strip()])
    claimed = [e for e in entries if e["message"].startswith(f"run {run.id}: claimed")]
    assert claimed and claimed[0]["run_id"] == run.id


@pytest.mark.slow
def test_serve_stops_gracefully_on_sigterm(app: Runtime) -> None:
    import signal
    import urllib.request

    from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
    from tests.test_slack import free_port

    port = free_port()
    with FakeSlack() as slack:
        env = clean_env(
            CHATOPS_DATA_DIR=str(app.settings.chatops_data_dir),
            CHATOPS_CONFIG=str(app.settings.chatops_config),
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET="secret",
            SLACK_API_URL=slack.api_url,
        )
        serve = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(
                lambda: _answers(f"http://127.0.0.1:{port}/healthz", urllib.request),
                what="serve to start",
            )
            [row] = wait_for(
                lambda: app.reaper.workers.seen_since(utcnow() - timedelta(minutes=1)),
                what="serve's consumer to say it is alive",
            )
            assert (row.kind, row.state) == ("serve", "running")
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=20) == 0
            [row] = app.reaper.workers.seen_since(utcnow() - timedelta(minutes=1))
            assert row.state == "stopped"  # it went through the graceful stop and hand-back
        finally:
            if serve.poll() is None:
                serve.kill()


def _answers(url: str, request: object) -> bool:
    try:
        with request.urlopen(url, timeout=1) as response:  # type: ignore[attr-defined]
            return bool(response.status == 200)
    except OSError:
        return False
