"""How the analyzers' own processes (ruff, bandit, large secrets scans) start, and how many.

In `chatops shell` they start in a session of their own, so a Ctrl-C at the prompt (which the
shell answers by leaving runs alone) never reaches them. Elsewhere they stay in the caller's
process group, so a Ctrl-C on `chatops analyze` stops them at once with the command.
"""

from __future__ import annotations

import os

# The most analyzer processes one scan starts, however many cores there are.
MAX_PROCESSES = 8

_detached = False


def detach_from_terminal(detached: bool = True) -> bool:
    """Set whether analyzers start detached; returns what it was, to restore."""
    global _detached
    before, _detached = _detached, detached
    return before


def own_session() -> bool:
    """`start_new_session` for `subprocess.run` of an analyzer."""
    return _detached


def spread_over() -> int:
    """How many processes a large scan uses: the cores this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_PROCESSES))
