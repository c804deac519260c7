"""Durable jobs on huey. The queue only carries a run id; the `runs` row is the ledger.

huey deletes a task when a worker takes it, so a worker killed mid-run loses the task: its lease
on the run then expires, and a reaper (a thread in every consumer process) enqueues the run again.
Tasks are idempotent: a run is executed only by the worker that claims it.

SIGTERM is graceful: the consumer takes no more tasks and waits up to CHATOPS_SHUTDOWN_GRACE_S
for the running ones; runs still going then are handed back to the queue (queued again, not
counted as an attempt), so another worker takes them at once instead of after a lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

from bot.settings import Settings
from bot.store.proposals import ProposalStore
from bot.store.runs import RunStore
from bot.store.workers import WorkerStore

log = logging.getLogger(__name__)

RUN_TASK = "chatops.run_analysis"
APPLY_TASK = "chatops.apply_proposal"
TICK_TASK = "chatops.scheduler_tick"


def make_huey(settings: Settings) -> Huey:
    name = settings.chatops_queue_name
    if settings.chatops_queue == "postgres":
        if not settings.database_url or not settings.database_url.startswith("postgres"):
            raise ValueError("CHATOPS_QUEUE=postgres needs DATABASE_URL=postgresql://...")
        dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
        return PostgresHuey(name, dsn=dsn, results=False)
    if settings.chatops_queue == "redis":
        return RedisHuey(name, url=settings.chatops_redis_url, results=False)
    settings.chatops_data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(settings.chatops_data_dir / "queue.db"), results=False)


class Jobs:
    """The queue, its one task, and the consumers that run it."""

    def __init__(
        self, huey: Huey, store: RunStore, execute: Callable[[str], None], settings: Settings
    ) -> None:
        self.huey = huey
        self.store = store
        self.settings = settings
        self._run_task = huey.task(name=RUN_TASK)(execute)
        self._apply_task: Callable[[int], object] | None = None
        self.proposals: ProposalStore | None = None
        self.reconcile: Callable[[float], list[int]] = lambda older_than_s: []
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        # Set by bot.app: the executor's hand-back, and where this process says it is alive.
        self.hand_back: Callable[[], list[str]] = lambda: []
        # The executor asks this: is the consumer stopping (huey's stop flag)?
        self._stopping = threading.Event()
        self.stopping: Callable[[], bool] = lambda: (
            self._stopping.is_set()
            or (self._consumer is not None and self._consumer.stop_flag.is_set())
        )
        self.redeliver: Callable[[float], list[str]] = lambda older_than_s: []
        # Slack deliveries a dead process acked but did not handle (bot.surfaces.slack.inbox).
        self.redeliver_inbox: Callable[[], list[str]] = lambda: []
        self.workers: WorkerStore | None = None
        self.kind = "worker"
        self.process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def enqueue(self, run_id: str) -> None:
        self._run_task(run_id)

    def register_apply(
        self,
        apply: Callable[[int], object],
        proposals: ProposalStore,
        reconcile: Callable[[float], list[int]],
    ) -> None:
        """The apply-proposal task; the proposal row's status makes it run at most once.
        `reconcile` settles the applies a dead worker left half done."""
        self._apply_task = self.huey.task(name=APPLY_TASK)(apply)
        self.proposals = proposals
        self.reconcile = reconcile

    def enqueue_apply(self, proposal_id: int) -> None:
        assert self._apply_task is not None, "register_apply first"
        self._apply_task(proposal_id)

    def register_tick(self, tick: Callable[[], None]) -> None:
        """A task every minute (the digest, curation), run by consumers with the scheduler on."""
        self.huey.periodic_task(crontab(), name=TICK_TASK)(tick)

    def pending(self) -> int:
        return int(self.huey.pending_count())

    def reap_once(self) -> list[str]:
        ids = self.store.reap(
            max_attempts=self.settings.chatops_max_attempts,
            requeue_after_s=self.settings.chatops_requeue_after_s,
        )
        for run_id in ids:
            log.warning("re-enqueuing run %s (lease expired or task lost)", run_id)
            self.enqueue(run_id)
        if self._apply_task is not None and self.proposals is not None:
            for proposal_id in self.proposals.approved_waiting(self.settings.chatops_lease_s):
                log.warning("re-enqueuing the apply of proposal %s (task lost)", proposal_id)
                self.enqueue_apply(proposal_id)
            self.reconcile(self.settings.chatops_requeue_after_s)
        # A report stored but never posted: its worker died in between. A lease's time is
        # more than any post takes.
        self.redeliver(self.settings.chatops_lease_s)
        self.redeliver_inbox()
        return ids

    def _reaper(self) -> None:
        interval = max(0.5, min(10.0, self.settings.chatops_lease_s / 2))
        self._beat("running")
        while not self._stop.wait(interval):
            try:
                self.reap_once()
                self._beat("running")
            except Exception:  # a database hiccup must not kill the reaper
                log.exception("reaper pass failed")

    def _beat(self, state: str) -> None:
        if self.workers is None:
            return
        try:
            self.workers.beat(
                self.process,
                host=socket.gethostname(),
                pid=os.getpid(),
                kind=self.kind,
                scheduler=self.settings.chatops_scheduler,
                state=state,
            )
        except Exception:
            log.exception("could not record that this worker is %s", state)

    def _handed_back(self) -> None:
        """After the consumer stopped: runs still going go back to the queue."""
        self._stop.set()
        for run_id in self.hand_back():
            try:
                self.enqueue(run_id)
            except Exception:  # the queue is away: the reaper re-enqueues queued runs later
                log.exception("run %s: handed back but not enqueued", run_id)
        self._beat("stopped")

    def start_consumer(self, *, in_process: bool) -> Consumer:
        """Worker threads (and the reaper) in this process. `in_process` skips huey's signal
        handlers, which only the main thread of a dedicated worker may install."""
        consumer = self._consumer_with_reaper()
        if in_process:
            setattr(consumer, "_set_signal_handlers", lambda: None)  # noqa: B010
        consumer.start()
        return consumer

    def stop(self, graceful: bool = True) -> None:
        """Stop the in-process consumer: no new tasks, running ones get the grace period."""
        if self._consumer is None:
            self._stop.set()
            return
        self._beat("stopping")
        self._stopping.set()
        consumer, self._consumer = self._consumer, None  # stopping twice does nothing more
        consumer.stop(graceful=graceful)
        self._handed_back()

    def run_forever(self) -> None:
        """`chatops worker`: block until SIGTERM or SIGINT (both graceful), then hand back."""
        consumer = self._consumer_with_reaper()
        try:
            consumer.run()
        finally:
            self._handed_back()

    def _consumer_with_reaper(self) -> Consumer:
        consumer = self.huey.create_consumer(
            workers=self.settings.chatops_workers,
            worker_type="thread",
            periodic=self.settings.chatops_scheduler,
            initial_delay=0.05,
            max_delay=0.5,
            check_worker_health=True,
            graceful_signal="TERM",
            shutdown_timeout=self.settings.chatops_shutdown_grace_s,
        )
        threading.Thread(target=self._reaper, name="chatops-reaper", daemon=True).start()
        self._consumer = consumer
        return consumer
