"""Socket Mode: the Bolt app over slack_sdk's built-in WebSocket client (the standard library's
sockets, no other dependency), with three gaps of that client closed. Each one delayed or lost
deliveries; tests/test_socket_mode.py drives the client against a fake endpoint and fails
without these fixes.

- A connection that ends with no close frame (a dropped TCP connection) reads as empty data
  forever: the client spins a core on it and notices only after five failed pings, about a
  minute at Bolt's 10 s, deaf all that time. Here the end of the stream ends the session, and
  the client's monitor opens a new connection at its next check.
- The monitor checks every PING_INTERVAL_S (Bolt: 10 s), which is also how long a close frame
  from Slack waits for the new connection.
- A read blocks for up to 3 s holding its session's lock, and moving to a new connection
  (Slack's `disconnect`, every few hours) or closing waits for that lock with every envelope
  behind it: what Slack sent meanwhile was acked after its 3 s. Here a read returns within
  WAKE_S once its session is replaced or closed.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.builtin.connection import ConnectionState

PING_INTERVAL_S = 3.0
WAKE_S = 0.1


class _SessionReads:
    """A session's socket whose reads end with the session, and whose end of stream is an
    error (the client takes a read of nothing for "no data yet"). Everything else is the
    socket's own."""

    def __init__(self, sock: socket.socket, state: ConnectionState) -> None:
        self._sock = sock
        self._state = state
        self._timeout = sock.gettimeout()
        self._poll = select.poll()  # not select(): any file descriptor number, however high
        self._poll.register(sock, select.POLLIN)

    def recv(self, size: int) -> bytes:
        waited = 0.0
        while not self._state.terminated:
            if self._readable():
                data = self._sock.recv(size)
                if not data:
                    raise ConnectionResetError(
                        errno.ECONNRESET, "the Socket Mode connection was closed by the other end"
                    )
                return data
            waited += WAKE_S
            if self._timeout is not None and waited >= self._timeout:
                # As the socket itself would: the client lets its lock go between reads.
                raise TimeoutError("timed out")
        return b""  # replaced or closed: the session's loop ends here

    def _readable(self) -> bool:
        if isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            return True
        return bool(self._poll.poll(WAKE_S * 1000))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Client(SocketModeClient):
    def connect(self) -> None:
        super().connect()
        session = self.current_session
        if session is not None and session.sock is not None:
            reads = _SessionReads(session.sock, self.current_session_state)
            session.sock = reads  # type: ignore[assignment]


class SocketMode(SocketModeHandler):
    """Bolt's Socket Mode handler over `_Client`: `connect()`, then `close()` to stop."""

    def __init__(self, app: App, app_token: str) -> None:
        # Not Bolt's __init__: it would start a client of its own (and its threads) first.
        self.app = app
        self.app_token = app_token
        self.client = _Client(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,
            proxy=app.client.proxy,
            ping_interval=PING_INTERVAL_S,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
