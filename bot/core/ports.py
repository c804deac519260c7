"""What a surface implements for the core to call back: observers of runs and proposals, and
where a digest goes. The worker and the use cases call these; Slack (or any surface) is one."""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from agents.pipeline import Progress, Saved
from agents.report import Report
from bot.store.models import InboxRow, ProposalRow, Run
from bot.writes.git import WriteResult

__all__ = [
    "DeliveryLog",
    "DigestSink",
    "NoDigestSink",
    "ProposalObserver",
    "RunAnnouncer",
    "RunObserver",
    "WriteResult",
]

if TYPE_CHECKING:
    from bot.core.digest import DigestData


class RunObserver(Protocol):
    """A surface that shows runs as they go (Slack edits the parent message and posts the
    report in its thread). Its errors are logged and never change the run."""

    def progress(self, run_id: str, progress: Progress) -> None: ...

    def waiting(self, run_id: str, checkpoint: Saved) -> None:
        """A stepped run waits at the checkpoint after an agent (`checkpoint.after`): show
        what it found and how to continue, drop a finding or stop."""
        ...

    def finished(self, run_id: str, report: Report) -> None: ...

    def failed(self, run_id: str, error: str) -> None: ...


class RunAnnouncer(Protocol):
    """Shows a run nobody asked for in a chat (a followed branch whose head moved): Slack posts
    its parent message in the branch's thread. Its errors are logged."""

    def announce(self, run_id: str) -> None: ...


class ProposalObserver(Protocol):
    """Told when an approved proposal was applied, found stale, or failed."""

    def proposal_done(self, proposal: ProposalRow, run: Run, result: WriteResult) -> None: ...


class DigestSink(Protocol):
    configured: bool  # False: nowhere to post (no Slack); the digest says so instead

    def post_digest(self, channel: str, data: DigestData, chart: bytes) -> str:
        """Post it; return the message's ts."""
        ...


class NoDigestSink:
    configured = False

    def post_digest(self, channel: str, data: DigestData, chart: bytes) -> str:
        raise RuntimeError("no digest sink is configured")  # Digests checks `configured` first


class DeliveryLog(Protocol):
    """Where a surface keeps the deliveries it acknowledged (bot.store.inbox): recorded before
    the ack, claimed again by a reaper when their holder died."""

    def record(
        self, key: str, kind: str, payload: dict[str, Any], worker: str, lease_s: float
    ) -> bool: ...

    def get(self, key: str) -> InboxRow | None: ...

    def claim_abandoned(
        self, worker: str, lease_s: float, max_attempts: int, limit: int = 20
    ) -> list[InboxRow]: ...

    def given_up(self, max_attempts: int) -> list[InboxRow]: ...

    def done(self, key: str) -> None: ...

    def fail(self, key: str, error: str) -> None: ...

    def prune(self, older_than_s: float) -> int: ...


def worker_id() -> str:
    """Who holds a claim: this process and this claim (each claim gets its own id)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
