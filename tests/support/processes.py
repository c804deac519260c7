"""The real `chatops` command in other processes: an environment of the test's own, a worker to
start and stop, and waiting on what those processes do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from bot.store.models import Run
from bot.store.runs import RunStore

T = TypeVar("T")

# Settings a developer or CI may have exported; a test sets its own.
_OURS = ("CHATOPS_", "ANTHROPIC_", "SLACK_", "JIRA_", "DATABASE_URL")


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any chatops setting, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(settings)
    return env


def start_worker(
    env: dict[str, str], extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "worker"],
        env=clean_env(**{**env, **(extra or {})}),  # extra overrides env
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ended(store: RunStore, run_id: str, what: str = "the run to end") -> Run:
    """The run once it is done or failed."""
    return wait_for(
        lambda: (r := store.get(run_id)) is not None and r.status in ("done", "failed") and r,
        what=what,
    )
