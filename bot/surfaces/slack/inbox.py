"""Slack deliveries are recorded before they are acknowledged, and handled from the record.

A listener calls `receive()`: the delivery (the request body as Slack sent it) goes into the
inbox in one insert keyed by its de-duplication key, then it is acked, then the handler for its
kind runs. A process killed after the ack leaves the row pending; when its lease runs out, the
reaper of any consumer calls `redeliver()`, which runs the same handler on the same body.
Handlers answer through what the body carries (`response_url`, the channel), never through
objects of the request that acked it, so a replay answers the user as the first try would have.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from sqlalchemy.exc import OperationalError

from bot.core.ports import DeliveryLog

log = logging.getLogger(__name__)

# Long enough for Slack's retries (minutes) and a person's "did my click count?" (a day).
KEEP_HANDLED_S = 7 * 24 * 3600.0
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Delivery:
    key: str
    body: dict[str, Any]
    client: WebClient
    replayed: bool = False

    def respond(self, text: str = "", **kwargs: Any) -> None:
        """An answer through the delivery's `response_url` (ephemeral unless told)."""
        url = self.body.get("response_url")
        if not url:
            log.info("%s: no response_url to answer %r", self.key, text[:80])
            return
        kwargs.setdefault("response_type", "ephemeral")
        Respond(response_url=str(url))(text=text, **kwargs)


Handler = Callable[[Delivery], None]


class SlackInbox:
    def __init__(
        self,
        store: DeliveryLog,
        client: WebClient,
        handlers: dict[str, Handler],
        *,
        worker: str,
        lease_s: float,
    ) -> None:
        self.store = store
        self.client = client
        self.handlers = handlers
        self.worker = worker
        self.lease_s = lease_s

    def receive(
        self,
        kind: str,
        key: str,
        body: dict[str, Any],
        ack: Callable[[], object],
        unavailable: Callable[[], object],
    ) -> None:
        """Record, ack, handle. With the store down nothing is recorded and `unavailable`
        acks instead (saying so, where the surface can)."""
        try:
            recorded = self.store.record(key, kind, body, self.worker, self.lease_s)
        except OperationalError:
            log.exception("the store is unavailable; %s not recorded", key)
            unavailable()
            return
        ack()
        if not recorded:
            log.info("duplicate delivery of %s: already recorded", key)
            return
        self._handle(kind, key, body, replayed=False)

    def redeliver(self) -> list[str]:
        """The reaper's pass: handle what a dead process acked but did not finish."""
        for row in self.store.given_up(MAX_ATTEMPTS):
            log.error("delivery %s (%s) failed %d times; given up", row.key, row.kind, row.attempts)
            body = json.loads(row.payload)
            try:
                Delivery(row.key, body, self.client).respond(
                    ":warning: I could not handle this after several tries; nothing more will "
                    "be done with it. Try again."
                )
            except Exception:
                log.warning("%s: could not say it was given up", row.key, exc_info=True)
        rows = self.store.claim_abandoned(self.worker, self.lease_s, MAX_ATTEMPTS)
        for row in rows:
            log.warning("delivery %s (%s) was left unhandled; handling it now", row.key, row.kind)
            self._handle(row.kind, row.key, json.loads(row.payload), replayed=True)
        self.store.prune(KEEP_HANDLED_S)
        return [row.key for row in rows]

    def _handle(self, kind: str, key: str, body: dict[str, Any], *, replayed: bool) -> None:
        handler = self.handlers.get(kind)
        if handler is None:
            self._end(key, f"no handler for {kind!r} here")
            return
        try:
            handler(Delivery(key, body, self.client, replayed))
        except OperationalError:  # the store went away mid-way: left pending, tried again later
            log.warning("handling %s: the store is unavailable; it stays pending", key)
            return
        except Exception as exc:  # the delivery ends visibly; Bolt would only have logged it
            log.exception("handling %s failed", key)
            self._end(key, f"{type(exc).__name__}: {exc}")
            return
        self._end(key, None)

    def _end(self, key: str, error: str | None) -> None:
        try:
            if error is None:
                self.store.done(key)
            else:
                self.store.fail(key, error)
        except OperationalError:  # stays pending: the reaper handles it again, idempotently
            log.warning("%s: could not record that it was handled", key, exc_info=True)
