"""Errors a user can cause, carrying what to do about them."""

from __future__ import annotations


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
