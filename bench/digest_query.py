"""How long the digest's queries take over a large history.

Builds a database with 100,000 runs over 90 days, 1,000,000 votes, 300,000 findings, 200,000
model calls and 10,000 proposals, then times (median of 5):

- the daily digest (`Digests.build`: every section, the previous period for the trend, and the
  14 days the chart draws);
- `chatops feedback stats` (acceptance per agent and prompt version over every vote);
- the lookup a reaction makes (which run is this message?).

Baseline, measured in the same run: the same digest after dropping the time indexes this issue
added, i.e. what the queries cost as full scans.

    python bench/digest_query.py [--database-url postgresql://.../EMPTY_DB] [--runs N] [--votes N]

--database-url must name an empty, throwaway database: the benchmark fills it.

Target: the daily digest within 1 s on the embedded SQLite database on a 2-core machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import DigestConfig, PolicyConfig  # noqa: E402
from bot.core.digests import Digests  # noqa: E402
from bot.core.ports import NoDigestSink  # noqa: E402
from bot.store.db import make_engine, upgrade  # noqa: E402
from bot.store.digests import DigestStore  # noqa: E402
from bot.store.models import (  # noqa: E402
    FeedbackRow,
    FindingRow,
    LLMCallRow,
    ProposalRow,
    Run,
)
from bot.store.runs import RunStore  # noqa: E402
from bot.store.stats import Stats  # noqa: E402

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DAYS = 90
CHUNK = 20_000
AGENTS = ("code_review", "tests", "dependencies", "risk")
SEVERITIES = ("critical", "high", "medium", "low", "info")
STATUSES = ("done",) * 8 + ("failed", "cancelled")
TIME_INDEXES = (
    ("runs", "ix_runs_created_at", "created_at"),
    ("findings", "ix_findings_created_at", "created_at"),
    ("feedback", "ix_feedback_at", "at"),
    ("llm_calls", "ix_llm_calls_at", "at"),
    ("proposals", "ix_proposals_created_at", "created_at"),
)


def fill(engine: Engine, runs: int, votes: int) -> None:
    rng = random.Random(7)
    span = DAYS * 86400
    created = [NOW - timedelta(seconds=rng.randrange(span)) for _ in range(runs)]
    ids = [f"{n:012x}" for n in range(runs)]

    def batches(rows: Callable[[int], dict[str, object]], total: int, table: type) -> None:
        with engine.begin() as connection:
            for start in range(0, total, CHUNK):
                connection.execute(
                    insert(table), [rows(n) for n in range(start, min(total, start + CHUNK))]
                )

    batches(
        lambda n: {
            "id": ids[n],
            "requester": f"U{n % 40}",
            "surface": "slack",
            "repo": f"repo{n % 5}",
            "kind": "branch",
            "target": f"feature/{n}",
            "status": STATUSES[n % len(STATUSES)],
            "stop_requested": False,
            "attempts": 1,
            "place": "C111",
            "message": f"{1_700_000_000 + n}.000100",
            "report_message": f"{1_700_000_000 + n}.000200",
            "created_at": created[n],
            "enqueued_at": created[n],
            "duration_ms": rng.randrange(2_000, 300_000),
        },
        runs,
        Run,
    )
    per_run = max(1, votes // runs)
    batches(
        lambda n: {
            "run_id": ids[n // per_run],
            "fingerprint": f"{n % per_run:016x}",
            "user": f"U{(n // per_run + n) % 40}",
            "vote": 1 if rng.random() < 0.7 else -1,
            "repo": f"repo{(n // per_run) % 5}",
            "agent": AGENTS[n % 4],
            "category": ("security", "style", "correctness", "tests")[n % 4],
            "rule": f"B{100 + n % 50}",
            "source": "llm" if n % 3 == 0 else "bandit",
            "model": "claude-sonnet-5-5",
            "prompt_version": f"v{n % 6}",
            "output": "{}",
            "via": "button",
            "at": created[n // per_run] + timedelta(minutes=5),
        },
        per_run * runs,
        FeedbackRow,
    )
    batches(
        lambda n: {
            "run_id": ids[n // 3],
            "repo": "repo",
            "fingerprint": f"{n:016x}",
            "agent": AGENTS[n % 4],
            "source": "bandit",
            "category": "security",
            "severity": SEVERITIES[n % 5],
            "title": "t",
            "created_at": created[n // 3],
        },
        runs * 3,
        FindingRow,
    )
    batches(
        lambda n: {
            "run_id": ids[n // 2],
            "agent": AGENTS[n % 4],
            "model": "claude-sonnet-5-5",
            "prompt_version": "v1",
            "input_tokens": 12_000,
            "output_tokens": 900,
            "cost_usd": 0.05,
            "outcome": "ok",
            "at": created[n // 2],
        },
        runs * 2,
        LLMCallRow,
    )
    batches(
        lambda n: {
            "run_id": ids[n * 10],
            "pid": "P1",
            "kind": "patch",
            "agent": "code_review",
            "title": "t",
            "target": "feature/x",
            "base_sha": "0" * 40,
            "content": "x",
            "content_sha256": "0" * 64,
            "status": ("proposed", "applied", "rejected", "expired")[n % 4],
            "created_at": created[n * 10],
        },
        runs // 10,
        ProposalRow,
    )
    with engine.begin() as connection:  # planner statistics, as a live database has them
        connection.execute(text("ANALYZE"))


def median_ms(action: Callable[[], object], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(engine: Engine) -> dict[str, float]:
    policy = PolicyConfig(digest=DigestConfig(channel="C111"))
    digests = Digests(
        Stats(engine),
        DigestStore(engine),
        policy,
        daily_budget_usd=50.0,
        sink=NoDigestSink(),
        now=lambda: NOW,
    )
    period = digests.latest_period()
    runs = RunStore(engine)
    return {
        "digest": median_ms(lambda: digests.build(period)),
        "stats": median_ms(lambda: Stats(engine).acceptance(by_version=True)),
        "reaction": median_ms(lambda: runs.run_for_message("C111", "1700050000.000200"), 20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        fill(engine, args.runs, args.votes)
        print(
            f"{engine.dialect.name}: {args.runs:,} runs, {args.votes:,} votes, "
            f"{args.runs * 3:,} findings, {args.runs * 2:,} model calls, "
            f"{args.runs // 10:,} proposals over {DAYS} days "
            f"(filled in {time.perf_counter() - started:.0f} s)"
        )
        indexed = measure(engine)
        with engine.begin() as connection:
            for _table, index, _ in TIME_INDEXES:
                connection.execute(text(f"DROP INDEX {index}"))
        scanned = measure(engine)
        with engine.begin() as connection:  # leave the schema as it was (a shared database)
            for table, index, column in TIME_INDEXES:
                connection.execute(text(f"CREATE INDEX {index} ON {table} ({column})"))
        engine.dispose()
    print(f"daily digest (every section, trend, 14-day chart data): {indexed['digest']:.0f} ms")
    print(
        f"  baseline without the time indexes: {scanned['digest']:.0f} ms "
        f"({indexed['digest'] / scanned['digest']:.2f}x)"
    )
    print(f"feedback stats over every vote: {indexed['stats']:.0f} ms")
    print(f"reaction lookup (message -> run): {indexed['reaction']:.2f} ms")
    target = 1000.0
    verdict = "within" if indexed["digest"] <= target else "OVER"
    print(f"target: daily digest <= {target:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
