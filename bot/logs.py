"""Logging: plain lines, or one JSON object a line (`CHATOPS_LOG_FORMAT=json`) with the run id
of the job that logged it, for a log pipeline to index."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)


@contextmanager
def run_context(run_id: str) -> Iterator[None]:
    """Log records made inside carry `run_id`."""
    token = current_run.set(run_id)
    try:
        yield
    finally:
        current_run.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        run_id = getattr(record, "run_id", None) or current_run.get()
        if run_id:
            entry["run_id"] = run_id
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class HeldBack(logging.Handler):
    """Log records kept until the terminal may show them: the shell prints them between
    commands, never over the prompt a person is typing at. Bounded: past `limit` records the
    oldest go, and the next `show_pending` says how many."""

    def __init__(self, limit: int = 200) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._lines: deque[str] = deque(maxlen=limit)
        self._dropped = 0
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._guard:
            if len(self._lines) == self._lines.maxlen:
                self._dropped += 1
            self._lines.append(line)

    def show_pending(self, show: Callable[[str], None]) -> None:
        with self._guard:
            lines, self._lines = list(self._lines), deque(maxlen=self._lines.maxlen)
            dropped, self._dropped = self._dropped, 0
        if dropped:
            show(f"({dropped} earlier log lines were dropped)")
        for line in lines:
            show(line)


@contextmanager
def held_back(handler: HeldBack) -> Iterator[HeldBack]:
    """While inside, the root logger writes to `handler` instead of the terminal."""
    root = logging.getLogger()
    before = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield handler
    finally:
        root.handlers[:] = before
