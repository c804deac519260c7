"""What became of a report's proposals, for the report shown again (`status RUN` in the shell,
Slack's Full report button): each proposal as the proposals store has it now, not the "waiting
for approval" it was when the report was first shown."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line's report renders without loading SQLAlchemy
    from bot.store.models import ProposalRow


@dataclass(frozen=True)
class ProposalState:
    status: str  # a ProposalStatus; "expired" too for one still proposed past its lifetime
    decided_by: str | None = None
    result: str | None = None  # what an apply did, or why it did not

    @property
    def open(self) -> bool:
        """Still waiting for a decision: Approve and Reject still mean something."""
        return self.status == "proposed"

    def words(self) -> str:
        """The state in a few words: "waiting for approval", "applied by U1: committed ..."."""
        by = f" by {self.decided_by}" if self.decided_by else ""
        said = f": {self.result}" if self.result else ""
        if self.status == "proposed":
            return "waiting for approval"
        if self.status == "approved":
            return f"approved{by}, not applied yet"
        if self.status == "applying":
            return f"approved{by}, being applied"
        if self.status == "applied":
            return f"applied{by}{said}"
        if self.status == "rejected":
            return f"rejected{by}, not applied"
        if self.status == "expired":
            return "expired, not applied"
        return f"{self.status}, not applied{said}"  # stale, failed


WAITING = ProposalState("proposed")


def states_of(
    rows: Iterable[ProposalRow], *, ttl_s: int, now: datetime
) -> dict[str, ProposalState]:
    """Each proposal's state by its id in the report (P1, P2 ...)."""
    states = {}
    for row in rows:
        status = row.status
        if status == "proposed" and now - row.created_at > timedelta(seconds=ttl_s):
            status = "expired"  # nobody decided in time: deciding now is refused
        states[row.pid] = ProposalState(status, row.decided_by, row.result)
    return states
