"""Errors a user can cause, carrying what to do about them."""

from __future__ import annotations


def shown(text: str, limit: int = 60) -> str:
    """What an error may echo of what a user typed: a short prefix, so a 40 KB input is never
    sent back whole (Slack refuses messages over 40,000 characters). Surfaces escape it."""
    return text if len(text) <= limit else text[:limit] + "..."


class AnalysisInputError(Exception):
    """Bad input from a user: a surface shows `message` and `hint`, never a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class GitFailure(Exception):
    """git failed in a way the user did not cause (a corrupt repository, a missing binary)."""
