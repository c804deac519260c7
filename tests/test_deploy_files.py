"""The example process files name commands and options that exist, stop with SIGTERM, and give
workers longer to stop than their grace period."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def chatops_args(command: str) -> list[str]:
    command = command.replace("${PORT:-3000}", "3000").replace("${METRICS_PORT:-9100}", "9100")
    command = command.replace("%i", "9101")
    words = shlex.split(command)
    at = next(i for i, w in enumerate(words) if w.endswith("chatops"))
    return words[at + 1 :]


def commands() -> list[tuple[str, list[str]]]:
    found = []
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            name, command = line.split(":", 1)
            found.append((f"Procfile {name}", chatops_args(command)))
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        [exec_start] = re.findall(r"^ExecStart=(.+)$", unit.read_text(), re.M)
        found.append((unit.name, chatops_args(exec_start)))
    container = (DEPLOY / "Containerfile").read_text()
    cmd = re.search(r"^CMD \[(.+)\]$", container, re.M)
    assert cmd is not None
    found.append(("Containerfile CMD", [w.strip(' "') for w in cmd.group(1).split(",")]))
    return found


@pytest.mark.parametrize(("where", "args"), commands(), ids=lambda v: str(v))
def test_every_process_file_names_a_real_command_and_options(where: str, args: list[str]) -> None:
    done = CliRunner().invoke(app, [*args, "--help"])
    assert done.exit_code == 0, f"{where}: chatops {' '.join(args)}: {done.output}"
    assert "Usage: chatops" in done.output


def test_units_stop_gracefully_within_their_timeout() -> None:
    grace = Settings().chatops_shutdown_grace_s
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text()
        assert "KillSignal=SIGTERM" in text and "KillMode=mixed" in text, unit.name
        [timeout] = re.findall(r"^TimeoutStopSec=(\d+)$", text, re.M)
        if "worker" in text:
            assert int(timeout) > grace, unit.name
    schedulers = [
        u.name
        for u in (DEPLOY / "systemd").glob("*.service")
        if "CHATOPS_SCHEDULER=true" in u.read_text()
    ]
    assert schedulers == ["chatops-scheduler.service"]


def test_the_container_file_copies_what_exists() -> None:
    root = DEPLOY.parent
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
