"""Which adapter serves a repository: one row per host, as PR-Agent's provider registry does
(`_GIT_PROVIDERS`), imported only when a repository names that host. A new host is one file
(`bot/codehost/gitlab.py` with a `from_settings(settings)`) and one row here, plus its key in
`[repos.NAME]`.

`CodeHosts` is what the service, the worker and the command line are given: it holds the
settings and hands out an adapter; nothing else in the bot sees a host's credentials.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from bot.codehost.port import CodeHost, CodeHostError
from bot.config import PolicyConfig, RepoConfig
from bot.settings import Settings

# host name (the `[repos.NAME]` key) -> the module whose `from_settings(settings)` builds it
HOSTS: dict[str, str] = {
    "github": "bot.codehost.github",
}


def host_of(config: RepoConfig) -> tuple[str, str] | None:
    """The repository's host and project (`github`, `org/repo`), or None."""
    for host in HOSTS:
        project = getattr(config, host, None)
        if isinstance(project, str) and project:
            return host, project
    return None


def has_host(policy: PolicyConfig, name: str) -> bool:
    """Has the configured repository `name` a code host (so a change can go as a PR)?"""
    config = policy.repos.get(name)
    return config is not None and host_of(config) is not None


class CodeHosts:
    """The adapters, built when first asked for and kept (one client per host)."""

    def __init__(self, settings: Settings | None) -> None:
        self._settings = settings
        self._built: dict[str, CodeHost] = {}

    def for_repo(self, name: str, config: RepoConfig) -> tuple[CodeHost, str]:
        """The adapter and project of the configured repository `name`."""
        found = host_of(config)
        if found is None:
            raise CodeHostError(
                f"{name} has no code host configured, so it has no pull requests here.",
                f'Add github = "org/repo" to [repos.{name}] in the policy file.',
                problem="config",
            )
        host, project = found
        return self.host(host), project

    def host(self, host: str) -> CodeHost:
        if host not in self._built:
            if self._settings is None:
                raise CodeHostError(
                    f"No {host} credentials are available here.",
                    "Set them in the bot's environment; see docs/github.md.",
                    problem="config",
                )
            module = importlib.import_module(HOSTS[host])
            factory = cast(Callable[[Settings], CodeHost], module.from_settings)
            self._built[host] = factory(self._settings)
        return self._built[host]
