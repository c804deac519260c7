"""The policy file (`CHATOPS_CONFIG`, default `chatops.toml` in the working directory).

Server-side configuration only: nothing in a repository, a ticket or a model's output can change
it. Invalid configuration fails at start with the file, the key and the reason.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.errors import shown

DEFAULT_WRITABLE = ["feature/*", "fix/*", "bugfix/*", "chore/*"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION = re.compile(r"(\d+)\s*([smhd])")


class ConfigError(Exception):
    """Invalid policy file: `file: key: reason`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoConfig(_Strict):
    path: Path | None = None
    url: str | None = None
    base: str | None = None
    mode: Literal["feature_branches", "read_only"] = "feature_branches"
    writable: list[str] = Field(default_factory=lambda: list(DEFAULT_WRITABLE))
    protected: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> RepoConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (a local clone) or url (a remote)")
        return self


class ApprovalsConfig(_Strict):
    approvers: list[str] = Field(default_factory=list)
    four_eyes: bool = True
    ttl: str = "4h"

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def ttl_seconds(self) -> int:
        return parse_duration(self.ttl)


class DigestConfig(_Strict):
    channel: str | None = None  # a Slack channel id (C...); no channel, no scheduled digest
    cron: str = "0 9 * * 1-5"  # weekdays at 09:00
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from bot.schedule import cron

        cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from bot.schedule import zone

        zone(value)
        return value


class FeedbackConfig(_Strict):
    # A finding's fingerprint is suppressed in a repository once its down-votes outnumber its
    # up-votes by this many; a rule ("do not flag X in tests/") is made once this many different
    # findings of one kind were rejected under one top-level folder.
    suppress_after: int = Field(default=2, ge=1)
    rule_after: int = Field(default=3, ge=2)
    examples_per_agent: int = Field(default=5, ge=0, le=20)
    notes_per_agent: int = Field(default=20, ge=0, le=100)


class FollowConfig(_Strict):
    """Branches followed without anyone asking: every repository's branches matching
    `branches` are re-analyzed when their head moves, the deltas posted in `channel`."""

    branches: list[str] = Field(default_factory=list)  # fnmatch patterns, e.g. "release/*"
    channel: str | None = None  # a Slack channel id; needed for `branches`
    every: int = Field(default=300, ge=60)  # seconds between checks of the heads


class PolicyConfig(_Strict):
    repos: dict[str, RepoConfig] = Field(default_factory=dict)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    digest: DigestConfig = Field(default_factory=DigestConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    follow: FollowConfig = Field(default_factory=FollowConfig)
    source: str = Field(default="(defaults)", exclude=True)

    @field_validator("repos")
    @classmethod
    def _names(cls, repos: dict[str, RepoConfig]) -> dict[str, RepoConfig]:
        for name in repos:
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a usable repository name (letters, digits, . _ -)"
                )
        return repos

    def repo(self, name: str | None) -> tuple[str, RepoConfig]:
        """The repository a request names, or the only one configured."""
        if name is None:
            if len(self.repos) == 1:
                return next(iter(self.repos.items()))
            raise ConfigError(
                f"Several repositories are configured; name one with `in REPO`: "
                f"{', '.join(sorted(self.repos))}."
            )
        if name not in self.repos:
            known = ", ".join(sorted(self.repos)) or "(none)"
            raise ConfigError(f"Unknown repository {shown(name)!r}. Known: {known}.")
        return name, self.repos[name]


def parse_duration(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30m, 4h or 2d")
    number, unit = int(match.group(1)), match.group(2)
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def load_policy(path: Path | None, *, cwd: Path) -> PolicyConfig:
    """Read the policy file; with none, the working directory is the only repository, and no
    one can approve writes."""
    file = path if path is not None else cwd / "chatops.toml"
    if not file.exists():
        if path is not None:
            raise ConfigError(f"{file}: the file named by CHATOPS_CONFIG does not exist.")
        return PolicyConfig(repos={cwd.resolve().name or "repo": RepoConfig(path=cwd.resolve())})
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        policy = PolicyConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{file}: {key}: {first['msg']}") from None
    if not policy.repos:
        raise ConfigError(f"{file}: repos: configure at least one repository ([repos.NAME]).")
    for name, repo in policy.repos.items():
        if repo.path is not None and not repo.path.is_absolute():
            repo.path = (file.parent / repo.path).resolve()
        if repo.path is not None and not repo.path.exists():
            raise ConfigError(f"{file}: repos.{name}.path: {repo.path} does not exist.")
    policy.source = str(file)
    return policy
