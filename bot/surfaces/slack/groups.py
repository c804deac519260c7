"""Slack facts the approval policy needs: user-group members and this workspace's team id.
Cached briefly; a failed lookup raises LookupError, which the policy turns into a denial."""

from __future__ import annotations

import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

GROUP_CACHE_S = 60.0


class SlackGroups:
    def __init__(self, client: WebClient, ttl_s: float = GROUP_CACHE_S) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def members(self, group_id: str) -> set[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group_id)
            if cached and now - cached[0] < self.ttl_s:
                return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            raise LookupError(f"usergroups.users.list: {exc.response.get('error')}") from None
        except OSError as exc:
            raise LookupError(f"usergroups.users.list: {exc}") from None
        users = set(response.get("users") or [])
        with self._lock:
            self._cache[group_id] = (now, users)
        return users


class WorkspaceTeam:
    """The team id of the workspace the bot is installed in (auth.test), asked once."""

    checked = True

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._team: str | None = None

    def team(self) -> str | None:
        if self._team is None:
            try:
                self._team = str(self.client.auth_test()["team_id"])
            except (SlackApiError, OSError, KeyError):
                return None
        return self._team
