"""A fake Slack Socket Mode endpoint on 127.0.0.1: plain RFC 6455 WebSocket over TCP, as
`slack_sdk`'s built-in client speaks it (no TLS off port 443).

- `apps.connections.open` on the fake Web API (`FakeSlack.socket_mode = endpoint`) hands out
  `issue_url()`: `ws://127.0.0.1:PORT/link/?ticket=...&app_id=...`. A ticket is good for one
  connection; anything else gets `HTTP/1.1 401` and no upgrade.
- On every connection Slack's `hello` first (`num_connections`, `debug_info`, `connection_info`),
  then envelopes: `{"envelope_id", "type": "slash_commands" | "interactive" | "events_api",
  "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}` (the last two on
  events only). Each must be acked with `{"envelope_id", "payload"?}`; the time from sending to
  the ack is measured here, where Slack measures it.
- Client pings get pongs; a client close frame gets one back.
- `disconnect(reason)` sends Slack's `disconnect` message (`refresh_requested`, `warning`,
  `link_disabled`) and leaves the socket open, as Slack does until the client moves over;
  `drop()` closes the TCP connection with no close frame; `close()` sends a close frame first.
- What Slack does with an envelope not acked when its connection goes away: an `events_api`
  envelope is delivered again on the next connection, as a new envelope with the same payload,
  `retry_attempt` one more and `retry_reason` `timeout`; a command or a click is not (the person
  sees an error): it is marked `failed`. `lose_acks()` makes the current connection swallow the
  acks it receives (lost in transit), so a test can have the app handle an envelope whose ack
  Slack never saw.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlparse

APP_TOKEN = "xapp-1-A111-1-test"
APP_ID = "A111"
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA
KINDS = ("slash_commands", "interactive", "events_api")

T = TypeVar("T")


@dataclass
class Envelope:
    id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int = 0
    retry_reason: str | None = None
    retry_of: str | None = None  # the envelope this one delivers again
    connection: int | None = None  # the number of the connection it was sent on
    sent_at: float | None = None  # time.monotonic()
    acked_at: float | None = None
    acked_on: int | None = None
    acks: int = 0  # more than one: the app acked the same envelope twice
    response: dict[str, Any] | None = None  # the ack's payload (an answer Slack shows)
    failed: str | None = None  # why Slack gave up on it

    @property
    def ack_s(self) -> float | None:
        if self.acked_at is None or self.sent_at is None:
            return None
        return self.acked_at - self.sent_at

    def message(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "envelope_id": self.id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.type == "events_api":
            body.update(retry_attempt=self.retry_attempt, retry_reason=self.retry_reason or "")
        return body


@dataclass
class Connection:
    number: int  # 1 for the first connection, and so on
    path: str
    sock: socket.socket = field(repr=False)
    open: bool = True
    ready: bool = False  # it has had its hello (and what waited for a connection)
    closed_by: str | None = None  # "client" or "server"
    close_frame: bool = False  # the client said goodbye with a close frame
    deaf: bool = False  # acks received are lost in transit
    lost_acks: list[str] = field(default_factory=list)
    pings: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    _send_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send_frame(self, opcode: int, data: bytes) -> None:
        header = bytes([0x80 | opcode])
        size = len(data)
        if size <= 125:
            header += bytes([size])
        elif size <= 0xFFFF:
            header += struct.pack("!BH", 126, size)
        else:
            header += struct.pack("!BQ", 127, size)
        with self._send_lock:
            self.sock.sendall(header + data)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(_TEXT, json.dumps(message).encode())


class SocketModeEndpoint:
    def __init__(self, app_token: str = APP_TOKEN, app_id: str = APP_ID) -> None:
        self.app_token = app_token
        self.app_id = app_id
        self.connections: list[Connection] = []
        self.envelopes: list[Envelope] = []
        self.refused: list[str] = []  # handshake paths refused
        self.stray_acks: list[dict[str, Any]] = []  # acks of envelopes never sent
        self._tickets: set[str] = set()
        self._queued: list[Envelope] = []  # events waiting for a connection
        self._changed = threading.Condition()
        endpoint = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                endpoint._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A connection that went away mid-frame (a drop, a client that closed) is what
                # the tests do; anything else is a bug of the fake, printed as usual.
                if isinstance(sys.exc_info()[1], OSError | ValueError):
                    return
                super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifetime ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        for connection in list(self.connections):
            self._close_socket(connection, "server")

    def issue_url(self) -> str:
        """What `apps.connections.open` answers: a URL good for one connection."""
        ticket = uuid.uuid4().hex
        with self._changed:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # -- what a test does ----------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 30.0, what: str = "the endpoint"
    ) -> T:
        """Wait for a predicate over the endpoint's state (connections, envelopes, acks),
        woken by each change; it is called with the endpoint's lock held."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._changed.wait(left)

    def connected(self, count: int = 1, timeout: float = 30.0) -> Connection:
        """The `count`th connection, once it is open and has had its hello."""
        return self.wait_for(
            lambda: (
                len(self.connections) >= count
                and self.connections[count - 1].open
                and self.connections[count - 1].ready
                and self.connections[count - 1]
            ),
            timeout,
            f"connection {count}",
        )

    @property
    def current(self) -> Connection | None:
        """The newest open connection that has had its hello: where envelopes go."""
        with self._changed:
            return next((c for c in reversed(self.connections) if c.open and c.ready), None)

    def send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
    ) -> Envelope:
        assert kind in KINDS, kind
        envelope = Envelope(
            id=str(uuid.uuid4()),
            type=kind,
            payload=payload,
            # Slack lets a command's and a click's ack carry the answer; an event's cannot.
            accepts_response_payload=(
                kind != "events_api"
                if accepts_response_payload is None
                else accepts_response_payload
            ),
        )
        with self._changed:
            self.envelopes.append(envelope)
        self._deliver(envelope)
        return envelope

    def command(self, payload: dict[str, Any]) -> Envelope:
        return self.send("slash_commands", payload)

    def interactive(self, payload: dict[str, Any]) -> Envelope:
        return self.send("interactive", payload)

    def event(self, payload: dict[str, Any]) -> Envelope:
        return self.send("events_api", payload)

    def acked(self, envelope: Envelope, timeout: float = 10.0) -> Envelope:
        return self.wait_for(
            lambda: envelope.acked_at is not None and envelope,
            timeout,
            f"the ack of {envelope.type} {envelope.id}",
        )

    def deliveries(self, envelope: Envelope) -> list[Envelope]:
        """The envelope and every retry of it, in order."""
        with self._changed:
            chain = [envelope]
            for other in self.envelopes:
                if other.retry_of in {e.id for e in chain}:
                    chain.append(other)
            return chain

    def disconnect(self, reason: str = "refresh_requested") -> Connection:
        """Slack's `disconnect` message on the current connection (which stays open)."""
        connection = self.current
        assert connection is not None, "no open connection"
        connection.send_json(
            {
                "type": "disconnect",
                "reason": reason,
                "debug_info": {"host": "applink-fake-1"},
            }
        )
        return connection

    def drop(self) -> Connection:
        """The current connection's TCP connection goes away, with no close frame."""
        connection = self.current
        assert connection is not None, "no open connection"
        self._close_socket(connection, "server")
        return connection

    def close(self, code: int = 1001, reason: str = "going away") -> Connection:
        connection = self.current
        assert connection is not None, "no open connection"
        with contextlib.suppress(OSError):
            connection.send_frame(_CLOSE, struct.pack("!H", code) + reason.encode())
        self._close_socket(connection, "server")
        return connection

    def lose_acks(self) -> Connection:
        """Acks arriving on the current connection from now on never reach Slack."""
        connection = self.current
        assert connection is not None, "no open connection"
        with self._changed:
            connection.deaf = True
        return connection

    # -- the server side -----------------------------------------------------------------------

    def _deliver(self, envelope: Envelope) -> None:
        connection = self.current
        if connection is None:
            with self._changed:
                if envelope.type == "events_api":
                    self._queued.append(envelope)
                else:
                    envelope.failed = "dispatch_failed"  # nobody to deliver to: Slack says so
                self._changed.notify_all()
            return
        with self._changed:
            envelope.connection = connection.number
            envelope.sent_at = time.monotonic()
        try:
            connection.send_json(envelope.message())
        except OSError:
            self._close_socket(connection, "client")

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        path = self._handshake(sock)
        if path is None:
            sock.close()
            return
        with self._changed:
            open_now = sum(1 for c in self.connections if c.open)
            connection = Connection(len(self.connections) + 1, path, sock)
            self.connections.append(connection)
        connection.send_json(
            {
                "type": "hello",
                "num_connections": open_now + 1,
                "debug_info": {
                    "host": "applink-fake-1",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        with self._changed:
            connection.ready = True
            queued, self._queued = self._queued, []
        for envelope in queued:
            self._deliver(envelope)
        with self._changed:
            self._changed.notify_all()
        try:
            self._read_frames(connection)
        finally:
            self._close_socket(connection, "client")

    def _handshake(self, sock: socket.socket) -> str | None:
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            raw += chunk
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, _, rest = head[0].partition(" ")
        target = rest.rsplit(" ", 1)[0]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])
        }
        url = urlparse(target)
        ticket = (parse_qs(url.query).get("ticket") or [""])[0]
        with self._changed:
            good_ticket = ticket in self._tickets
            self._tickets.discard(ticket)
        key = headers.get("sec-websocket-key", "")
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        if (
            method != "GET"
            or url.path != "/link/"
            or not good_ticket
            or not upgrade
            or headers.get("sec-websocket-version") != "13"
            or not key
        ):
            with self._changed:
                self.refused.append(target)
                self._changed.notify_all()
            sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            return None
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()  # noqa: S324
        sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        return target

    def _read_frames(self, connection: Connection) -> None:
        reader = connection.sock.makefile("rb")
        while True:
            head = reader.read(2)
            if len(head) < 2:
                return
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", reader.read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", reader.read(8))[0]
            if not head[1] & 0x80:
                return  # RFC 6455: a client's frames are masked; an unmasked one ends it
            mask, raw = reader.read(4), reader.read(size)
            if len(mask) < 4 or len(raw) < size:
                return
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(raw))
            if opcode == _PING:
                connection.pings += 1
                connection.send_frame(_PONG, data)
            elif opcode == _CLOSE:
                with self._changed:
                    connection.close_frame = True
                with contextlib.suppress(OSError):
                    connection.send_frame(_CLOSE, data[:2])
                return
            elif opcode == _TEXT:
                self._on_text(connection, json.loads(data))

    def _on_text(self, connection: Connection, message: dict[str, Any]) -> None:
        with self._changed:
            connection.received.append(message)
            envelope_id = str(message.get("envelope_id", ""))
            envelope = next((e for e in self.envelopes if e.id == envelope_id), None)
            if connection.deaf:
                connection.lost_acks.append(envelope_id)
            elif envelope is None:
                self.stray_acks.append(message)
            else:
                envelope.acks += 1
                if envelope.acked_at is None:
                    envelope.acked_at = time.monotonic()
                    envelope.acked_on = connection.number
                    envelope.response = message.get("payload")
            self._changed.notify_all()

    def _close_socket(self, connection: Connection, by: str) -> None:
        with self._changed:
            if not connection.open:
                return
            connection.open = False
            connection.closed_by = by
            unacked = [
                e for e in self.envelopes if e.connection == connection.number and not e.acks
            ]
            self._changed.notify_all()
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)
        connection.sock.close()
        for envelope in unacked:
            self._gone_unacked(envelope)

    def _gone_unacked(self, envelope: Envelope) -> None:
        """Slack's answer to an envelope whose connection went away before its ack."""
        with self._changed:
            if envelope.failed or any(e.retry_of == envelope.id for e in self.envelopes):
                return
            if envelope.type != "events_api":
                envelope.failed = "not acknowledged"  # the person sees an error
                self._changed.notify_all()
                return
            retry = Envelope(
                id=str(uuid.uuid4()),
                type=envelope.type,
                payload=envelope.payload,
                accepts_response_payload=envelope.accepts_response_payload,
                retry_attempt=envelope.retry_attempt + 1,
                retry_reason="timeout",
                retry_of=envelope.id,
            )
            envelope.failed = "retried"
            self.envelopes.append(retry)
        self._deliver(retry)
