"""The repository's own ruff configuration: the rules it turned off, globally and per file.

Read from the merge-base, never from the branch: a branch must not be able to silence a check on
its own change. Only the ignores are taken; the selection stays the analyzers' high-signal one.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from agents.context.git import GitRepo

# ruff's own precedence between files in one folder.
CONFIG_FILES = (".ruff.toml", "ruff.toml", "pyproject.toml")
_RULE = re.compile(r"[A-Z]{1,8}[0-9]{0,4}")


@dataclass(frozen=True)
class RuffConfig:
    file: str  # where it was read, e.g. "pyproject.toml"
    commit: str
    ignore: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def arguments(self) -> list[str]:
        """ruff command-line options that apply these ignores on top of `--isolated`."""
        args: list[str] = []
        if self.ignore:
            args.append(f"--ignore={','.join(self.ignore)}")
        if self.per_file_ignores:
            table = ", ".join(
                f"{json.dumps(glob, ensure_ascii=False)} = {json.dumps(list(codes))}"
                for glob, codes in sorted(self.per_file_ignores.items())
            )
            args += ["--config", f"lint.extend-per-file-ignores = {{{table}}}"]
        return args

    def describe(self) -> str:
        parts = []
        if self.ignore:
            parts.append(f"ignore {', '.join(self.ignore)}")
        if self.per_file_ignores:
            parts.append(f"per-file ignores for {len(self.per_file_ignores)} pattern(s)")
        what = "; ".join(parts) or "no ignores"
        return (
            f"ruff honoured the repository's {self.file} at the base ({self.commit[:12]}): {what}."
        )


def _codes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(c for c in value if isinstance(c, str) and _RULE.fullmatch(c)))


def parse(text: str, file: str, commit: str) -> RuffConfig | None:
    """The ignores of one configuration file, or None when it does not configure ruff."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    if file == "pyproject.toml":
        tool = data.get("tool")
        section = tool.get("ruff") if isinstance(tool, dict) else None
        if not isinstance(section, dict):
            return None
        data = section
    lint = data.get("lint")
    tables = [data, lint] if isinstance(lint, dict) else [data]
    ignore: list[str] = []
    per_file: dict[str, list[str]] = {}
    for table in tables:
        ignore += _codes(table.get("ignore")) + _codes(table.get("extend-ignore"))
        for key in ("per-file-ignores", "extend-per-file-ignores"):
            mapping = table.get(key)
            if not isinstance(mapping, dict):
                continue
            for glob, codes in mapping.items():
                if isinstance(glob, str) and glob and "\n" not in glob:
                    per_file.setdefault(glob, []).extend(_codes(codes))
    return RuffConfig(
        file=file,
        commit=commit,
        ignore=tuple(dict.fromkeys(ignore)),
        per_file_ignores={g: tuple(dict.fromkeys(c)) for g, c in per_file.items() if c},
    )


def load(repo: GitRepo, commit: str) -> RuffConfig | None:
    """The first file at the repository's root that configures ruff, at `commit`."""
    for file in CONFIG_FILES:
        data = repo.read_file(commit, file)
        if data is None:
            continue
        config = parse(data.decode("utf-8", "replace"), file, commit)
        if config is not None:
            return config
    return None
