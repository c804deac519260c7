"""The configuration reference (docs/configuration.md), written from the models themselves.

The policy file's models (`bot.config`) and the environment's (`bot.settings`) carry a
description for every setting; this renders them, with each one's type, default and bounds, so
the reference cannot drift from what the code accepts. `tests/test_docs.py` keeps the file equal
to `render()`; after changing a setting, write it again with `python -m bot.reference`.
"""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from bot.config import (
    ApprovalsConfig,
    DigestConfig,
    FeedbackConfig,
    FlagsConfig,
    FollowConfig,
    RepoConfig,
)
from bot.settings import Settings

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# The policy file's tables, in the order a reader meets them.
TABLES: list[tuple[str, type[BaseModel]]] = [
    ("[repos.NAME]", RepoConfig),
    ("[approvals]", ApprovalsConfig),
    ("[digest]", DigestConfig),
    ("[feedback]", FeedbackConfig),
    ("[follow]", FollowConfig),
    ("[flags]", FlagsConfig),
]
# Defaults that depend on the machine are described, not shown.
DESCRIBED_DEFAULTS = {"chatops_data_dir": "the user data directory"}


def type_name(annotation: Any) -> str:
    """A setting's type as a reader writes it."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [type_name(a) for a in get_args(annotation) if a is not type(None)]
        return " \\| ".join(parts)
    if origin is list:
        (item,) = get_args(annotation)
        return f"list of {type_name(item)}"
    if origin is dict:
        return "tables"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{member.value}`" for member in annotation)
    names = {str: "text", int: "integer", float: "number", bool: "true \\| false", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(info: FieldInfo) -> str:
    said = []
    for rule in info.metadata:
        for kind, sign, bound in (
            ("ge", "≥", Ge),
            ("gt", ">", Gt),
            ("le", "≤", Le),
            ("lt", "<", Lt),
        ):
            if isinstance(rule, bound):
                said.append(f"{sign} {getattr(rule, kind)}")
    return f" ({', '.join(said)})" if said else ""


def _default(name: str, info: FieldInfo) -> str:
    if name in DESCRIBED_DEFAULTS:
        return DESCRIBED_DEFAULTS[name]
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return ", ".join(f"`{item}`" for item in value) if value else "none"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    return f"`{value}`"


def _row(key: str, name: str, info: FieldInfo) -> str:
    if not info.description:
        raise ValueError(f"{key} has no description: give its Field one")
    meaning = info.description.replace("|", "\\|")
    kind = type_name(info.annotation) + _bounds(info)
    return f"| `{key}` | {kind} | {_default(name, info)} | {meaning} |"


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Written from the models by `python -m bot.reference` (`bot/config.py`,",
        "`bot/settings.py`); a test keeps this file equal to them. Two places: the **policy",
        "file**, what the bot may do (server-side, never from a repository), and the",
        "**environment**, secrets and endpoints.",
        "",
        "## The policy file",
        "",
        "`CHATOPS_CONFIG`, default `chatops.toml` in the working directory; `chatops init` writes",
        "a commented one for the current repository (`chatops.example.toml` is the same file).",
        "With no file, the current directory is the only repository and nobody can approve",
        "writes. An invalid file stops the command at start with `file: key: reason` (exit 2);",
        "an unknown key is an error, not ignored.",
        "",
    ]
    for table, model in TABLES:
        out += [f"### `{table}`", ""]
        if model.__doc__:
            out += [" ".join(model.__doc__.split()), ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        out += [_row(name, name, info) for name, info in model.model_fields.items()]
        out.append("")
    out += [
        "## The environment",
        "",
        "From the process environment or a `.env` file in the working directory (names are",
        "not case-sensitive). An invalid value stops the command with exit 2, naming the",
        "variable. Secrets are only ever read from here.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    out += [
        _row(name.upper(), name, info)
        for name, info in Settings.model_fields.items()
        if not info.exclude
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    text = render()
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if REFERENCE.read_text(encoding="utf-8") == text else 1)
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE}")
