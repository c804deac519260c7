"""The README's first-run contract: exactly two Quickstart commands, the second run by CI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_quickstart_has_exactly_two_commands() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2, commands
    install_and_run, test = commands
    assert "chatops" in install_and_run
    assert "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert quickstart_commands()[1] in ci


def test_agents_never_import_bot() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "agents").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+bot\b", path.read_text(encoding="utf-8"), re.M)
    ]
    assert offenders == []


def test_only_the_git_context_runs_git_in_agents() -> None:
    runs_git = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "agents").rglob("*.py")
        if re.search(r"\[\s*\"git\"", path.read_text(encoding="utf-8"))
    ]
    assert runs_git == ["agents/context/git.py"]
