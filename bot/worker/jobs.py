"""Durable jobs on huey. The queue only carries a run id (or a proposal id); the row is the
ledger.

huey deletes a task when a worker takes it, so a worker killed mid-run loses the task: its lease
on the run then expires, and the reaper (`bot.worker.reaper`, a thread in every consumer
process) enqueues the run again. Tasks are idempotent: a run is executed only by the worker that
claims it, a proposal applied only by the job that moves it to `applying`.

SIGTERM is graceful: the consumer takes no more tasks and waits up to CHATOPS_SHUTDOWN_GRACE_S
for the running ones; runs still going then are handed back to the queue (queued again, not
counted as an attempt), so another worker takes them at once instead of after a lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

from bot.settings import Settings

if TYPE_CHECKING:
    from bot.worker.reaper import Reaper

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


class Shutdown:
    """Is this process stopping? Set by `Jobs.stop()`, or by huey's consumer on SIGTERM (its
    stop flag, watched once the consumer exists). Made before the executor and the jobs, which
    both ask it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._consumer_flag: threading.Event | None = None

    def watch(self, flag: threading.Event) -> None:
        self._consumer_flag = flag

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        flag = self._consumer_flag
        return self._event.is_set() or (flag is not None and flag.is_set())


class RunTask(Protocol):
    """The run job: executes a run by id, and hands back what it runs when the process stops."""

    def __call__(self, run_id: str) -> None: ...

    def hand_back_all(self) -> list[str]: ...


class TaskQueue:
    """The queue's two tasks, a run and an apply: what the use cases enqueue. Built before the
    scheduler, whose tick (a followed branch that moved) enqueues runs too."""

    def __init__(self, huey: Huey, *, run: RunTask, apply: Callable[[int], object]) -> None:
        self.huey = huey
        self.executor = run
        self._run_task = huey.task(name=RUN_TASK)(run)
        # The proposal row's status makes it run at most once, whatever the queue redelivers.
        self._apply_task = huey.task(name=APPLY_TASK)(apply)

    def enqueue(self, run_id: str) -> None:
        self._run_task(run_id)

    def enqueue_apply(self, proposal_id: int) -> None:
        self._apply_task(proposal_id)


class Jobs:
    """The queue, its tasks (a run, an apply, the scheduler's tick), and the consumers."""

    def __init__(
        self,
        queue: TaskQueue,
        settings: Settings,
        *,
        tick: Callable[[], None],
        shutdown: Shutdown,
    ) -> None:
        self.queue = queue
        self.huey = queue.huey
        self.settings = settings
        self.shutdown = shutdown
        self._executor = queue.executor
        # A task every minute (the digest, curation, followed branches), run by consumers with
        # the scheduler on.
        self.huey.periodic_task(crontab(), name=TICK_TASK)(tick)
        self._consumer: Consumer | None = None
        self._reaper: Reaper | None = None

    def enqueue(self, run_id: str) -> None:
        self.queue.enqueue(run_id)

    def enqueue_apply(self, proposal_id: int) -> None:
        self.queue.enqueue_apply(proposal_id)

    def pending(self) -> int:
        return int(self.huey.pending_count())

    def _handed_back(self) -> None:
        """After the consumer stopped: runs still going go back to the queue."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.stop()
        for run_id in self._executor.hand_back_all():
            try:
                self.enqueue(run_id)
            except Exception:  # the queue is away: the reaper re-enqueues queued runs later
                log.exception("run %s: handed back but not enqueued", run_id)
        if reaper is not None:
            reaper.beat("stopped")

    def start_consumer(self, reaper: Reaper, *, in_process: bool) -> Consumer:
        """Worker threads (and the reaper) in this process. `in_process` skips huey's signal
        handlers, which only the main thread of a dedicated worker may install."""
        consumer = self._consumer_with(reaper)
        if in_process:
            setattr(consumer, "_set_signal_handlers", lambda: None)  # noqa: B010
        consumer.start()
        return consumer

    def stop(self, graceful: bool = True) -> None:
        """Stop the in-process consumer: no new tasks, running ones get the grace period."""
        if self._consumer is None:  # no jobs ran in this process (or stopped already)
            return
        if self._reaper is not None:
            self._reaper.beat("stopping")
        self.shutdown.set()
        consumer, self._consumer = self._consumer, None  # stopping twice does nothing more
        consumer.stop(graceful=graceful)
        self._handed_back()

    def run_forever(self, reaper: Reaper) -> None:
        """`chatops worker`: block until SIGTERM or SIGINT (both graceful), then hand back."""
        consumer = self._consumer_with(reaper)
        try:
            consumer.run()
        finally:
            self._handed_back()

    def _consumer_with(self, reaper: Reaper) -> Consumer:
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
        self.shutdown.watch(consumer.stop_flag)
        reaper.start()
        self._consumer = consumer
        self._reaper = reaper
        return consumer
