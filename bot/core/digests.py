"""Posting the digest: on schedule exactly once per channel and period (the claim row decides
who posts, whichever worker or restart gets there), or on demand."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.config import PolicyConfig
from bot.core.digest import DigestData, chart_png, collect
from bot.core.ports import DigestSink, worker_id
from bot.schedule import MAX_PERIOD, Period, last_fire, period_ending, zone
from bot.store.db import through_restart
from bot.store.digests import DigestStore
from bot.store.stats import Stats
from bot.store.types import utcnow

log = logging.getLogger(__name__)

# A scheduled digest missed (every worker down at 09:00) is still posted this long after.
CATCH_UP = timedelta(hours=6)
# A claim not marked posted after this long is someone's crash: another may post it.
STALE_CLAIM_S = 600.0


@dataclass(frozen=True)
class Posted:
    outcome: str  # posted, already_posted, not_due, no_channel, no_slack, failed
    message: str
    ts: str | None = None


class Digests:
    def __init__(
        self,
        stats: Stats,
        store: DigestStore,
        policy: PolicyConfig,
        *,
        daily_budget_usd: float | None,
        sink: DigestSink,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.stats = stats
        self.store = store
        self.policy = policy
        self.daily_budget_usd = daily_budget_usd
        self.sink = sink
        self.now = now
        self.tz = zone(policy.digest.timezone)

    def build(self, period: Period) -> DigestData:
        return collect(
            self.stats,
            period,
            self.tz,
            proposal_ttl_s=self.policy.approvals.ttl_seconds,
            daily_budget_usd=self.daily_budget_usd,
            now=self.now(),
        )

    def latest_period(self, at: datetime | None = None) -> Period:
        """The last complete scheduled period at `at` (default now): the one the last
        scheduled digest covers."""
        now = at or self.now()
        fire = last_fire(self.policy.digest.cron, self.tz, now)
        return period_ending(self.policy.digest.cron, self.tz, fire or now)

    def explain(self, period: Period, at: datetime | None = None) -> list[str]:
        """Which period a digest covers and why, and what came after it: a digest made a minute
        after some runs says "0 run(s)" when they are after its period (`chatops digest
        --dry-run`)."""
        now = self.now()
        asked = at or now
        cron, tz = self.policy.digest.cron, self.tz
        when = "now" if at is None else "--at"
        lines = [f"Period: {period.label(tz)}."]
        if last_fire(cron, tz, asked) is None:
            lines.append(
                f"Why: the schedule {cron!r} ({tz.key}) did not fire in the {MAX_PERIOD.days} "
                f"days before {when} ({_moment(asked, tz)}), so this is the day before it."
            )
        else:
            lines.append(
                f"Why: the schedule {cron!r} ({tz.key}) last fired at {_moment(period.end, tz)}, "
                f"before {when} ({_moment(asked, tz)}); a digest covers the period from one "
                "scheduled time to the next, so it ends there."
            )
        later = self.stats.runs_count(period.end, now)
        if later:
            lines.append(
                f"{later} run(s) since {_moment(period.end, tz)}, not in this digest: "
                + ("in the next digest." if at is None else "in later digests.")
            )
        channel = self.policy.digest.channel
        if channel and any(
            row.period_key == period.key and row.status == "posted"
            for row in self.store.rows(channel)
        ):
            lines.append(f"Already posted to {channel}: posting it again posts nothing.")
        return lines

    def recent_period(self, hours: int = 24) -> Period:
        now = self.now()
        return Period(now - timedelta(hours=hours), now)

    def post_scheduled(self, *, force_period: Period | None = None) -> Posted:
        """Post the due digest once. Every worker's scheduler may call this every minute."""
        channel = self.policy.digest.channel
        if not channel:
            return Posted("no_channel", "No digest channel: set [digest] channel in the policy.")
        if not self.sink.configured:
            return Posted("no_slack", "Slack is not configured (SLACK_BOT_TOKEN).")
        now = self.now()
        if force_period is None:
            fire = last_fire(self.policy.digest.cron, self.tz, now)
            if fire is None or now - fire > CATCH_UP:
                return Posted("not_due", "No digest is due now.")
            period = period_ending(self.policy.digest.cron, self.tz, fire)
        else:
            period = force_period
        worker = worker_id()
        if not self.store.claim(channel, period.key, worker, STALE_CLAIM_S):
            return Posted("already_posted", f"The digest for {period.key} is already posted.")
        try:
            data = self.build(period)
            ts = self.sink.post_digest(channel, data, chart_png(data))
        except Exception as exc:
            log.exception("the digest for %s could not be posted; the next tick retries", period)
            self.store.release(channel, period.key, worker)
            return Posted("failed", f"The digest could not be posted: {exc}")
        self._mark_posted(channel, period.key, worker, ts)
        return Posted("posted", f"Posted the digest for {period.label(self.tz)}.", ts)

    def _mark_posted(self, channel: str, key: str, worker: str, ts: str) -> None:
        """It is posted: saying so must not fail on a database blip, or the claim goes stale
        and another worker posts it again."""
        through_restart(
            lambda _: self.store.mark_posted(channel, key, worker, ts), f"the digest {key}"
        )

    def post_now(self, channel: str, period: Period | None = None) -> Posted:
        """On demand (`/agent digest`): to the asking channel, not counted as the scheduled one."""
        if not self.sink.configured:
            return Posted("no_slack", "Slack is not configured (SLACK_BOT_TOKEN).")
        data = self.build(period or self.recent_period())
        ts = self.sink.post_digest(channel, data, chart_png(data))
        return Posted("posted", "Posted the digest.", ts)


def _moment(when: datetime, tz: ZoneInfo) -> str:
    return f"{when.astimezone(tz):%a %d %b %H:%M}"
