"""Which branches implement a ticket: names containing its key, and branches its remote links
name."""

from __future__ import annotations

from collections.abc import Iterable


def branches_for(key: str, names: Iterable[str], linked: Iterable[str]) -> list[str]:
    """Branch names (without `origin/`) that mention `key` case-insensitively, or that a remote
    link names; each once, in order."""
    wanted = set(linked)
    found: list[str] = []
    for name in names:
        short = name.removeprefix("origin/")
        if (key.lower() in short.lower() or short in wanted) and short not in found:
            found.append(short)
    return found
