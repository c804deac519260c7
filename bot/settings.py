"""Settings from the environment (and a `.env` file), validated at start.

Secrets and endpoints never come from a repository: only from the process environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.context.jira import JiraSettings
from agents.llm import DEFAULT_FAST_MODEL, DEFAULT_MODEL, LLMSettings, load_prices


class SettingsError(Exception):
    """Invalid configuration: which setting, and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # The model: unset key, offline (the analyzers alone).
    anthropic_api_key: SecretStr | None = Field(
        default=None, description="Turns the model on; without it everything runs offline."
    )
    anthropic_base_url: str | None = Field(
        default=None, description="Another Messages API endpoint (a proxy; the tests' fake)."
    )
    chatops_model: str = Field(default=DEFAULT_MODEL, description="The review model.")
    chatops_fast_model: str = Field(
        default=DEFAULT_FAST_MODEL, description="The validation pass's model."
    )
    chatops_prices: Path | None = Field(
        default=None,
        description="A TOML price table laid over the built-in one (agents/prices.toml; USD per "
        "million tokens: input, output, cache_write, cache_read per model).",
    )
    chatops_max_run_cost_usd: float | None = Field(
        default=None,
        gt=0,
        description="A hard cap per run: a call is made only if its worst case still fits.",
    )
    chatops_input_budget_tokens: int = Field(
        default=24_000, ge=2_000, description="Input tokens per model call."
    )
    chatops_max_output_tokens: int = Field(
        default=8_192, ge=256, description="max_tokens per model call."
    )
    chatops_llm_concurrency: int = Field(
        default=4, ge=1, le=32, description="Model calls in flight at once."
    )
    chatops_llm_timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds a model call may take."
    )
    chatops_llm_max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a rate-limited or overloaded call."
    )
    chatops_daily_budget_usd: float | None = Field(
        default=None, gt=0, description="Refuse new runs once today's model spend reaches it."
    )
    chatops_validate: bool = Field(
        default=True,
        description="Ask the fast model whether each model finding is supported by its lines.",
    )
    chatops_count_tokens: bool = Field(
        default=True,
        description="Count each request with count_tokens before sending it (false: estimate).",
    )

    # Slack: a bot token and signing secret (HTTP mode), plus an app token for Socket Mode.
    slack_bot_token: SecretStr | None = Field(
        default=None, description="The bot token (xoxb-...); `chatops serve` needs it."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="Checks that HTTP requests come from Slack (HTTP mode)."
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        description="An app-level token (xapp-..., connections:write): Socket Mode, no public URL.",
    )
    slack_api_url: str | None = Field(
        default=None, description="Another Web API endpoint (a proxy; the tests' fake)."
    )

    # Jira: Cloud (email + API token) or Server/Data Center (a personal access token).
    jira_url: str | None = Field(default=None, description="The Jira site; unset, no tickets.")
    jira_email: str | None = Field(default=None, description="Jira Cloud: the account's email.")
    jira_api_token: SecretStr | None = Field(
        default=None, description="Jira Cloud: an API token of that account."
    )
    jira_pat: SecretStr | None = Field(
        default=None, description="Jira Server / Data Center: a personal access token."
    )
    chatops_jira_ac_field: str | None = Field(
        default=None,
        description="The custom field holding acceptance criteria (e.g. customfield_10042); "
        "unset, they are read from the description.",
    )

    def jira(self) -> JiraSettings | None:
        if not self.jira_url:
            return None
        return JiraSettings(
            url=self.jira_url,
            email=self.jira_email,
            api_token=self.jira_api_token.get_secret_value() if self.jira_api_token else None,
            pat=self.jira_pat.get_secret_value() if self.jira_pat else None,
            acceptance_field=self.chatops_jira_ac_field,
        )

    # GitHub (`analyze pr N`): a token, or a GitHub App. Only bot/codehost/github.py reads them.
    github_token: SecretStr | None = Field(
        default=None,
        description="A GitHub token (fine-grained: pull requests and contents, read) for "
        "`analyze pr`; see docs/github.md.",
    )
    github_app_id: str | None = Field(
        default=None, description="A GitHub App's id, instead of GITHUB_TOKEN."
    )
    github_app_private_key: SecretStr | None = Field(
        default=None, description="That App's private key (PEM text)."
    )
    github_app_private_key_file: Path | None = Field(
        default=None, description="Or a file holding that App's private key (.pem)."
    )
    github_api_url: str | None = Field(
        default=None,
        description="Another REST API root: GitHub Enterprise Server's https://HOST/api/v3 "
        "(default: https://api.github.com; the tests' fake).",
    )

    # Storage and jobs: the embedded default is SQLite and an in-process queue.
    database_url: str | None = Field(
        default=None,
        description="A shared store, postgresql://... (unset: SQLite in the data folder).",
    )
    chatops_data_dir: Path = Field(
        default_factory=lambda: Path(user_data_dir("chatops")),
        description="The data folder: chatops.db, clones of url repositories, the shell's "
        "history (default: the user data directory, e.g. ~/.local/share/chatops).",
    )
    chatops_config: Path | None = Field(
        default=None,
        description="The policy file (default: chatops.toml in the working directory).",
    )
    chatops_queue: Literal["sqlite", "postgres", "redis"] = Field(
        default="sqlite",
        description="The job queue: sqlite (in-process workers), postgres (on DATABASE_URL) "
        "or redis (CHATOPS_REDIS_URL), for `chatops worker` processes anywhere.",
    )
    chatops_redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="The Redis of CHATOPS_QUEUE=redis."
    )
    chatops_queue_name: str = Field(default="chatops", description="The queue's name.")
    chatops_workers: int = Field(default=2, ge=1, le=64, description="Worker threads per process.")
    chatops_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="A worker's lease on a run, renewed while it works; an expired one is "
        "taken back (a worker killed mid-run).",
    )
    chatops_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a run before it fails visibly."
    )
    chatops_requeue_after_s: float = Field(
        default=600.0,
        gt=0,
        description="A queued run (or an apply) whose task was lost is enqueued again after it.",
    )
    chatops_scheduler: bool = Field(
        default=True,
        description="Periodic jobs (the digest, curation, followed branches) in this process. "
        "With several workers, turn it on for one; the digest is posted once either way.",
    )
    chatops_shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long running jobs may finish; the rest go back to the "
        "queue for another worker.",
    )
    chatops_log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line."
    )
    chatops_answer_cache_mb: float = Field(
        default=256.0,
        ge=0,
        description="The kept answers (the model's and the analyzers'): at most this much, the "
        "least recently used going first.",
    )
    chatops_answer_cache_days: float = Field(
        default=30.0, gt=0, description="A kept answer unused this long is dropped."
    )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.chatops_data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.chatops_data_dir / 'chatops.db'}"

    def llm(self) -> LLMSettings | None:
        """The model settings, or None when no key is set (the analyzers work alone)."""
        if self.anthropic_api_key is None or not self.anthropic_api_key.get_secret_value():
            return None
        if self.chatops_prices is not None and not self.chatops_prices.is_file():
            raise SettingsError(f"CHATOPS_PRICES: {self.chatops_prices} is not a file.")
        try:
            prices = load_prices(self.chatops_prices)
        except (KeyError, ValueError) as exc:
            raise SettingsError(f"CHATOPS_PRICES: {self.chatops_prices}: {exc}") from None
        for name, model in (
            ("CHATOPS_MODEL", self.chatops_model),
            ("CHATOPS_FAST_MODEL", self.chatops_fast_model),
        ):
            if model not in prices:
                raise SettingsError(
                    f"{name}: no price for {model!r}; add it to a prices file named by "
                    "CHATOPS_PRICES."
                )
        return LLMSettings(
            api_key=self.anthropic_api_key.get_secret_value(),
            base_url=self.anthropic_base_url,
            model=self.chatops_model,
            fast_model=self.chatops_fast_model,
            prices=prices,
            max_output_tokens=self.chatops_max_output_tokens,
            input_budget_tokens=self.chatops_input_budget_tokens,
            concurrency=self.chatops_llm_concurrency,
            timeout_s=self.chatops_llm_timeout_s,
            max_retries=self.chatops_llm_max_retries,
            max_run_cost_usd=self.chatops_max_run_cost_usd,
            validate=self.chatops_validate,
            count_tokens_online=self.chatops_count_tokens,
        )


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(problems) from None
