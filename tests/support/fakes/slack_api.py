"""A fake Slack Web API on 127.0.0.1 that behaves like Slack where it matters.

- Auth: `Authorization: Bearer <token>`; a wrong token answers `invalid_auth` (HTTP 200, as Slack).
  The token holds the scopes `manifest.yml` asks for; a method that needs another (per Slack's
  method catalog in the test data) answers `missing_scope` with `needed` and `provided`.
- Block Kit limits Slack enforces and slack_sdk does not (testdata README): at most 50 blocks
  (`invalid_blocks`), section text 3,000 and section fields 2,000 characters (`invalid_blocks`),
  header 150, and about 13,000 characters of blocks in all (`msg_blocks_too_long`).
- `chat.postMessage` to a channel the bot is not in: `not_in_channel`; unknown ts on
  `chat.update`: `message_not_found`.
- Rate limits on demand: HTTP 429, `Retry-After`, `{"ok": false, "error": "ratelimited"}`.
- The external file upload: `files.getUploadURLExternal` → POST the bytes to the upload URL →
  `files.completeUploadExternal` shares them in a channel or thread.
- `response_url`s under `/response/...` record what `respond()` sends.
- `views.open` takes a well-formed trigger_id once (`invalid_trigger_id`, `exchanged_trigger_id`);
  `views.publish` wants a user and a home view; both refuse views past Slack's limits (100 blocks,
  a 24-character modal title, 250 kB). `chat.getPermalink` knows only posted messages.

Every call is recorded with its arguments.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

from tests.support.fakes.loopback import LoopbackServer, send_json
from tests.support.testdata import slack_testdata

BOT_TOKEN = "xoxb-test-token"
TOTAL_BLOCKS_LIMIT = 13_000
TRIGGER_ID = re.compile(r"\d+\.[0-9a-z]+\.[0-9a-z]+")


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0


def block_error(blocks: list[dict[str, Any]]) -> str | None:
    if len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        kind = block.get("type")
        if kind == "section":
            text = (block.get("text") or {}).get("text", "")
            if len(text) > 3000:
                return "invalid_blocks"
            if any(len(f.get("text", "")) > 2000 for f in block.get("fields") or []):
                return "invalid_blocks"
        if kind == "header" and len((block.get("text") or {}).get("text", "")) > 150:
            return "invalid_blocks"
        if kind == "context" and len(block.get("elements") or []) > 10:
            return "invalid_blocks"
    if len(json.dumps(blocks)) > TOTAL_BLOCKS_LIMIT:
        return "msg_blocks_too_long"
    return None


def _catalog_scopes() -> dict[str, set[str]]:
    """The bot scopes each method needs, from Slack's method catalog in the test data."""
    needs: dict[str, set[str]] = {}
    for path in slack_testdata("methods").glob("*.json"):
        spec = json.loads(path.read_text())
        if isinstance(spec, dict) and isinstance(spec.get("scopes"), dict):
            needs[path.stem] = {item["name"] for item in spec["scopes"].get("bot", [])}
    return needs


def _manifest_scopes() -> set[str]:
    """What the app is granted when installed from manifest.yml."""
    manifest = yaml.safe_load((Path(__file__).resolve().parents[3] / "manifest.yml").read_text())
    return set(manifest["oauth_config"]["scopes"]["bot"])


