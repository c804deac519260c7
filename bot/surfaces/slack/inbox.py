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
from functools import cached_property
from typing import Any

from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import OperationalError

from bot.core.actor import Actor, Surface, UserError
from bot.core.ports import DeliveryLog
from bot.surfaces.slack.blocks import escape

log = logging.getLogger(__name__)

# Said when the store went away while a delivery was handled: it stays recorded and pending,
# and is handled again once the store is back.
STORE_AWAY = ":warning: My database is unavailable right now; I will act on this when it is back."
# Long enough for Slack's retries (minutes) and a person's "did my click count?" (a day).
KEEP_HANDLED_S = 7 * 24 * 3600.0
MAX_ATTEMPTS = 3
REPLAYS_PER_PASS = 20
# Said when handling broke in a way no person could fix (it is logged with the traceback).
BROKE = ":x: Something went wrong on my side handling this; it is logged. Try again."
# Said when a delivery could not even be recorded: nothing was done with it.
STORE_DOWN = (
    ":warning: My database is unavailable right now, so nothing was started. Try again in a minute."
)


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

    def reply(self, text: str) -> None:
        """An answer where the delivery came from: ephemerally through its `response_url`, in
        the thread of a mention or of a direct message, to the person alone who clicked an
        agent session's Stop; a reaction or a modal has nowhere to answer (logged)."""
        event = self.body.get("event") or {}
        kind = event.get("type")
        if self.body.get("response_url"):
            self.respond(text, replace_original=False)
        elif (kind == "app_mention" or is_direct_message(event)) and event.get("channel"):
            self.client.chat_postMessage(
                channel=event["channel"], text=text, thread_ts=event.get("thread_ts") or event["ts"]
            )
        elif kind == "agent_session_stopped" and event.get("channel") and event.get("user"):
            self.client.chat_postEphemeral(
                channel=event["channel"],
                user=event["user"],
                text=text,
                thread_ts=event.get("thread_ts") or None,
            )
        else:
            log.info("%s: %s", self.key, text[:200])

    @cached_property
    def actor(self) -> Actor:
        """Who is acting, from the body as Slack sent it: the member's own team (a Slack
        Connect guest's differs from the workspace's), never the team the request came in."""
        body = self.body
        if "command" in body:  # a slash command
            return Actor(str(body.get("user_id", "")), Surface.slack, body.get("team_id"))
        if body.get("type") in ("block_actions", "view_submission"):
            user = body.get("user") or {}
            team = user.get("team_id") or (body.get("team") or {}).get("id")
            return Actor(str(user.get("id", "")), Surface.slack, team)
        event = body.get("event") or {}
        user = str(event.get("user", ""))
        if event.get("type") in ("reaction_added", "reaction_removed", "agent_session_stopped"):
            # A reaction or a Stop click does not say the member's own team: ask Slack.
            return Actor(user, Surface.slack, event.get("user_team") or _team_of(self.client, user))
        if event.get("type") == "app_home_opened":
            return Actor(user, Surface.slack, body.get("team_id"))
        team = event.get("user_team") or event.get("team") or body.get("team_id")
        return Actor(user, Surface.slack, team)


def is_direct_message(event: dict[str, Any]) -> bool:
    """A message event in a direct conversation with the app (subscribed as `message.im`)."""
    return event.get("type") == "message" and event.get("channel_type") == "im"


def _team_of(client: WebClient, user: str) -> str | None:
    try:
        return str(client.users_info(user=user)["user"]["team_id"])
    except (SlackApiError, KeyError, TypeError) as exc:
        log.info("could not read the team of %s: %s", user, exc)
        return None


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
                Delivery(row.key, body, self.client).reply(
                    ":warning: I could not handle this after several tries; nothing more will "
                    "be done with it. Try again."
                )
            except Exception:
                log.warning("%s: could not say it was given up", row.key, exc_info=True)
        handled: list[str] = []
        # One at a time, each claimed just before it is handled: a lease taken for a whole
        # batch could run out while the batch is still being worked through.
        for _ in range(REPLAYS_PER_PASS):
            claimed = self.store.claim_abandoned(self.worker, self.lease_s, MAX_ATTEMPTS, limit=1)
            if not claimed:
                break
            row = claimed[0]
            log.warning("delivery %s (%s) was left unhandled; handling it now", row.key, row.kind)
            self._handle(row.kind, row.key, json.loads(row.payload), replayed=True)
            handled.append(row.key)
        self.store.prune(KEEP_HANDLED_S)
        return handled

    def store_down(self, key: str, body: dict[str, Any]) -> None:
        """Acked without a record (the store is down): say so where the delivery came from,
        for deliveries whose ack carries no answer of its own."""
        try:
            Delivery(key, body, self.client).reply(STORE_DOWN)
        except Exception:
            log.warning("%s: could not say the store is down", key, exc_info=True)

    def _handle(self, kind: str, key: str, body: dict[str, Any], *, replayed: bool) -> None:
        handler = self.handlers.get(kind)
        if handler is None:
            self._end(key, f"no handler for {kind!r} here")
            return
        delivery = Delivery(key, body, self.client, replayed)
        try:
            handler(delivery)
        except UserError as exc:  # the one place a person's mistake becomes an answer
            hint = f"\n{escape(exc.hint)}" if exc.hint else ""
            self._answer(delivery, f":warning: {escape(exc.message)}{hint}")
        except OperationalError:  # the store went away mid-way: left pending, tried again later
            log.warning("handling %s: the store is unavailable; it stays pending", key)
            self._answer(delivery, STORE_AWAY)
            return
        except Exception as exc:  # the delivery ends visibly; Bolt would only have logged it
            log.exception("handling %s failed", key)
            self._end(key, f"{type(exc).__name__}: {exc}")
            self._answer(delivery, BROKE)
            return
        self._end(key, None)

    def _answer(self, delivery: Delivery, text: str) -> None:
        try:
            delivery.reply(text)
        except Exception:  # the answer is lost; the delivery's outcome stands
            log.warning("%s: could not answer", delivery.key, exc_info=True)

    def _end(self, key: str, error: str | None) -> None:
        try:
            if error is None:
                self.store.done(key)
            else:
                self.store.fail(key, error)
        except OperationalError:  # stays pending: the reaper handles it again, idempotently
            log.warning("%s: could not record that it was handled", key, exc_info=True)
