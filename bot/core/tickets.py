"""Tickets: where they are read (Jira, or nothing configured), and which branches implement one
(names containing its key, and branches its remote links name)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from agents.context.jira import JiraSettings, TicketContext, fetch_ticket
from bot.core.actor import UserError
from bot.writes.git import WriteResult
from bot.writes.jira import find_comment, post_comment


def branches_for(key: str, names: Iterable[str], linked: Iterable[str]) -> list[str]:
    """Branch names (without `origin/`) that mention `key` case-insensitively, or that a remote
    link names; each once, in order."""
    wanted = set(linked)
    found: list[str] = []
    for name in names:
        short = name.removeprefix("origin/")
        if (key.lower() in short.lower() or short in wanted) and short not in found:
            found.append(short)
    return found


class Tickets(Protocol):
    """Where tickets are read (and an approved comment posted): Jira, or nothing configured
    (which says so)."""

    configured: bool

    def fetch(self, key: str) -> TicketContext: ...

    def comment(self, key: str, text: str, ref: str) -> WriteResult:
        """Post proposal `ref`'s approved comment on `key`, once."""
        ...

    def find_comment(self, key: str, ref: str) -> str | None:
        """The comment proposal `ref` posted on `key`, if it is there."""
        ...


class JiraTickets:
    configured = True

    def __init__(self, settings: JiraSettings) -> None:
        self.settings = settings

    def fetch(self, key: str) -> TicketContext:
        return fetch_ticket(self.settings, key)

    def comment(self, key: str, text: str, ref: str) -> WriteResult:
        return post_comment(self.settings, key, text, ref)

    def find_comment(self, key: str, ref: str) -> str | None:
        return find_comment(self.settings, key, ref)


class NoTickets:
    """No ticket system configured: every ticket request says how to configure one."""

    configured = False

    def fetch(self, key: str) -> TicketContext:
        raise UserError("Jira is not configured.", "Set JIRA_URL and its credentials.")

    def comment(self, key: str, text: str, ref: str) -> WriteResult:
        return WriteResult("failed", "Jira is not configured (JIRA_URL); nothing posted")

    def find_comment(self, key: str, ref: str) -> str | None:
        raise UserError("Jira is not configured.", "Set JIRA_URL and its credentials.")


NO_TICKETS = NoTickets()


def tickets_for(settings: JiraSettings | None) -> Tickets:
    return JiraTickets(settings) if settings is not None else NoTickets()
