"""The Bolt app, its Web API client, and the signature-checked, threaded ASGI handler that
`bot.surfaces.http` mounts at `/slack/events` (Socket Mode uses the Bolt app directly)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.asgi import SlackRequestHandler
from slack_bolt.adapter.asgi.http_request import AsgiHttpRequest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import register

log = logging.getLogger(__name__)


def web_client(token: str, base_url: str | None) -> WebClient:
    """A WebClient that retries rate-limited calls after Slack's Retry-After."""
    url = base_url or "https://slack.com/api/"
    return WebClient(
        token=token,
        base_url=url
        if url.endswith("/")
        else url + "/",  # urljoin drops the last segment otherwise
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)],
    )


def build_bolt_app(client: WebClient, signing_secret: str, inbox: SlackInbox) -> App:
    app = App(client=client, signing_secret=signing_secret, process_before_response=False)
    register(app, inbox)
    return app


class ThreadedSlackRequestHandler(SlackRequestHandler):
    """Bolt's ASGI handler runs the (synchronous) dispatch on the event loop, so one slow
    request holds up every other. This one dispatches in a thread, so acks do not queue.

    It also checks the signature first: `BoltRequest` parses the body before Bolt verifies it,
    so a stranger's malformed body (a non-numeric timestamp, `payload=[]`, truncated JSON) would
    be a 500 and a traceback. Unsigned: 401; signed but malformed: 400; never 500."""

    def __init__(self, app: App, signing_secret: str) -> None:
        super().__init__(app)
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None

    def _signed(self, body: str, headers: dict[str, Any]) -> bool:
        if self.verifier is None:
            return True  # Socket Mode's app has no signing secret; Bolt decides
        timestamp = str(headers.get("x-slack-request-timestamp") or "")
        signature = str(headers.get("x-slack-signature") or "")
        if not (timestamp.isascii() and timestamp.isdigit()) or not signature:
            return False
        return self.verifier.is_valid(body=body, timestamp=timestamp, signature=signature)

    async def dispatch(self, request: AsgiHttpRequest) -> BoltResponse:
        try:
            body = await request.get_raw_body()
            headers = request.get_headers()
            signed = self._signed(body, headers)
        except (UnicodeDecodeError, ValueError):  # not UTF-8, or a timestamp int() refuses
            signed = False
        if not signed:
            return BoltResponse(status=401, body="invalid request signature")
        try:
            bolt_request = BoltRequest(body=body, query=request.query_string, headers=headers)
        except Exception:  # signed, but not a body Slack sends
            log.info("a signed request with a malformed body was refused (400)")
            return BoltResponse(status=400, body="malformed request body")
        return await asyncio.to_thread(self._dispatch, bolt_request)

    def _dispatch(self, request: BoltRequest) -> BoltResponse:
        try:
            return self.app.dispatch(request)
        except (ValueError, TypeError, KeyError, AttributeError):  # a body Bolt cannot read
            log.info("a signed request Bolt could not read was refused (400)")
            return BoltResponse(status=400, body="malformed request body")
