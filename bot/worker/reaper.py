"""The reaper: a thread in every consumer process that finishes what dead processes left.

Each pass re-enqueues runs whose lease expired (a worker killed mid-run) and queued runs whose
task was lost, stops runs whose human checkpoint passed its deadline, re-enqueues approved
proposals whose apply task was lost, settles applies a dead worker left half done, posts
reports a dead worker stored but never posted, handles Slack deliveries a dead process acked but
did not finish, and records that this process is alive."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from bot.settings import Settings
from bot.store.proposals import ProposalStore
from bot.store.runs import RunStore
from bot.store.workers import WorkerStore

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self,
        settings: Settings,
        runs: RunStore,
        proposals: ProposalStore,
        workers: WorkerStore,
        *,
        process: str,
        kind: str,
        enqueue: Callable[[str], None],
        enqueue_apply: Callable[[int], None],
        reconcile_applies: Callable[[float], list[int]],
        redeliver_reports: Callable[[float], list[str]],
        redeliver_deliveries: Callable[[], list[str]] = lambda: [],
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.proposals = proposals
        self.workers = workers
        self.process = process
        self.kind = kind  # worker, serve, shell
        self.enqueue = enqueue
        self.enqueue_apply = enqueue_apply
        self.reconcile_applies = reconcile_applies
        self.redeliver_reports = redeliver_reports
        self.redeliver_deliveries = redeliver_deliveries
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reap_once(self) -> list[str]:
        """One pass. Each step stands alone: a queue that is away (enqueue fails) does not stop
        the applies, the reports or the deliveries from being finished."""
        settings = self.settings
        ids: list[str] = []

        def runs() -> None:
            ids.extend(
                self.runs.reap(
                    max_attempts=settings.chatops_max_attempts,
                    requeue_after_s=settings.chatops_requeue_after_s,
                )
            )
            for run_id in ids:
                log.warning("re-enqueuing run %s (lease expired or task lost)", run_id)
                self.enqueue(run_id)

        def waits() -> None:
            # Checkpoints past their deadline: queued to stop there (once, whichever reaper).
            for run_id in self.runs.expire_waits():
                log.warning("run %s: nobody continued it at its checkpoint; stopping it", run_id)
                self.enqueue(run_id)

        def applies() -> None:
            for proposal_id in self.proposals.approved_waiting(settings.chatops_lease_s):
                log.warning("re-enqueuing the apply of proposal %s (task lost)", proposal_id)
                self.enqueue_apply(proposal_id)

        steps: list[tuple[str, Callable[[], object]]] = [
            ("runs", runs),
            ("checkpoints", waits),
            ("applies", applies),
            ("half-done applies", lambda: self.reconcile_applies(settings.chatops_requeue_after_s)),
            # A report stored but never posted: its worker died in between. A lease's time is
            # more than any post takes.
            ("reports", lambda: self.redeliver_reports(settings.chatops_lease_s)),
            ("deliveries", self.redeliver_deliveries),
        ]
        for what, step in steps:
            if self._stop.is_set():
                break
            try:
                step()
            except Exception:  # a database or queue hiccup: the next pass tries again
                log.exception("reaper: %s failed this pass", what)
        return ids

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="chatops-reaper", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop, and wait for a pass still going (it may be handling a delivery)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait_s)

    def _loop(self) -> None:
        interval = max(0.5, min(10.0, self.settings.chatops_lease_s / 2))
        self.beat("running")
        while not self._stop.wait(interval):
            try:
                self.reap_once()
                if not self._stop.is_set():  # after a stop, "stopped" is the last word
                    self.beat("running")
            except Exception:  # a database hiccup must not kill the reaper
                log.exception("reaper pass failed")

    def beat(self, state: str) -> None:
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
