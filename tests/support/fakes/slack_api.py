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
- Streaming (`chat.startStream` / `appendStream` / `stopStream`) by the argument rules of the
  method catalog: `thread_ts` required (a message the fake knows in that channel), in a channel
  (not a DM) `recipient_user_id` and `recipient_team_id` too (`missing_recipient_*`);
  `markdown_text` at most 12,000 characters; chunks of the four documented types, a task's status
  one of pending, in_progress, complete, error (`invalid_chunks`); appends and the stop only to a
  stream this app started (`message_not_found`), still streaming
  (`message_not_in_streaming_state`, `stopped_by_user`). Streamed messages are kept apart from
  posted ones: `streams()`, not `thread()`. `stream_refusal` set to an error (`unknown_method`,
  `not_allowed`...) is a workspace without streaming: the three methods answer that.
- The external file upload: `files.getUploadURLExternal` → POST the bytes to the upload URL →
  `files.completeUploadExternal` shares them in a channel or thread.
- `response_url`s under `/response/...` record what `respond()` sends.
- `apps.connections.open` (app-level token only) answers the URL of `socket_mode`, a fake Socket
  Mode endpoint (`tests/support/fakes/socket_mode.py`), when a test sets one.
- `views.open` takes a well-formed trigger_id once (`invalid_trigger_id`, `exchanged_trigger_id`);
  `views.publish` wants a user and a home view; both refuse views past Slack's limits (100 blocks,
  a 24-character modal title, 250 kB). `chat.getPermalink` knows only posted messages.
- Agent sessions: `agents.sessions.setStatus` (status active, processing, suspended or closed;
  `thread_ts` in a DM; chat:write, as Slack's reference says; the answer warns
  `missing_agent_session_stopped_event_subscription` while manifest.yml does not subscribe to
  `agent_session_stopped`) and `assistant.threads.setStatus` (`channel_id`, `thread_ts` and
  `status` required; "" clears it). `refusals` maps a method to the error it answers in a
  workspace without it (`unknown_method`, `not_allowed`, ...).
- A `context_actions` block holds 1 to 5 elements, each `feedback_buttons` or `icon_button`.

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
SESSION_STATUSES = ("active", "processing", "suspended", "closed")


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
    stream: Stream | None = None  # a message started by chat.startStream


@dataclass
class Stream:
    """A streamed message's state: streaming until chat.stopStream (or the person) stops it."""

    recipient_user_id: str | None
    recipient_team_id: str | None
    task_display_mode: str
    state: str = "streaming"  # streaming, stopped, stopped_by_user
    chunks: list[dict[str, Any]] = field(default_factory=list)  # every chunk, in order
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> its last update
    plan_title: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)  # chat.stopStream's
    appends: int = 0


STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")
MARKDOWN_LIMIT = 12_000  # markdown_text, per the method catalog
TASK_STATUSES = ("pending", "in_progress", "complete", "error")
DISPLAY_MODES = ("timeline", "plan", "dense")  # the catalog's; its default is timeline
USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


def chunk_error(chunks: object) -> str | None:
    """Streaming chunks: markdown_text, task_update, plan_update and blocks, as documented."""
    if not isinstance(chunks, list):
        return "invalid_chunks"
    for chunk in chunks:
        if not isinstance(chunk, dict):
            return "invalid_chunks"
        kind = chunk.get("type")
        if kind == "markdown_text":
            text = chunk.get("text")
            if not isinstance(text, str) or not text or len(text) > MARKDOWN_LIMIT:
                return "invalid_chunks"
        elif kind == "task_update":
            if not all(isinstance(chunk.get(k), str) and chunk[k] for k in ("id", "title")):
                return "invalid_chunks"
            if chunk.get("status") not in TASK_STATUSES:
                return "invalid_chunks"
        elif kind == "plan_update":
            if not isinstance(chunk.get("title"), str) or not chunk["title"]:
                return "invalid_chunks"
        elif kind == "blocks":
            blocks = chunk.get("blocks")
            if not isinstance(blocks, list) or block_error(blocks) is not None:
                return "invalid_chunks"
        else:
            return "invalid_chunks"
    return None


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
        if kind == "context_actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 5 or any(
                e.get("type") not in ("feedback_buttons", "icon_button") for e in elements
            ):
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
    # Not in the catalog: its reference page says a bot token bearing chat:write.
    needs.setdefault("agents.sessions.setStatus", {"chat:write"})
    return needs


