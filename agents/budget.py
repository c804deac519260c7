"""Token budget: what goes into which model call, and what is left out and why.

Offline, tokens are estimated as one per three characters: Claude's tokenizer averages about 3.5
characters a token on source code, so the estimate runs some 15% high, a margin that keeps packed
requests under budget. Online, each packed request is counted exactly with `count_tokens` before it
is sent (see `agents.llm.LLMSession.count_tokens`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CHARS_PER_TOKEN = 3.0


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Unit:
    """The smallest piece of context sent to a model: one file's hunks (or one hunk of it)."""

    file: str
    priority: int  # lower goes first
    text: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)


@dataclass
class Packing:
    chunks: list[list[Unit]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def files(self) -> set[str]:
        return {unit.file for chunk in self.chunks for unit in chunk}


def pack(units: list[Unit], budget_tokens: int, max_chunks: int | None = None) -> Packing:
    """Greedy first-fit by priority: the most important context goes first into the fewest
    calls. A unit larger than a whole call's budget, or past `max_chunks`, is left out and said."""
    packing = Packing()
    sizes: list[int] = []
    for unit in sorted(units, key=lambda u: (u.priority, u.file)):
        if unit.tokens > budget_tokens:
            packing.skipped.append((unit.file, f"too large for one call (~{unit.tokens} tokens)"))
            continue
        for index, used in enumerate(sizes):
            if used + unit.tokens <= budget_tokens:
                packing.chunks[index].append(unit)
                sizes[index] += unit.tokens
                break
        else:
            if max_chunks is not None and len(packing.chunks) >= max_chunks:
                packing.skipped.append((unit.file, "over the run's call limit"))
                continue
            packing.chunks.append([unit])
            sizes.append(unit.tokens)
    return packing


def halves(chunk: list[Unit]) -> list[list[Unit]]:
    """A chunk split in two, for a retry with smaller requests; a single unit cannot split."""
    if len(chunk) < 2:
        return []
    middle = len(chunk) // 2
    return [chunk[:middle], chunk[middle:]]
