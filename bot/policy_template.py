"""The commented policy file `chatops init` writes for a repository, and `chatops.example.toml`,
the same file for a generic one (`python -m bot.policy_template` writes it again; a test keeps
the two equal).

What it takes from the repository: its folder's name (the name people type), where it is, its
default branch (the base), and the branches it has: long-lived ones (no `/`) are protected, and
prefixes the default writable patterns do not cover are named in a comment. Everything else is
the product's defaults, each said in a comment for someone who has never seen the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agents.context.git import GitRepo
from agents.errors import AnalysisInputError
from bot.config import DEFAULT_WRITABLE
from bot.core.policy import BUILTIN_PROTECTED, is_protected, is_writable

EXAMPLE_FILE = "chatops.example.toml"
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9._-]+")
SHOWN_BRANCHES = 12  # branches named in the file's head; the rest are counted


@dataclass(frozen=True)
class Seen:
    """What `chatops init` saw of a repository."""

    name: str  # the name people type (`in NAME`): letters, digits, . _ -
    path: str  # as the file says it: "." for the file's own folder, else absolute
    default_branch: str | None  # None: no origin/HEAD, main or master
    branches: list[str] = field(default_factory=list)  # local and remote, without `origin/`


# The file for a generic repository: `chatops.example.toml`.
EXAMPLE = Seen("shop", ".", "main", ["feature/login", "fix/typo", "main", "staging"])


def repo_name(folder: str) -> str:
    """A folder's name as a repository name the policy accepts (letters, digits, . _ -)."""
    name = _NOT_A_NAME.sub("-", folder).strip("-._")[:64].strip("-._")
    return name or "repo"


def seen_in(repo: Path, policy_file: Path) -> Seen:
    """What the repository at (or above) `repo` is, for a policy file at `policy_file`. Raises
    AnalysisInputError when `repo` is not in a git repository."""
    git = GitRepo.open(repo)
    root = git.root.resolve()
    here = policy_file.resolve().parent
    try:
        default: str | None = git.default_branch().removeprefix("origin/")
    except AnalysisInputError:
        default = None
    names = {b.removeprefix("origin/") for b in git.branch_names()}
    return Seen(
        name=repo_name(root.name),
        path="." if root == here else str(root),
        default_branch=default,
        branches=sorted(n for n in names if n and n != "HEAD"),
    )


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _strings(items: list[str]) -> str:
    return "[" + ", ".join(_string(item) for item in items) + "]"


def _long_lived(seen: Seen) -> list[str]:
    """Branches without a `/` that are not protected already: long-lived ones, by convention
    (staging, production, gh-pages), which no one wants a bot to write to."""
    defaults = [seen.default_branch] if seen.default_branch else []
    return [
        branch
        for branch in seen.branches
        if "/" not in branch and not is_protected(branch, default_branches=defaults, configured=())
    ]


def _other_prefixes(seen: Seen) -> list[str]:
    """`team/*`-style patterns of branches seen that the default writable patterns do not
    cover and that are not protected: a team may want them writable too."""
    prefixes = {branch.split("/", 1)[0] + "/*" for branch in seen.branches if "/" in branch}
    defaults = [seen.default_branch] if seen.default_branch else []
    return sorted(
        prefix
        for prefix in prefixes
        if not is_writable(prefix.replace("*", "x"), DEFAULT_WRITABLE)
        and not is_protected(prefix.replace("*", "x"), default_branches=defaults, configured=())
    )


