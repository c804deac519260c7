"""The periodic jobs, ticked once a minute by a consumer with the scheduler on
(`CHATOPS_SCHEDULER`): curate the votes every hour, post the digest when it is due, and check
the followed branches' heads every `[follow] every` seconds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.core.digests import Digests
from bot.core.feedback import FeedbackService
from bot.core.follows import Follows
from bot.store.types import utcnow

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        digests: Digests,
        feedback: FeedbackService,
        follows: Follows,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.digests = digests
        self.feedback = feedback
        self.follows = follows
        self.now = now
        self._curated_at: datetime | None = None
        self._followed_at: datetime | None = None

    def tick(self) -> None:
        """Each job on its own: one failing does not stop the other. Curation runs on the hour,
        or at the first tick after it when a busy consumer ran the tick late."""
        now = self.now()
        due = self._curated_at is None or now - self._curated_at >= timedelta(minutes=59)
        if now.minute == 0 or due:
            try:
                curated = self.feedback.curate()
                self._curated_at = now
                log.info("scheduled curation: %s", curated.message)
            except Exception:
                log.exception("scheduled curation failed")
        try:
            posted = self.digests.post_scheduled()
            if posted.outcome not in ("not_due", "already_posted", "no_channel"):
                log.info("scheduled digest: %s", posted.message)
        except Exception:
            log.exception("scheduled digest failed")
        every = timedelta(seconds=self.follows.policy.follow.every)
        if self._followed_at is None or now - self._followed_at >= every:
            self._followed_at = now
            try:
                started = self.follows.check()
                if started:
                    log.info("followed branches moved: runs %s", ", ".join(started))
            except Exception:
                log.exception("checking the followed branches failed")
