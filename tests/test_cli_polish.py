"""The command line's manners: `--version`, `-h` wherever `--help` works, and help that shows
examples as written (plain click help: no markup to eat them, no rewrapping)."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import typer.main
from typer.testing import CliRunner

from bot.cli import BRANCH_EXAMPLES, EXAMPLES, app


def _paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under `command`, as the words that reach it (typer's click
    groups have `commands`)."""
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _paths(sub, (*path, name))
    return found


ALL = _paths(typer.main.get_command(app))


def test_version_prints_the_installed_version_and_exits_0() -> None:
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0
    assert done.stdout == f"chatops {version('chatops')}\n"
    # Eager: it answers before a command's own checks.
    assert CliRunner().invoke(app, ["--version", "analyze"]).stdout.startswith("chatops ")


def test_every_command_is_reached() -> None:
    assert {("init",), ("analyze", "branch"), ("db", "upgrade"), ("feedback", "stats")} <= set(ALL)


@pytest.mark.parametrize("path", ALL, ids=lambda path: " ".join(path) or "chatops")
def test_dash_h_is_help_on_every_command(path: tuple[str, ...]) -> None:
    short = CliRunner().invoke(app, [*path, "-h"], terminal_width=100)
    long = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert short.exit_code == 0, short.output
    assert short.stdout.startswith("Usage: ")
    assert short.stdout == long.stdout
    assert "-h, --help" in short.stdout


def _examples(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("chatops ")]


@pytest.mark.parametrize(
    ("path", "examples"),
    [((), EXAMPLES), (("analyze", "branch"), BRANCH_EXAMPLES)],
    ids=["chatops", "analyze branch"],
)
@pytest.mark.parametrize("width", [40, 80, 200])
def test_help_shows_its_examples_line_by_line_as_written(
    path: tuple[str, ...], examples: str, width: int
) -> None:
    expected = _examples(examples)
    assert 2 <= len(expected) <= 4
    done = CliRunner().invoke(app, [*path, "--help"], terminal_width=width)
    assert done.exit_code == 0
    shown = [line.strip() for line in done.stdout.splitlines()]
    assert "Examples:" in shown
    after = shown[shown.index("Examples:") + 1 :]
    assert after[: len(expected)] == expected  # one a line, whole, however narrow the terminal
    assert "\b" not in done.stdout


def test_the_examples_are_commands_that_exist() -> None:
    for line in _examples(EXAMPLES) + _examples(BRANCH_EXAMPLES):
        words = line.split()[1:]
        path = tuple(w for w in words[:2] if not w.startswith("-"))
        assert any(path[: len(known)] == known for known in ALL if known), line
