"""Model answers reused by what was sent, so a re-run pays only for what changed.

An answer is stored under a key made of everything that decides it: the model, the system prompt
(its version, and the team's learnings and examples, which are part of it), the answer's schema,
and the user message (or, for one unit of a call, the unit's exact text and the message around
it). The same key later means the same question, and the stored answer is used instead of a call.

`agents` defines the port; the bot gives it a store (the database, shared by every worker) and
the command line the data folder's. A store that fails is a miss, never a failed run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class AnswerStore(Protocol):
    """Where answers are kept, by key. `kind` says what an entry is (for bounds and stats).
    The analyzers read and keep one answer per file, so a store answers many keys at once
    (one round trip for a 500-file branch, not 500)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, kind: str, value: str) -> None: ...

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The kept answers among `keys` (a key not kept is left out)."""
        ...

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Keep each (key, kind, value); a key already kept keeps its first answer."""
        ...


class NoAnswers:
    """Reuse off (`--no-cache`): every question goes to the model."""

    def get(self, key: str) -> str | None:
        return None

    def put(self, key: str, kind: str, value: str) -> None:
        return None

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        return {}

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> None:
        return None


class MemoryAnswers:
    """Answers kept in this process, the least recently used dropped past `limit` entries
    (the analyzers' default when no store is given; benchmarks and tests)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.entries: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            self.entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, kind: str, value: str) -> None:
        with self._lock:
            self.entries[key] = (kind, value)
            self.entries.move_to_end(key)
            while self.limit is not None and len(self.entries) > self.limit:
                self.entries.popitem(last=False)

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found = {key: self.get(key) for key in keys}
        return {key: value for key, value in found.items() if value is not None}

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> None:
        for key, kind, value in items:
            self.put(key, kind, value)


# The analyzers' answers in this process when no store is given (a file's answer is a few kB).
PROCESS_ANSWERS = MemoryAnswers(limit=20_000)


@functools.cache
def code_version() -> str:
    """This package's sources, prompts and prices, and the analyzers' versions, as one hash:
    a changed analyzer, prompt or tool is a different question, even without a new version
    number, so nothing kept under the old one is used again."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".toml"):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    for tool in ("ruff", "bandit", "detect-secrets"):
        digest.update(f"{tool}={metadata.version(tool)}".encode())
    return digest.hexdigest()


def key_of(*parts: str) -> str:
    """One key from the parts that decide an answer (unambiguous: a JSON list is hashed)."""
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


def recall(store: AnswerStore, key: str) -> str | None:
    try:
        return store.get(key)
    except Exception:  # a store that fails is a miss: the question goes to the model
        log.warning("could not read a reused answer; asking the model", exc_info=True)
        return None


def remember(store: AnswerStore, key: str, kind: str, value: str) -> None:
    try:
        store.put(key, kind, value)
    except Exception:  # the next run asks again; this one has its answer
        log.warning("could not keep a model answer for reuse", exc_info=True)


def recall_many(store: AnswerStore, keys: Sequence[str]) -> dict[str, str]:
    """`recall` for many keys at once: what is kept among them, nothing when the store fails."""
    try:
        return store.get_many(keys)
    except Exception:  # a store that fails is a miss: everything is analyzed again
        log.warning("could not read reused answers; analyzing again", exc_info=True)
        return {}


def remember_many(store: AnswerStore, items: Sequence[tuple[str, str, str]]) -> None:
    """`remember` for many (key, kind, value) at once."""
    try:
        store.put_many(items)
    except Exception:  # the next run analyzes again; this one has its answers
        log.warning("could not keep answers for reuse", exc_info=True)
