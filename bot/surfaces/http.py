"""The HTTP face of `chatops serve`: the generic routes (a health check, Prometheus metrics)
with Slack's events endpoint mounted on them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.metrics import ACK_SECONDS

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpApp:
    """ASGI: a surface's handler at /slack/events (Slack's, signature-checked), a health check
    at /healthz, Prometheus metrics at /metrics; everything else goes to the surface's handler
    (Bolt answers 404)."""

    def __init__(self, slack: Asgi) -> None:
        self.slack = slack
        # Scrapes read the store: their own thread, so a slow database never holds up acks.
        self._metrics = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            body = await asyncio.get_running_loop().run_in_executor(self._metrics, generate_latest)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and scope["path"] == "/slack/events":
            started = time.perf_counter()
            try:
                await self.slack(scope, receive, send)
            finally:
                ACK_SECONDS.observe(time.perf_counter() - started)
            return
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await self.slack(scope, receive, send)