def _manifest_events() -> set[str]:
    """The bot events manifest.yml subscribes to."""
    manifest = yaml.safe_load((Path(__file__).resolve().parents[3] / "manifest.yml").read_text())
    return set(manifest["settings"]["event_subscriptions"]["bot_events"])


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
        self.stream_refusal: str | None = None  # the stream methods' answer, when set
        self.refusals: dict[str, str] = {}  # method -> its answer where a workspace lacks it
        # A SocketModeEndpoint (tests/support/fakes/socket_mode.py): apps.connections.open
        # answers with its ws:// URLs.
        self.socket_mode: Any = None
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

    def person_posts(self, channel: str, text: str, thread_ts: str | None = None) -> Message:
        """A message a person wrote (Slack has it, the app hears of it by an event): threads
        and sessions can name it."""
        with self._lock:
            message = Message(channel, self._next_ts(), text, [], thread_ts)
            self.messages.append(message)
        return message

    def top_level(self, channel: str = "C111") -> list[Message]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    def thread(self, ts: str) -> list[Message]:
        """The messages posted in a thread (streamed ones are in `streams()`)."""
        return [m for m in self.messages if m.thread_ts == ts and m.stream is None]

    def streams(self, thread_ts: str | None = None) -> list[Message]:
        """The messages started by chat.startStream (in one thread, when given)."""
        return [
            m
            for m in self.messages
            if m.stream is not None and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def stop_stream_as_user(self, ts: str) -> None:
        """The person watching stopped the stream: later appends answer stopped_by_user."""
        with self._lock:
            for message in self.streams():
                if message.ts == ts and message.stream is not None:
                    message.stream.state = "stopped_by_user"

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
        if method in self.refusals:
            return {"ok": False, "error": self.refusals[method]}
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
        if method in STREAM_METHODS:
            return self._stream(method, args)
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
        if method in ("agents.sessions.setStatus", "assistant.threads.setStatus"):
            return self._status(method, args)
        return {"ok": False, "error": "unknown_method"}

    def _status(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """An agent session's lifecycle status, or an assistant thread's status line."""
        channel, thread = str(args.get("channel_id") or ""), args.get("thread_ts")
        if method == "assistant.threads.setStatus":
            if not channel or not thread or args.get("status") is None:
                return _invalid("channel_id, thread_ts and status are required")
        elif args.get("status") not in SESSION_STATUSES:
            return _invalid(f"status must be one of {', '.join(SESSION_STATUSES)}")
        elif channel.startswith("D") and not thread:
            return _invalid("thread_ts is required for a thread-based session in a DM")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        if thread and not any(m.channel == channel and m.ts == thread for m in self.messages):
            return {"ok": False, "error": "invalid_thread_ts"}
        answer: dict[str, Any] = {"ok": True}
        if method == "agents.sessions.setStatus":
            answer.update(status=args["status"], title=args.get("title"))
            if "agent_session_stopped" not in _manifest_events():
                answer["warning"] = "missing_agent_session_stopped_event_subscription"
        return answer

    def _connections_open(self, token: str) -> dict[str, Any]:
        """Socket Mode's URL, for the app-level token only (Slack refuses a bot token)."""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token.startswith(("xoxb-", "xoxp-")):
            return {"ok": False, "error": "not_allowed_token_type"}
        if self.socket_mode is None or token != self.socket_mode.app_token:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": self.socket_mode.issue_url()}

    def _stream(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """chat.startStream, chat.appendStream, chat.stopStream, by the catalog's rules."""
        if self.stream_refusal is not None:
            return {"ok": False, "error": self.stream_refusal}
        chunks = args.get("chunks")
        if isinstance(chunks, str):  # a form body carries it as JSON
            try:
                chunks = json.loads(chunks)
            except ValueError:
                return {"ok": False, "error": "invalid_chunks"}
        channel = str(args.get("channel") or "")
        required = ("channel", "thread_ts") if method == "chat.startStream" else ("channel", "ts")
        missing = [name for name in required if not args.get(name)]
        if missing:
            return _invalid(f"missing required field: {missing[0]}")
        text = args.get("markdown_text")
        if text is not None and (not isinstance(text, str) or len(text) > MARKDOWN_LIMIT):
            return _invalid(f"markdown_text must be at most {MARKDOWN_LIMIT} characters")
        if chunks is not None and (error := chunk_error(chunks)) is not None:
            return {"ok": False, "error": error}
        if channel not in self.channels:
            return {"ok": False, "error": "not_in_channel"}
        if method == "chat.startStream":
            return self._start_stream(channel, args, chunks or [])
        message = next(
            (m for m in self.messages if m.channel == channel and m.ts == args.get("ts")), None
        )
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        stream = message.stream
        if stream is None or stream.state == "stopped":
            return {"ok": False, "error": "message_not_in_streaming_state"}
        if stream.state == "stopped_by_user":
            return {"ok": False, "error": "stopped_by_user"}
        if method == "chat.appendStream":
            # The catalog marks markdown_text required; Slack's reference and slack_sdk's own
            # ChatStream append chunks alone, so either one will do.
            if not text and not chunks:
                return {"ok": False, "error": "no_text"}
            stream.appends += 1
        else:
            blocks = args.get("blocks") or []
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            if len(blocks) > 50:
                return {"ok": False, "error": "msg_blocks_too_many"}
            if (error := block_error(blocks)) is not None:
                return {"ok": False, "error": error}
            stream.blocks = blocks
            stream.state = "stopped"
        _add_to_stream(message, text, chunks or [])
        answer: dict[str, Any] = {"ok": True, "channel": channel, "ts": message.ts}
        if method == "chat.stopStream":
            answer["message"] = {
                "ts": message.ts,
                "text": message.text,
                "thread_ts": message.thread_ts,
            }
        return answer

    def _start_stream(
        self, channel: str, args: dict[str, Any], chunks: list[dict[str, Any]]
    ) -> dict[str, Any]:
        thread_ts = str(args["thread_ts"])
        if not any(m.channel == channel and m.ts == thread_ts for m in self.messages):
            return _invalid("thread_ts names no message in this channel")
        user, team = args.get("recipient_user_id"), args.get("recipient_team_id")
        if not channel.startswith("D"):  # "Required when streaming to channels."
            if not user:
                return {"ok": False, "error": "missing_recipient_user_id"}
            if not team:
                return {"ok": False, "error": "missing_recipient_team_id"}
        if user and not USER_ID.fullmatch(str(user)):
            return {"ok": False, "error": "user_not_found"}
        mode = args.get("task_display_mode") or "timeline"
        if mode not in DISPLAY_MODES:
            return _invalid(f"task_display_mode must be one of {', '.join(DISPLAY_MODES)}")
        message = Message(
            channel,
            self._next_ts(),
            "",
            [],
            thread_ts,
            stream=Stream(user, team, mode),
        )
        _add_to_stream(message, args.get("markdown_text"), chunks)
        self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": message.ts}

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
                    if method == "apps.connections.open":
                        call.response = fake._connections_open(token)
                    elif token != BOT_TOKEN:
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


def _invalid(why: str) -> dict[str, Any]:
    return {
        "ok": False,
        "error": "invalid_arguments",
        "response_metadata": {"messages": [f"[ERROR] {why}"]},
    }


def _add_to_stream(message: Message, text: object, chunks: list[dict[str, Any]]) -> None:
    """The text a stream shows so far, and its tasks' latest states."""
    stream = message.stream
    assert stream is not None
    if isinstance(text, str) and text:
        message.text += text
    for chunk in chunks:
        stream.chunks.append(chunk)
        if chunk["type"] == "markdown_text":
            message.text += chunk["text"]
        elif chunk["type"] == "task_update":
            stream.tasks[chunk["id"]] = {**stream.tasks.get(chunk["id"], {}), **chunk}
        elif chunk["type"] == "plan_update":
            stream.plan_title = chunk["title"]