class FakeSlack(LoopbackServer):
    def __init__(
        self, channels: tuple[str, ...] = ("C111",), scopes: set[str] | None = None
    ) -> None:
        # The token has the scopes manifest.yml asks for: a method needing another answers
        # missing_scope, as Slack does.
        self.scopes = _manifest_scopes() if scopes is None else scopes
        self.needs = _catalog_scopes()
        self.calls: list[Call] = []
        self.messages: list[Message] = []
        self.responses: list[dict[str, Any]] = []  # what respond() posted to response_urls
        self.uploads: dict[str, bytes] = {}
        self.shared_files: list[dict[str, Any]] = []
        self.channels = set(channels)
        self.rate_limits: dict[str, int] = {}  # method -> 429s still to send
        self.views: list[dict[str, Any]] = []  # modals opened and Home tabs published
        self.used_triggers: set[str] = set()
        self.user_teams: dict[str, str] = {}  # users.info: a member's own team (default T111)
        self.retry_after = 1
        self.holds: dict[str, threading.Event] = {}  # method -> released when set
        self.held: list[str] = []  # methods whose call is waiting on a hold
        self._ts = 1_700_000_000
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self) -> str:
        return f"{self.url}/response/{uuid.uuid4().hex[:8]}"

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def hold(self, method: str) -> threading.Event:
        """Calls of `method` wait (before they are answered) until the event is set: a test
        can kill the caller while it waits on Slack."""
        self.holds[method] = threading.Event()
        return self.holds[method]

    def rate_limit_next(self, method: str, times: int = 1) -> None:
        self.rate_limits[method] = times

    def top_level(self, channel: str = "C111") -> list[Message]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    def thread(self, ts: str) -> list[Message]:
        return [m for m in self.messages if m.thread_ts == ts]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError("timed out waiting on the fake Slack")

    # -- methods -------------------------------------------------------------------------------

    def _next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts}.000100"

    def _api(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": f"{self.url}/",
                "team": "Test",
                "user": "chatops",
                "team_id": "T111",
                "user_id": "UBOT",
                "bot_id": "B111",
            }
        if method in ("chat.postMessage", "chat.update"):
            blocks = args.get("blocks") or []
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            channel = args.get("channel", "")
            if channel not in self.channels:
                return {"ok": False, "error": "not_in_channel" if channel else "channel_not_found"}
            if not blocks and not args.get("text"):
                return {"ok": False, "error": "no_text"}
            error = block_error(blocks)
            if error:
                return {
                    "ok": False,
                    "error": error,
                    "response_metadata": {"messages": [f"[ERROR] {error}"]},
                }
            if method == "chat.postMessage":
                message = Message(
                    channel,
                    self._next_ts(),
                    args.get("text", ""),
                    blocks,
                    args.get("thread_ts") or None,
                )
                self.messages.append(message)
                return {
                    "ok": True,
                    "channel": channel,
                    "ts": message.ts,
                    "message": {"text": message.text, "blocks": blocks, "ts": message.ts},
                }
            for message in self.messages:
                if message.channel == channel and message.ts == args.get("ts"):
                    message.text, message.blocks = args.get("text", ""), blocks
                    message.edits += 1
                    return {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}
            return {"ok": False, "error": "message_not_found"}
        if method == "chat.getPermalink":
            for message in self.messages:
                if message.channel == args.get("channel") and message.ts == args.get("message_ts"):
                    return {
                        "ok": True,
                        "channel": message.channel,
                        "permalink": f"{self.url}/archives/{message.channel}/p"
                        + message.ts.replace(".", ""),
                    }
            if args.get("channel") not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": False, "error": "message_not_found"}
        if method == "users.info":
            user = str(args.get("user", ""))
            if not user:
                return {"ok": False, "error": "user_not_found"}
            team = self.user_teams.get(user, "T111")
            return {"ok": True, "user": {"id": user, "team_id": team, "name": user.lower()}}
        if method in ("views.open", "views.publish"):
            return self._view(method, args)
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "files.getUploadURLExternal":
            if not args.get("filename") or not str(args.get("length", "")).isdigit():
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{uuid.uuid4().hex[:10].upper()}"
            return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = args.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            for item in files:
                if item["id"] not in self.uploads:
                    return {"ok": False, "error": "file_not_found"}
            channel = args.get("channel_id")
            if channel and channel not in self.channels:
                return {"ok": False, "error": "not_in_channel"}
            shared = [
                {
                    "id": f["id"],
                    "title": f.get("title", ""),
                    "channel": channel,
                    "thread_ts": args.get("thread_ts"),
                    "content": self.uploads[f["id"]],
                }
                for f in files
            ]
            self.shared_files.extend(shared)
            return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in shared]}
        return {"ok": False, "error": "unknown_method"}

    def _view(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """views.open (a modal, by a trigger_id used once) and views.publish (a Home tab)."""
        raw = args.get("view")
        if not raw:
            return {"ok": False, "error": "invalid_arguments"}
        if len(raw if isinstance(raw, str) else json.dumps(raw)) > 250_000:
            return {"ok": False, "error": "view_too_large"}
        view = json.loads(raw) if isinstance(raw, str) else raw
        if method == "views.open":
            trigger = str(args.get("trigger_id", ""))
            if not TRIGGER_ID.fullmatch(trigger):
                return {"ok": False, "error": "invalid_trigger_id"}
            if trigger in self.used_triggers:
                return {"ok": False, "error": "exchanged_trigger_id"}
            self.used_triggers.add(trigger)
        elif not args.get("user_id") or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        blocks = view.get("blocks") or []
        title = (view.get("title") or {}).get("text", "")
        if len(blocks) > 100 or len(title) > 24 or block_error(blocks[:50]) == "invalid_blocks":
            return {
                "ok": False,
                "error": "invalid_arguments",
                "response_metadata": {"messages": ["[ERROR] view does not fit Slack's limits"]},
            }
        view_id = f"V{uuid.uuid4().hex[:8].upper()}"
        self.views.append({"method": method, "user_id": args.get("user_id"), **view})
        return {"ok": True, "view": {"id": view_id, **view}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                send_json(self, status, payload, headers, "application/json; charset=utf-8")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.startswith("/upload/"):
                    with fake._lock:
                        fake.uploads[self.path.rsplit("/", 1)[1]] = raw
                    self.send_response(200)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                    return
                if self.path.startswith("/response/"):
                    with fake._lock:
                        fake.responses.append(json.loads(raw or b"{}"))
                    self._send(200, {"ok": True})
                    return
                method = self.path.removeprefix("/api/")
                kind = self.headers.get("content-type", "")
                if "json" in kind:
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                auth = self.headers.get("authorization", "")
                token = auth.removeprefix("Bearer ") if auth else args.get("token", "")
                hold = fake.holds.get(method)
                if hold is not None and not hold.is_set():
                    with fake._lock:
                        fake.held.append(method)
                    hold.wait(60)
                with fake._lock:
                    call = Call(method, args, time.monotonic())
                    fake.calls.append(call)
                    if fake.rate_limits.get(method, 0) > 0:
                        fake.rate_limits[method] -= 1
                        call.status, call.response = 429, {"ok": False, "error": "ratelimited"}
                        self._send(429, call.response, {"Retry-After": str(fake.retry_after)})
                        return
                    needed = fake.needs.get(method, set())
                    if token != BOT_TOKEN:
                        call.response = {"ok": False, "error": "invalid_auth"}
                    elif needed and not needed & fake.scopes:
                        call.response = {
                            "ok": False,
                            "error": "missing_scope",
                            "needed": ",".join(sorted(needed)),
                            "provided": ",".join(sorted(fake.scopes)),
                        }
                    else:
                        call.response = fake._api(method, args)
                self._send(200, call.response)

        return Handler