def policy_text(seen: Seen) -> str:
    """The commented policy file for `seen`. It loads as it is: every value is valid."""
    shown = ", ".join(seen.branches[:SHOWN_BRANCHES]) or "none"
    if len(seen.branches) > SHOWN_BRANCHES:
        shown += f" and {len(seen.branches) - SHOWN_BRANCHES} more"
    default = seen.default_branch
    named = f" ({default})" if default and default not in BUILTIN_PROTECTED else ""
    always = f"the default branch{named}, and " + ", ".join(BUILTIN_PROTECTED)
    if default:
        base = [
            "# The branch the others are compared with: the default branch seen here.",
            f"base = {_string(default)}",
        ]
    else:
        base = [
            "# The branch the others are compared with. None was seen here (no origin/HEAD,",
            "# main or master): name it, or every request must say `against BASE`.",
            '# base = "main"',
        ]
    others = _other_prefixes(seen)
    also = (
        [
            f"# Also seen here, and written to only if added above: {', '.join(others)}.",
        ]
        if others
        else []
    )
    lines = [
        "# The chatops policy file: which repositories the bot works on, where it may write, and",
        "# who may approve its writes. Only the people who run the bot can change it: nothing in a",
        "# repository, a ticket or a model's answer can.",
        "#",
        f"# Written by `chatops init` for the repository {seen.name}; edit it to suit your team.",
        "# The bot reads ./chatops.toml where it starts, or the file CHATOPS_CONFIG names. A",
        "# mistake stops it at start with the file, the key and the reason. Every value below is",
        "# valid as it is; commented lines (#) show more settings with their defaults.",
        "#",
        f"# Branches seen here when this file was written: {shown}.",
        "",
        "# One table per repository, by the name people type: `analyze branch NAME in "
        f"{seen.name}`.",
        # A dot would make a nested table in TOML: such a name is quoted.
        f"[repos.{seen.name}]" if "." not in seen.name else f'[repos."{seen.name}"]',
        "# Where it is: a clone on this machine, relative to this file or absolute. For a remote",
        '# one instead: url = "git@host:org/repo.git", which the bot clones into its data folder',
        "# and fetches before each run.",
        f"path = {_string(seen.path)}",
        *base,
        '# "feature_branches": an approved proposal is committed to the branch it was made for,',
        '# if that branch is writable. "read_only": proposals are shown, never applied.',
        'mode = "feature_branches"',
        "# Branches an approved proposal may be committed to (patterns: * matches anything).",
        f"writable = {_strings(DEFAULT_WRITABLE)}",
        *also,
        "# Branches never written to, even when a writable pattern matches: the long-lived",
        "# branches seen here. Protected always, whatever this says:",
        f"# {always}.",
        f"protected = {_strings(_long_lived(seen))}",
        "",
        "[approvals]",
        "# Who may approve a proposed write: Slack member ids (U...; in Slack, a person's",
        "# profile, then ⋮, then Copy member ID) and user-group ids (S...). In `chatops shell`,",
        "# the names you act as (`--as NAME`). Empty: nobody can approve, and proposals wait.",
        "# Put yours in place of the placeholder below and remove the #:",
        '# approvers = ["U0123456789", "S0123456789"]',
        "approvers = []",
        "# true: the person who asked for a run may not approve its writes; someone else must.",
        "four_eyes = true",
        "# How long a proposal waits for a decision (30m, 4h, 2d) before it expires.",
        'ttl = "4h"',
        "",
        "[digest]",
        "# A summary of the agents' work, posted in a Slack channel on a schedule.",
        "# The channel's id (C...; in Slack, the channel's details, at the bottom). No channel,",
        "# no scheduled digest; `chatops digest --dry-run` shows one here.",
        '# channel = "C0123456789"',
        "# When: minute hour day-of-month month weekday, in the time zone below. Names work:",
        '# "0 9 * * mon-fri" is weekdays at 09:00, "30 8 1 * *" the 1st of each month at 08:30.',
        'cron = "0 9 * * mon-fri"',
        '# A time zone name, e.g. "Europe/Berlin" or "America/New_York".',
        'timezone = "UTC"',
        "",
        "# How 👍 and 👎 on findings become learnings (the defaults):",
        "# [feedback]",
        "# suppress_after = 2       # a finding's 👎 outnumber its 👍 by this many: not reported",
        "# rule_after = 3           # findings of one kind rejected under one folder: a rule",
        "# examples_per_agent = 5   # voted examples given to each agent's model",
        "# notes_per_agent = 20     # learned notes given to each agent's model",
        "",
        "# Branches analyzed again whenever their head moves, the changes posted in a channel:",
        "# [follow]",
        '# branches = ["release/*"]',
        '# channel = "C0123456789"',
        "# every = 300              # seconds between checks",
        "",
    ]
    return "\n".join(lines)


def example_text() -> str:
    return policy_text(EXAMPLE)


def write_new(path: Path, text: str, check: Callable[[Path], object] | None = None) -> None:
    """Write `text` to `path`, which must not exist: whole or not at all (a temp file in the
    same folder, then linked into place, which fails if `path` appeared meanwhile). `check` is
    called with the temp file before it takes `path`'s place; what it raises leaves nothing
    behind. Raises FileExistsError, and writes nothing, if `path` exists."""
    if path.exists() or path.is_symlink():
        raise FileExistsError(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        temp.chmod(0o644)
        if check is not None:
            check(temp)
        try:
            os.link(temp, path)  # never replaces: an existing path is an error
        except FileExistsError:
            raise
        except OSError:  # no hard links here: a rename, after one more look
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


if __name__ == "__main__":
    Path(__file__).resolve().parent.parent.joinpath(EXAMPLE_FILE).write_text(
        example_text(), encoding="utf-8"
    )
