"""User errors as a chat surface (Slack, the shell) shows them: the repository named as the user
named it, never the server's path, and hints in the chat grammar (`against BASE`), not the
command line's (`--base`).

The analysis speaks the command line's language, its first surface; a chat surface says the same
in its own words rather than accepting the command line's options too: chat names a repository
(`in REPO`), never a path, so `--repo PATH` could not be accepted there anyway, and one spelling
per surface keeps each surface's help short."""

from __future__ import annotations

import re
from collections.abc import Callable

from agents.errors import AnalysisInputError


def _same_case(replacement: str) -> Callable[[re.Match[str]], str]:
    """A replacement that starts with a capital where what it replaces did (a sentence start)."""

    def replace(found: re.Match[str]) -> str:
        text = found.expand(replacement)
        return text[:1].upper() + text[1:] if found.group(0)[:1].isupper() else text

    return replace


_CLI_HINTS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"[Pp]ass `--base ([^`]+)`"), _same_case(r"add `against \1`")),
    (re.compile(r"[Pp]ass --base(?: BRANCH| BASE)?\b"), _same_case("add `against BASE`")),
    (re.compile(r"`--base ([^`]+)`"), _same_case(r"`against \1`")),
    (re.compile(r"--base(?: BRANCH| BASE)?\b"), _same_case("`against BASE`")),
    (
        re.compile(r"[Pp]ass `?--repo PATH`?[^.]*"),
        _same_case("name a configured repository with `in REPO`"),
    ),
)


def chat_hint(hint: str) -> str:
    """A hint written for the command line, in the chat grammar."""
    for pattern, replacement in _CLI_HINTS:
        hint = pattern.sub(replacement, hint)
    return hint


def for_chat(exc: AnalysisInputError, repo: str, path: object = None) -> tuple[str, str]:
    """(message, hint) of `exc` for a chat user asking about `repo` (configured at `path`)."""
    message, hint = exc.message, exc.hint
    if path is not None and str(path):
        message = message.replace(str(path), repo)
        hint = hint.replace(str(path), repo)
    if message.startswith("No ") and " named " in message and f" in {repo}" not in message:
        message = message.rstrip(".") + f" in {repo}."
    return message, chat_hint(hint)
