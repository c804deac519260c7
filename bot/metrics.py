"""Prometheus metrics. What is shared (runs, queue, tokens, cost, approvals, workers) is read
from the database and the queue at scrape time, so every instance reports the same totals and a
restart loses nothing; what is per process (ack latency) is a histogram in that process.

`chatops serve` answers `/metrics`; `chatops worker --metrics-port N` serves them too."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import AuditEvent, LLMCallRow
from bot.store.runs import RunStore
from bot.store.types import utcnow
from bot.store.workers import WorkerStore

log = logging.getLogger(__name__)

ACK_SECONDS = Histogram(
    "chatops_slack_ack_seconds",
    "Time from a Slack request arriving to its answer (the ack), in this process.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
)
_APPROVAL_ACTIONS = ("approve_proposal", "reject_proposal", "apply_proposal")


class StoreCollector(Collector):
    """Reads the store at most every `cache_s` seconds, however often it is scraped."""

    def __init__(
        self, engine: Engine, queue_depth: Callable[[], int], cache_s: float = 5.0
    ) -> None:
        self.engine = engine
        self.queue_depth = queue_depth
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # one reader at a time: concurrent scrapes share its result
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.cache_s:
                self._cached = (now, self._read())
            return iter(self._cached[1])

    def _read(self) -> list[Metric]:
        metrics: list[Metric] = []
        try:
            metrics += self._collect()
        except Exception:  # a scrape must answer even when the database does not
            log.exception("metrics: the store could not be read")
            up = GaugeMetricFamily("chatops_store_up", "1 when the store could be read.")
            up.add_metric([], 0)
            metrics.append(up)
        queue_up = GaugeMetricFamily("chatops_queue_up", "1 when the queue could be read.")
        try:
            depth = GaugeMetricFamily("chatops_queue_depth", "Tasks waiting in the queue.")
            depth.add_metric([], self.queue_depth())
            metrics.append(depth)
            queue_up.add_metric([], 1)
        except Exception:
            log.exception("metrics: the queue could not be read")
            queue_up.add_metric([], 0)
        metrics.append(queue_up)
        return metrics

    def _collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("chatops_runs", "Runs by status.", labels=["status"])
        for status, n in sorted(RunStore(self.engine).count_by_status().items()):
            runs.add_metric([status], n)
        yield runs
        with session_scope(self.engine) as session:
            tokens_in, tokens_out, cost = session.exec(
                select(
                    func.coalesce(func.sum(LLMCallRow.input_tokens), 0),
                    func.coalesce(func.sum(LLMCallRow.output_tokens), 0),
                    func.coalesce(func.sum(LLMCallRow.cost_usd), 0.0),
                )
            ).one()
            approvals = list(
                session.exec(
                    select(AuditEvent.action, AuditEvent.outcome, func.count())
                    .where(col(AuditEvent.action).in_(_APPROVAL_ACTIONS))
                    .group_by(AuditEvent.action, AuditEvent.outcome)
                )
            )
        tokens = CounterMetricFamily(
            "chatops_llm_tokens", "Model tokens used, all time.", labels=["direction"]
        )
        tokens.add_metric(["input"], int(tokens_in))
        tokens.add_metric(["output"], int(tokens_out))
        yield tokens
        spent = CounterMetricFamily("chatops_llm_cost_usd", "Model spend in USD, all time.")
        spent.add_metric([], float(cost))
        yield spent
        decided = CounterMetricFamily(
            "chatops_approvals", "Approval decisions and applies.", labels=["action", "outcome"]
        )
        for action, outcome, n in approvals:
            decided.add_metric([action, outcome], int(n))
        yield decided
        alive = GaugeMetricFamily(
            "chatops_workers", "Consumer processes seen in the last minute.", labels=["kind"]
        )
        kinds: dict[str, int] = {}
        for worker in WorkerStore(self.engine).seen_since(utcnow() - timedelta(minutes=1)):
            if worker.state != "stopped":
                kinds[worker.kind] = kinds.get(worker.kind, 0) + 1
        for kind, n in sorted(kinds.items()):
            alive.add_metric([kind], n)
        yield alive
        up = GaugeMetricFamily("chatops_store_up", "1 when the store could be read.")
        up.add_metric([], 1)
        yield up


def register_store(
    engine: Engine, queue_depth: Callable[[], int], registry: CollectorRegistry = REGISTRY
) -> StoreCollector:
    collector = StoreCollector(engine, queue_depth)
    registry.register(collector)
    return collector
