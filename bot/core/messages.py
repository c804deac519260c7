"""Where a run's messages are on the surface that asked for it, in that surface's own terms
(`MessageRef`: for Slack, the channel and a message's ts), and the claim that posts each report
once. The Slack notifier and the listeners keep and find them through this, not through the
store; a second surface brings its own terms and needs no new query."""

from __future__ import annotations

from dataclasses import dataclass

from agents.report import Report
from bot.store.models import Run
from bot.store.runs import RunStore


@dataclass(frozen=True)
class MessageRef:
    """A message on a surface: the place it is in (a Slack channel), its id there (a ts), and
    the thread it is a reply in, if it is one (the thread's first message)."""

    place: str
    message: str
    thread: str | None = None


def subject(run: Run) -> str:
    """What a run is about, as its messages name it: the branch (or ticket's branch) analyzed,
    or for `flag retire` the flag and the side kept (its target is `KEY`, `KEY=on` or
    `KEY=off`)."""
    if run.kind != "flag_retire":
        return run.target
    key, _, side = run.target.partition("=")
    return f"flag {key} (to retire" + (f", keeping it {side})" if side else ")")


def parent_of(run: Run) -> MessageRef | None:
    """The run's parent message (progress edits it, the report goes with it), once posted."""
    if run.place is None or run.message is None:
        return None
    return MessageRef(run.place, run.message, run.thread)


def thread_of(run: Run) -> str | None:
    """Where the run's replies go: the thread its parent is in, or its parent's own."""
    return run.thread or run.message


class RunMessages:
    def __init__(self, store: RunStore) -> None:
        self.store = store

    def run(self, run_id: str) -> Run | None:
        return self.store.get(run_id)

    def set_message(self, run_id: str, ref: MessageRef) -> None:
        """The parent message the run's progress edits."""
        self.store.set_message(run_id, ref.place, ref.message, ref.thread)

    def earlier_posted(self, run: Run, place: str) -> Run | None:
        """The latest earlier run of the same branch shown in `place`: a re-run goes in its
        thread, and its parent says it was superseded."""
        return self.store.earlier_posted(run, place)

    def report(self, run_id: str) -> Report | None:
        return self.store.report(run_id)

    def set_report_message(self, run_id: str, message: str) -> None:
        self.store.set_report_message(run_id, message)

    def run_for_message(self, ref: MessageRef) -> Run | None:
        """The run whose parent or report message this is (a reaction names a message)."""
        return self.store.run_for_message(ref.place, ref.message)

    def unfinished_in_thread(self, place: str, thread: str) -> list[Run]:
        """The runs still queued or running whose messages go in that thread (a Slack agent
        session is a thread: its Stop button stops these)."""
        return self.store.unfinished_in_thread(place, thread)

    def claim_report_post(self, run_id: str, marker: str) -> bool:
        """One poster per report: the worker that finished it, or a reaper redelivering it."""
        return self.store.claim_report_post(run_id, marker)

    def release_report_post(self, run_id: str, marker: str) -> None:
        self.store.release_report_post(run_id, marker)

    def withdraw(self, run_id: str) -> None:
        """Its message could not be posted: a run nobody can see is cancelled (if still
        queued), whoever asked for it."""
        self.store.request_stop(run_id)
