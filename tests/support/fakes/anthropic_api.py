"""A fake Anthropic Messages API on 127.0.0.1 that answers like the real one where it matters.

- `POST /v1/messages`: checks the key (`x-api-key`, or `authorization: Bearer` as SDK 2.x
  sends it); answers a message with content blocks (optionally a
  thinking block first), `stop_reason` and `usage` with cache fields. Prefix caching is simulated:
  a system prompt whose blocks carry `cache_control` and reach 1,024 tokens is written to the
  cache on first sight (`cache_creation_input_tokens`) and read from it afterwards
  (`cache_read_input_tokens`); shorter prefixes are not cached, as on the real API.
- `POST /v1/messages/count_tokens`: `{"input_tokens": n}`.
- Errors in the real shape: `{"type": "error", "error": {"type": ..., "message": ...}}` with
  401 authentication_error, 429 rate_limit_error (+ `retry-after`), 529 overloaded_error,
  400 invalid_request_error for a request the real API would refuse (sampling parameters on
  the newest models is not one we send; a body without max_tokens is).

Every request is recorded. Answers come from responders per role (the `# Role: NAME` line of the
system prompt); a queue of scripted failures and odd answers is consumed first.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.fakes.loopback import LoopbackServer, send_json

CACHE_MIN_TOKENS = 1024
API_KEY = "sk-ant-test-key"
Responder = Callable[[dict[str, Any]], dict[str, Any]]


def tokens(text: str) -> int:
    return math.ceil(len(text) / 3.5)


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system") or ""
    if isinstance(system, str):
        return system
    return "".join(block.get("text", "") for block in system)


def _user_text(body: dict[str, Any]) -> str:
    out = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        else:
            out += [block.get("text", "") for block in content or []]
    return "".join(out)


def role_of(body: dict[str, Any]) -> str:
    match = re.search(r"^# Role: (\w+)", _system_text(body), re.M)
    return match.group(1) if match else "unknown"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def role(self) -> str:
        return role_of(self.body)

    @property
    def user(self) -> str:
        return _user_text(self.body)

    @property
    def system(self) -> str:
        return _system_text(self.body)


@dataclass
class Scripted:
    """One queued behaviour: an HTTP error, or an odd answer ("max_tokens", "malformed")."""

    status: int = 200
    kind: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    role: str | None = None  # only for requests of this role; None for any


def default_answer(body: dict[str, Any]) -> dict[str, Any]:
    role = role_of(body)
    if role == "validate":
        ids = re.findall(r'<finding id="(F\d+)"', _user_text(body))
        return {"verdicts": [{"id": i, "supported": True, "reason": "shown"} for i in ids]}
    if role == "risk":
        return {"summary": "The fake model read the change.", "findings": []}
    if role == "tests":
        return {"findings": [], "test_files": []}
    return {"findings": [], "patches": []}


class FakeAnthropic(LoopbackServer):
    def __init__(self, *, thinking_first: bool | None = None, latency_s: float = 0.0) -> None:
        """`thinking_first`: True always, False never, None every other answer (as a model with
        adaptive thinking does: sometimes it thinks first, sometimes not)."""
        self.requests: list[Recorded] = []
        self.responders: dict[str, Responder] = {}
        self.script: list[Scripted] = []
        self.thinking_first = thinking_first
        self._answers = 0
        self.latency_s = latency_s
        self.cached_prefixes: set[str] = set()
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def base_url(self) -> str:
        return self.url

    def messages(self, role: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.path == "/v1/messages" and (role is None or r.role == role)
        ]

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        role: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        for _ in range(times):
            self.script.append(Scripted(status=status, headers=headers or {}, role=role))

    def odd_next(self, kind: str, *, role: str | None = None, times: int = 1) -> None:
        for _ in range(times):
            self.script.append(Scripted(kind=kind, role=role))

    # -- HTTP ---------------------------------------------------------------------------------

    def _take_script(self, role: str) -> Scripted | None:
        with self._lock:
            for index, item in enumerate(self.script):
                if item.role is None or item.role == role:
                    return self.script.pop(index)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                send_json(
                    self,
                    status,
                    payload,
                    {"request-id": f"req_{uuid.uuid4().hex[:16]}", **(headers or {})},
                )

            def _error(
                self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
            ) -> None:
                self._send(
                    status, {"type": "error", "error": {"type": kind, "message": message}}, headers
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                record = Recorded(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                with fake._lock:
                    fake.requests.append(record)
                sent = self.headers.get("x-api-key") or (
                    self.headers.get("authorization") or ""
                ).removeprefix("Bearer ")
                if sent != API_KEY:
                    self._error(401, "authentication_error", "invalid x-api-key")
                    return
                if self.path == "/v1/messages/count_tokens":
                    count = tokens(_system_text(body)) + tokens(_user_text(body))
                    self._send(200, {"input_tokens": count})
                    return
                if self.path != "/v1/messages":
                    self._error(404, "not_found_error", f"Not found: {self.path}")
                    return
                if "max_tokens" not in body or "model" not in body:
                    self._error(400, "invalid_request_error", "max_tokens: Field required")
                    return
                role = record.role
                scripted = fake._take_script(role)
                if scripted and scripted.status == 429:
                    self._error(
                        429,
                        "rate_limit_error",
                        "Number of request tokens has exceeded your per-minute rate limit",
                        {"retry-after": "1", **scripted.headers},
                    )
                    return
                if scripted and scripted.status == 529:
                    self._error(529, "overloaded_error", "Overloaded", scripted.headers)
                    return
                if scripted and scripted.status >= 400:
                    self._error(
                        scripted.status, "api_error", "Internal server error", scripted.headers
                    )
                    return
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                self._send(200, fake._message(body, scripted.kind if scripted else ""))

        return Handler

    def _message(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        role = role_of(body)
        answer = self.responders.get(role, default_answer)(body)
        text = json.dumps(answer)
        stop = "end_turn"
        if kind == "max_tokens":
            text, stop = text[: max(1, len(text) // 2)], "max_tokens"
        elif kind == "malformed":
            text = text.rstrip("}") + ', "extra": '
        system = body.get("system") or []
        cached = isinstance(system, list) and any("cache_control" in b for b in system)
        prefix = _system_text(body)
        prefix_tokens = tokens(prefix)
        read = write = 0
        if cached and prefix_tokens >= CACHE_MIN_TOKENS:
            with self._lock:
                if prefix in self.cached_prefixes:
                    read = prefix_tokens
                else:
                    write = prefix_tokens
                    self.cached_prefixes.add(prefix)
        uncached = (0 if read or write else prefix_tokens) + tokens(_user_text(body))
        content: list[dict[str, Any]] = []
        with self._lock:
            self._answers += 1
            think = self.thinking_first if self.thinking_first is not None else self._answers % 2
        if think:
            content.append(
                {
                    "type": "thinking",
                    "thinking": "Looking at the hunks.",
                    "signature": "c2lnbmF0dXJl",
                }
            )
        content.append({"type": "text", "text": text})
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": uncached,
                "output_tokens": tokens(text),
                "cache_creation_input_tokens": write,
                "cache_read_input_tokens": read,
                "service_tier": "standard",
            },
        }
