"""Where a run's messages are on the surface that asked for it (for Slack: the channel, the
parent message, the report in its thread), and the claim that posts each report once. The
Slack notifier and the listeners keep and find them through this, not through the store."""

from __future__ import annotations

from bot.store.models import Run
from bot.store.runs import RunStore


class RunMessages:
    def __init__(self, store: RunStore) -> None:
        self.store = store

    def run(self, run_id: str) -> Run | None:
        return self.store.get(run_id)

    def set_message(self, run_id: str, channel: str, ts: str) -> None:
        """The parent message the run's progress edits."""
        self.store.set_message(run_id, channel, ts)

    def set_report_message(self, run_id: str, ts: str) -> None:
        self.store.set_report_message(run_id, ts)

    def run_for_message(self, channel: str, ts: str) -> Run | None:
        """The run whose parent or report message this is (a reaction names a message)."""
        return self.store.run_for_message(channel, ts)

    def claim_report_post(self, run_id: str, marker: str) -> bool:
        """One poster per report: the worker that finished it, or a reaper redelivering it."""
        return self.store.claim_report_post(run_id, marker)

    def release_report_post(self, run_id: str, marker: str) -> None:
        self.store.release_report_post(run_id, marker)

    def withdraw(self, run_id: str) -> None:
        """Its message could not be posted: a run nobody can see is cancelled (if still
        queued), whoever asked for it."""
        self.store.request_stop(run_id)
