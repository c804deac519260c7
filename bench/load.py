"""Load: many commands against a shared deployment, with and without a worker killed mid-way.

Starts 2 `chatops serve` instances (HTTP mode) and 2 `chatops worker` processes on loopback,
sharing a new PostgreSQL database and a Redis queue, with the fake Slack Web API and a fake
Messages API that answers each call after a delay (--model-latency). Sends --commands signed
`/agent analyze branch` commands spread evenly over --seconds, alternating between the two
instances, then waits until every run has ended. Prints ack p50 / p99, time from command to
the report in its thread p50 / p99, runs lost (a command acked but no report posted) and
duplicated (a second run for one command, or a second report), first with all workers up, then
with one worker killed with SIGKILL half-way through the sending.

    python bench/load.py [--commands 1000] [--seconds 60] [--model-latency 1.5]
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--redis-url redis://...]

The database URL names a server database the benchmark may create a new database next to.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bot.store.db import make_engine, upgrade  # noqa: E402
from tests.support.fakes.anthropic_api import API_KEY, FakeAnthropic  # noqa: E402
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack  # noqa: E402
from tests.support.gitrepo import RepoBuilder  # noqa: E402

SECRET = "load-signing-secret"
BRANCH = "feature/load"
_RUN_IN_FOOTER = re.compile(r"run `([0-9a-f]{12})`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"chatops_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Sent:
    trigger: str
    at: float  # time.time() when sent
    ack_s: float
    status: int


@dataclass
class Deployment:
    env: dict[str, str]
    urls: list[str] = field(default_factory=list)
    serves: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, workers: int) -> None:
        for _ in range(2):
            port = free_port()
            self.serves.append(self._spawn(["serve", "--port", str(port)]))
            self.urls.append(f"http://127.0.0.1:{port}")
        for _ in range(workers):
            self.workers.append(self._spawn(["worker"]))
        for url, process in zip(self.urls, self.serves, strict=True):
            wait_up(f"{url}/healthz", process)

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        for process in self.serves + self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.serves + self.workers:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited at start ({url})")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def send(url: str, trigger: str, response_url: str) -> Sent:
    body = urlencode(
        {
            "command": "/agent",
            "text": f"analyze branch {BRANCH}",
            "user_id": "W111",
            "team_id": "T111",
            "channel_id": "C111",
            "trigger_id": trigger,
            "response_url": response_url,
        }
    ).encode()
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{url}/slack/events",
        data=body,
        method="POST",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": f"v0={digest}",
        },
    )
    at = time.time()
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return Sent(trigger, at, time.perf_counter() - started, status)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def scenario(
    args: argparse.Namespace, repo: Path, policy: Path, kill: bool, data: Path
) -> dict[str, object]:
    with (
        fresh_database(args.database_url) as url,
        FakeSlack() as slack,
        FakeAnthropic(latency_s=args.model_latency) as model,
    ):
        upgrade(url)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CHATOPS_", "ANTHROPIC_", "SLACK_", "DATABASE_URL"))
        }
        env.update(
            DATABASE_URL=url,
            CHATOPS_QUEUE="redis",
            CHATOPS_REDIS_URL=args.redis_url,
            CHATOPS_QUEUE_NAME=f"load-{uuid.uuid4().hex[:8]}",
            CHATOPS_CONFIG=str(policy),
            CHATOPS_DATA_DIR=str(data),
            CHATOPS_WORKERS=str(args.threads),
            CHATOPS_LEASE_S="10",
            CHATOPS_SCHEDULER="false",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            ANTHROPIC_API_KEY=API_KEY,
            ANTHROPIC_BASE_URL=model.base_url,
            CHATOPS_COUNT_TOKENS="false",
            CHATOPS_LLM_CONCURRENCY="2",
        )
        deployment = Deployment(env)
        deployment.start(workers=2)
        clock = time.time() - time.monotonic()  # the fake's call times are monotonic
        sent: list[Sent] = []
        lock = threading.Lock()
        interval = args.seconds / args.commands
        started = time.monotonic()
        killed_at: float | None = None

        def fire(index: int) -> None:
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            result = send(
                deployment.urls[index % 2],
                f"{index}.{uuid.uuid4().int % 10**9}.{uuid.uuid4().hex[:8]}",
                slack.response_url(),
            )
            with lock:
                sent.append(result)

        with ThreadPoolExecutor(max_workers=64) as pool:
            futures = [pool.submit(fire, i) for i in range(args.commands)]
            if kill:
                time.sleep(args.seconds / 2)
                deployment.workers[0].send_signal(signal.SIGKILL)
                killed_at = time.monotonic() - started
            for future in futures:
                future.result()
        send_s = time.monotonic() - started

        engine = make_engine(url)
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                open_runs = connection.execute(
                    text("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
                ).scalar_one()
            if open_runs == 0:
                break
            time.sleep(1)
        # The last reports' posts; a report a killed worker stored but never posted is posted by
        # a reaper a lease (10 s) and a pass (5 s) later.
        for _ in range(30):
            with engine.connect() as connection:
                unposted = connection.execute(
                    text(
                        "SELECT count(*) FROM runs WHERE status = 'done' AND report_message IS NULL"
                    )
                ).scalar_one()
            if unposted == 0:
                break
            time.sleep(1)
        time.sleep(2)
        drained_s = time.monotonic() - started
        with engine.connect() as connection:
            events = dict(
                connection.execute(
                    text(
                        "SELECT key, run_id FROM processed_events WHERE key LIKE 'slack:command:%'"
                    )
                ).all()
            )
            statuses = dict(connection.execute(text("SELECT id, status FROM runs")).all())
            attempts = dict(connection.execute(text("SELECT id, attempts FROM runs")).all())
            report_rows = dict(
                connection.execute(
                    text("SELECT run_id, count(*) FROM reports GROUP BY run_id")
                ).all()
            )
        engine.dispose()
        deployment.stop()

        posted: dict[str, list[float]] = {}
        for call in slack.called("chat.postMessage"):
            if not str(call.args.get("text", "")).startswith("Report for"):
                continue
            blocks = call.args.get("blocks")
            found = _RUN_IN_FOOTER.search(blocks if isinstance(blocks, str) else json.dumps(blocks))
            if found and call.response.get("ok"):
                posted.setdefault(found.group(1), []).append(call.at + clock)

    acked = [s for s in sent if s.status == 200]
    to_report = []
    lost = 0
    for s in acked:
        run_id = events.get(f"slack:command:{s.trigger}")
        if run_id is None or run_id not in posted or statuses.get(run_id) != "done":
            lost += 1
            continue
        to_report.append(posted[run_id][0] - s.at)
    duplicated = sum(len(times) - 1 for times in posted.values()) + sum(
        n - 1 for n in report_rows.values()
    )
    duplicated += len(statuses) - len(set(events.values()))  # runs no command asked for
    return {
        "commands": args.commands,
        "acked": len(acked),
        "ack_p50": pct([s.ack_s for s in acked], 50) * 1000,
        "ack_p99": pct([s.ack_s for s in acked], 99) * 1000,
        "report_p50": pct(to_report, 50),
        "report_p99": pct(to_report, 99),
        "lost": lost + (len(sent) - len(acked)),
        "duplicated": duplicated,
        "retried": sum(1 for n in attempts.values() if n > 1),
        "send_s": send_s,
        "drained_s": drained_s,
        "killed_at": killed_at,
        "model_calls": len(model.requests),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--model-latency", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=16, help="worker threads per worker")
    parser.add_argument("--drain-timeout", type=float, default=1200)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "CHATOPS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("CHATOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument("--only", choices=("steady", "killed"), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = RepoBuilder(root / "shop")
        repo.commit({"shop/__init__.py": "", "shop/cart.py": "def total(p):\n    return sum(p)\n"})
        repo.branch(BRANCH)
        repo.commit(
            {"shop/cart.py": "def total(prices, tax=0):\n    return sum(prices) * (1 + tax)\n"}
        )
        repo.checkout("main")
        policy = root / "chatops.toml"
        policy.write_text(f'[repos.shop]\npath = "{repo.root}"\n')
        results = {}
        for name, kill in (("steady", False), ("killed", True)):
            if args.only and args.only != name:
                continue
            results[name] = scenario(args, repo.root, policy, kill, root / f"data-{name}")
            print(f"{name}: {json.dumps(results[name], default=str)}", flush=True)
    print()
    print(
        f"{args.commands} commands over {args.seconds:.0f} s to 2 serve instances, 2 workers x "
        f"{args.threads} threads, model latency {args.model_latency} s a call, PostgreSQL + Redis"
    )
    print("| | all workers up | a worker SIGKILLed half-way |")
    print("|---|---|---|")
    rows = [
        ("acked (HTTP 200)", "acked", "{:.0f}"),
        ("ack p50 (ms)", "ack_p50", "{:.0f}"),
        ("ack p99 (ms)", "ack_p99", "{:.0f}"),
        ("command to report p50 (s)", "report_p50", "{:.1f}"),
        ("command to report p99 (s)", "report_p99", "{:.1f}"),
        ("runs lost", "lost", "{:.0f}"),
        ("runs duplicated", "duplicated", "{:.0f}"),
        ("runs that took a second attempt", "retried", "{:.0f}"),
        ("all runs ended after (s)", "drained_s", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        cells = [fmt.format(results[n][key]) if n in results else "-" for n in ("steady", "killed")]
        print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
