"""The daily spend cap (`CHATOPS_DAILY_BUDGET_USD`): once today's model spend reaches it, new
runs are refused with a message saying so, and a running one may only spend what is left."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.store.stats import Stats
from bot.store.types import utcnow


class Budget(Protocol):
    def left(self) -> float | None:
        """Dollars a run may still spend today; None: no cap."""
        ...

    def refusal(self) -> str | None:
        """Why a new run may not start now, or None."""
        ...


class NoBudget:
    """No daily cap configured."""

    def left(self) -> float | None:
        return None

    def refusal(self) -> str | None:
        return None


class DailyBudget:
    def __init__(
        self,
        stats: Stats,
        cap_usd: float,
        timezone: str = "UTC",
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.stats = stats
        self.cap_usd = cap_usd
        self.zone = ZoneInfo(timezone)
        self.now = now

    def day_start(self) -> datetime:
        """Midnight today in the team's time zone (the digest's)."""
        local = self.now().astimezone(self.zone)
        return datetime.combine(local.date(), time(0), tzinfo=self.zone)

    def spent(self) -> float:
        return self.stats.spent_usd(self.day_start())

    def left(self) -> float | None:
        return max(0.0, self.cap_usd - self.spent())

    def refusal(self) -> str | None:
        """Why a new run may not start now, or None."""
        spent = self.spent()
        if spent < self.cap_usd:
            return None
        return (
            f"Today's model budget is spent: ${spent:.2f} of ${self.cap_usd:.2f} "
            f"(CHATOPS_DAILY_BUDGET_USD). New runs start again after midnight "
            f"{self.zone.key}."
        )
