"""Model answers reused by what was sent, so a re-run pays only for what changed.

An answer is stored under a key made of everything that decides it: the model, the system prompt
(its version, and the team's learnings and examples, which are part of it), the answer's schema,
and the user message (or, for one unit of a call, the unit's exact text and the message around
it). The same key later means the same question, and the stored answer is used instead of a call.

`agents` defines the port; the bot gives it a store (the database, shared by every worker) and
the command line the data folder's. A store that fails is a miss, never a failed run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class AnswerStore(Protocol):
    """Where answers are kept, by key. `kind` says what an entry is (for bounds and stats)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, kind: str, value: str) -> None: ...


class NoAnswers:
    """Reuse off (`--no-cache`): every question goes to the model."""

    def get(self, key: str) -> str | None:
        return None

    def put(self, key: str, kind: str, value: str) -> None:
        return None


class MemoryAnswers:
    """Answers kept in this process (benchmarks and tests)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str]] = {}

    def get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        return entry[1] if entry is not None else None

    def put(self, key: str, kind: str, value: str) -> None:
        self.entries[key] = (kind, value)


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
