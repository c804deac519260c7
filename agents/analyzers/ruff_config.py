"""The repository's own lint configuration: the rules it turned off, globally and per file.

ruff's configuration (`.ruff.toml`, `ruff.toml`, `pyproject.toml` `[tool.ruff]`) first; else
flake8's (`.flake8`, `setup.cfg`, `tox.ini` `[flake8]`, `pyproject.toml` `[tool.flake8]`), whose
codes are mostly ruff's own (pyflakes, pycodestyle, bugbear). Only codes this ruff knows are
kept, so a flake8-only code (`W503`) never breaks the lint.

Read from the merge-base, never from the branch: a branch must not be able to silence a check on
its own change. Only the ignores are taken; the selection stays the analyzers' high-signal one.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ruff.__main__ import find_ruff_bin

from agents.context.git import GitRepo

# ruff's own precedence between files in one folder.
CONFIG_FILES = (".ruff.toml", "ruff.toml", "pyproject.toml")
FLAKE8_FILES = (".flake8", "setup.cfg", "tox.ini", "pyproject.toml")
_RULE = re.compile(r"[A-Z]{1,8}[0-9]{0,4}")


@dataclass(frozen=True)
class RuffConfig:
    file: str  # where it was read, e.g. "pyproject.toml"
    commit: str
    ignore: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tool: str = "ruff"  # or "flake8": whose configuration it was

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
        whose = "" if self.tool == "ruff" else "flake8 configuration in "
        return (
            f"ruff honoured the repository's {whose}{self.file} at the base "
            f"({self.commit[:12]}): {what}."
        )


@cache
def known_codes() -> frozenset[str]:
    """Every rule code this ruff knows (asked once per process)."""
    done = subprocess.run(
        [find_ruff_bin(), "rule", "--all", "--output-format", "json"],
        capture_output=True,
        check=False,
    )
    try:
        return frozenset(str(rule["code"]) for rule in json.loads(done.stdout or b"[]"))
    except (ValueError, KeyError, TypeError):
        return frozenset()


def _codes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    if not isinstance(value, list):
        return ()
    known = known_codes()
    return tuple(
        dict.fromkeys(
            c
            for c in value
            if isinstance(c, str)
            and _RULE.fullmatch(c)
            # A code, or a prefix of codes (`E7`), that this ruff has; flake8-only ones drop.
            and (not known or any(k.startswith(c) for k in known))
        )
    )


def _config(
    file: str, commit: str, tool: str, ignore: list[str], per_file: dict[str, list[str]]
) -> RuffConfig:
    return RuffConfig(
        file=file,
        commit=commit,
        tool=tool,
        ignore=tuple(dict.fromkeys(ignore)),
        per_file_ignores={g: tuple(dict.fromkeys(c)) for g, c in per_file.items() if c},
    )


def parse(text: str, file: str, commit: str) -> RuffConfig | None:
    """The ignores of one ruff configuration file, or None when it does not configure ruff."""
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
    return _config(file, commit, "ruff", ignore, per_file)


def _flake8_per_file(entries: Iterable[str]) -> dict[str, list[str]]:
    """flake8's `glob:CODE,CODE` entries (one per line or comma-separated)."""
    out: dict[str, list[str]] = {}
    glob = ""
    for token in re.split(r"[\s,]+", " ".join(entries)):
        if ":" in token:
            glob, _, first = token.partition(":")
            token = first
        if glob and token and "\n" not in glob:
            out.setdefault(glob, []).extend(_codes([token]))
    return out


def parse_flake8(text: str, file: str, commit: str) -> RuffConfig | None:
    """The ignores of a flake8 configuration, or None when the file has none."""
    section: dict[str, Any] | None = None
    if file == "pyproject.toml":
        try:
            tool = tomllib.loads(text).get("tool")
        except tomllib.TOMLDecodeError:
            return None
        found = tool.get("flake8") if isinstance(tool, dict) else None
        section = found if isinstance(found, dict) else None
    else:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error:
            return None
        if parser.has_section("flake8"):
            section = dict(parser.items("flake8"))
    if section is None:
        return None
    ignore = [*_codes(section.get("ignore", [])), *_codes(section.get("extend-ignore", []))]
    raw = section.get("per-file-ignores", [])
    per_file = _flake8_per_file(raw if isinstance(raw, list) else [str(raw)])
    return _config(file, commit, "flake8", ignore, per_file)


def load(repo: GitRepo, commit: str) -> RuffConfig | None:
    """The repository's ruff configuration at `commit`, else its flake8 one."""
    wanted = dict.fromkeys((*CONFIG_FILES, *FLAKE8_FILES))
    blobs = repo.read_objects(f"{commit}:{name}" for name in wanted)
    texts = {
        name: data.decode("utf-8", "replace")
        for name in wanted
        if (data := blobs.get(f"{commit}:{name}")) is not None
    }
    for file in CONFIG_FILES:
        if file in texts and (config := parse(texts[file], file, commit)) is not None:
            return config
    for file in FLAKE8_FILES:
        if file in texts and (config := parse_flake8(texts[file], file, commit)) is not None:
            return config
    return None
