"""Who may approve what, and which branches may be written: pure functions over server-side
configuration. Every check fails closed: an error or a missing fact denies."""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

BUILTIN_PROTECTED = ("main", "master", "develop", "release/*", "hotfix/*")
_ASCII_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
_GROUP_ID = re.compile(r"S[A-Z0-9]+")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    @classmethod
    def allow(cls, reason: str = "allowed") -> Decision:
        return cls(True, reason)

    @classmethod
    def deny(cls, reason: str) -> Decision:
        return cls(False, reason)


def normalise(name: str) -> str:
    """Compatibility-normalised and case-folded, without a `refs/heads/` prefix, so `Main`,
    `refs/heads/main` and full-width letters compare equal to `main`."""
    folded = unicodedata.normalize("NFKC", name).casefold().strip()
    for prefix in ("refs/heads/", "heads/"):
        folded = folded.removeprefix(prefix)
    return folded


def is_protected(
    branch: str, *, default_branches: Iterable[str], configured: Iterable[str]
) -> bool:
    """Protected: the repository's default branch, the built-in list, the configured patterns.
    A name that is not plain ASCII is treated as protected: look-alikes (`maіn` with a Cyrillic
    `і`) can never be told apart reliably, so they are never written."""
    if not _ASCII_BRANCH.fullmatch(branch.removeprefix("refs/heads/")):
        return True
    name = normalise(branch)
    patterns = [*BUILTIN_PROTECTED, *configured, *(d for d in default_branches if d)]
    return any(fnmatch.fnmatchcase(name, normalise(pattern)) for pattern in patterns)


def is_writable(branch: str, patterns: Iterable[str]) -> bool:
    name = normalise(branch)
    return any(fnmatch.fnmatchcase(name, normalise(pattern)) for pattern in patterns)


def can_write(
    branch: str,
    *,
    mode: str,
    writable: Iterable[str],
    protected: Iterable[str],
    default_branches: Iterable[str],
) -> Decision:
    if mode != "feature_branches":
        return Decision.deny(
            f"this repository is {mode}: proposals are shown, never applied (policy file: mode)"
        )
    if is_protected(branch, default_branches=default_branches, configured=protected):
        return Decision.deny(f"{branch!r} is a protected branch; the bot never writes to it")
    writable = list(writable)
    if not is_writable(branch, writable):
        return Decision.deny(
            f"{branch!r} matches no writable pattern ({', '.join(writable) or 'none configured'})"
        )
    return Decision.allow()


class GroupMembers(Protocol):
    """Members of a user group (Slack: usergroups.users.list). Raises LookupError on failure."""

    def members(self, group_id: str) -> set[str]: ...


class NoGroups:
    """No chat workspace: no user groups, so only approvers named one by one can approve."""

    def members(self, group_id: str) -> set[str]:
        return set()


class Workspace(Protocol):
    """The workspace the bot is installed in, as far as who belongs to it goes."""

    checked: bool  # False: there is none (no Slack): every actor counts as a member

    def team(self) -> str | None:
        """Its team id; None when it could not be read (which denies)."""
        ...


class NoWorkspace:
    checked = False

    def team(self) -> str | None:
        return None


NO_GROUPS = NoGroups()
NO_WORKSPACE = NoWorkspace()


def can_approve(
    *,
    user: str,
    requester: str,
    approvers: Iterable[str],
    four_eyes: bool,
    groups: GroupMembers | None,
    user_team: str | None,
    workspace_team: str | None,
) -> Decision:
    approvers = list(approvers)
    if not approvers:
        return Decision.deny(
            "nobody may approve: add Slack user or group ids to [approvals] approvers in the "
            "policy file"
        )
    if workspace_team is not None and user_team != workspace_team:
        return Decision.deny("approvals must come from this workspace's own members")
    if four_eyes and user == requester:
        return Decision.deny("four-eyes is on: the requester cannot approve their own run")
    if user in approvers:
        return Decision.allow(f"{user} is an approver")
    for group in (a for a in approvers if _GROUP_ID.fullmatch(a)):
        if groups is None:
            continue
        try:
            if user in groups.members(group):
                return Decision.allow(f"{user} is in approver group {group}")
        except LookupError as exc:
            return Decision.deny(f"could not check approver group {group} ({exc}); denied")
    return Decision.deny(f"{user} is not an approver")


def not_expired(created_at: datetime, ttl_seconds: int, now: datetime) -> Decision:
    if now - created_at > timedelta(seconds=ttl_seconds):
        return Decision.deny(f"the proposal expired (lifetime {ttl_seconds // 60} minutes)")
    return Decision.allow()
