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

from agents.analyzers.flags import FlagSettings
from agents.errors import shown

DEFAULT_WRITABLE = ["feature/*", "fix/*", "bugfix/*", "chore/*"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION = re.compile(r"(\d+)\s*([smhd])")


class ConfigError(Exception):
    """Invalid policy file: `file: key: reason`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoConfig(_Strict):
    """A repository the agents may analyze, by the name users type (`in NAME`): a local clone
    or a remote URL. One table per repository."""

    path: Path | None = Field(
        default=None,
        description="A local clone (relative to this file, or absolute). Give path or url.",
    )
    url: str | None = Field(
        default=None,
        description="A remote the bot clones and fetches into its data folder. Give path or url.",
    )
    base: str | None = Field(
        default=None,
        description="The branch a branch is compared with (default: the remote's default "
        "branch, else main or master).",
    )
    mode: Literal["feature_branches", "read_only"] = Field(
        default="feature_branches",
        description="read_only: agents only report; nothing is ever written to this repository.",
    )
    writable: list[str] = Field(
        default_factory=lambda: list(DEFAULT_WRITABLE),
        description="Branch patterns (fnmatch) an approved proposal may be written to.",
    )
    protected: list[str] = Field(
        default_factory=list,
        description="Branch patterns never written, even when writable matches. The default "
        "branch, main, master, develop, release/* and hotfix/* are protected always.",
    )
    step: bool = Field(
        default=False,
        description="Every run of this repository waits at a human checkpoint after each "
        "agent (as `analyze branch NAME step` asks for one run).",
    )
    github: str | None = Field(
        default=None,
        description='The repository on GitHub, "org/repo": `analyze pr N` reads its pull '
        "requests (with GITHUB_TOKEN or a GitHub App; see docs/github.md). The clone's "
        "origin must be that repository.",
    )

    @field_validator("github")
    @classmethod
    def _github(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}", value
        ):
            raise ValueError(f'{value[:100]!r} is not "org/repo"')
        if value is not None and ".." in value:
            raise ValueError(f'{value[:100]!r} is not "org/repo"')
        return value

    @model_validator(mode="after")
    def _one_source(self) -> RepoConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (a local clone) or url (a remote)")
        return self


class ApprovalsConfig(_Strict):
    """Who may approve a proposed write."""

    approvers: list[str] = Field(
        default_factory=list,
        description="Slack user ids (U...) and user-group ids (S...) allowed to approve; empty: "
        "no one can, and every proposal only waits.",
    )
    four_eyes: bool = Field(
        default=True, description="The person who asked for the run may not approve its writes."
    )
    ttl: str = Field(
        default="4h",
        description="How long a proposal waits for a decision (30m, 4h, 2d), then expires.",
    )
    checkpoint_timeout: str = Field(
        default="1h",
        description="How long a stepped run waits at a checkpoint for its requester or an "
        "approver to continue it (30m, 4h, 2d); then it stops there.",
    )

    @field_validator("ttl", "checkpoint_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def ttl_seconds(self) -> int:
        return parse_duration(self.ttl)

    @property
    def checkpoint_timeout_seconds(self) -> int:
        return parse_duration(self.checkpoint_timeout)


class DigestConfig(_Strict):
    """The scheduled digest of agent activity."""

    channel: str | None = Field(
        default=None,
        description="A Slack channel id (C...) to post it in; no channel, no scheduled digest.",
    )
    cron: str = Field(
        default="0 9 * * 1-5",
        description="When to post it, a cron expression (minute hour day month weekday).",
    )
    timezone: str = Field(default="UTC", description="The time zone of cron, e.g. Europe/Paris.")

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
    """How votes become learnings."""

    suppress_after: int = Field(
        default=2,
        ge=1,
        description="A finding is suppressed in its repository once its 👎 outnumber its 👍 by "
        "this many.",
    )
    rule_after: int = Field(
        default=3,
        ge=2,
        description='A rule ("do not flag X in tests/") is made once this many different '
        "findings of one kind were rejected under one top-level folder.",
    )
    examples_per_agent: int = Field(
        default=5, ge=0, le=20, description="Voted examples shown to each agent's model prompt."
    )
    notes_per_agent: int = Field(
        default=20, ge=0, le=100, description="Learned notes given to each agent's model prompt."
    )


class FollowConfig(_Strict):
    """Branches followed without anyone asking: every repository's branches matching
    `branches` are re-analyzed when their head moves, the deltas posted in `channel`."""

    branches: list[str] = Field(
        default_factory=list,
        description='Branch patterns (fnmatch, e.g. "release/*") followed in every repository.',
    )
    channel: str | None = Field(
        default=None, description="A Slack channel id where their deltas go; needed for branches."
    )
    every: int = Field(default=300, ge=60, description="Seconds between checks of the heads.")


class FlagsConfig(_Strict):
    """The feature-flag agent: the team's own flag helpers and definition files (the SDKs'
    documented call shapes are recognised without any of this)."""

    calls: list[str] = Field(
        default_factory=list,
        description="In-house helpers that read a flag, key first and default second, e.g. "
        '["flags.is_on", "feature_enabled"] (a dotted name matches its last parts).',
    )
    files: list[str] = Field(
        default_factory=list,
        description='Flag definition files, paths in the repository, e.g. ["config/flags.yaml"]: '
        "a mapping of key to default (or to a table with `default`), optionally under `flags`.",
    )
    format: Literal["auto", "yaml", "json", "toml"] = Field(
        default="auto",
        description="The definition files' format; auto: by each file's extension (.json, "
        ".toml, else YAML).",
    )
    stale_days: int = Field(
        default=90,
        ge=0,
        description="A flag whose definition the history shows unchanged for longer is reported "
        "stale (0: never).",
    )

    def settings(self) -> FlagSettings:
        return FlagSettings(
            calls=tuple(self.calls),
            files=tuple(self.files),
            format=self.format,
            stale_days=self.stale_days,
        )


class PolicyConfig(_Strict):
    repos: dict[str, RepoConfig] = Field(
        default_factory=dict, description="The repositories, one table each: [repos.NAME]."
    )
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    digest: DigestConfig = Field(default_factory=DigestConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    follow: FollowConfig = Field(default_factory=FollowConfig)
    flags: FlagsConfig = Field(default_factory=FlagsConfig)
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
