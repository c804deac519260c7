"""User errors as a chat surface (Slack, the shell) shows them: the repository named as the user
named it, never the server's path, and hints in the chat grammar (`against BASE`), not the
command line's (`--base`)."""

from __future__ import annotations

import re

from agents.errors import AnalysisInputError

_CLI_HINTS = (
    (re.compile(r"[Pp]ass --base( BRANCH)?"), "Add `against BASE`"),
    (re.compile(r"--base"), "`against BASE`"),
    (re.compile(r"[Pp]ass --repo PATH[^.]*"), "Name a configured repository with `in REPO`"),
)


def for_chat(exc: AnalysisInputError, repo: str, path: object = None) -> tuple[str, str]:
    """(message, hint) of `exc` for a chat user asking about `repo` (configured at `path`)."""
    message, hint = exc.message, exc.hint
    if path is not None and str(path):
        message = message.replace(str(path), repo)
        hint = hint.replace(str(path), repo)
    if message.startswith("No ") and " named " in message and f" in {repo}" not in message:
        message = message.rstrip(".") + f" in {repo}."
    for pattern, replacement in _CLI_HINTS:
        hint = pattern.sub(replacement, hint)
    return message, hint
