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

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    chatops_model: str = DEFAULT_MODEL
    chatops_fast_model: str = DEFAULT_FAST_MODEL
    chatops_prices: Path | None = Field(
        default=None, description="A TOML price table laid over the built-in one."
    )
    chatops_max_run_cost_usd: float | None = Field(default=None, gt=0)
    chatops_input_budget_tokens: int = Field(default=24_000, ge=2_000)
    chatops_max_output_tokens: int = Field(default=8_192, ge=256)
    chatops_llm_concurrency: int = Field(default=4, ge=1, le=32)
    chatops_llm_timeout_s: float = Field(default=120.0, gt=0)
    chatops_llm_max_retries: int = Field(default=2, ge=0, le=10)
    chatops_daily_budget_usd: float | None = Field(
        default=None, gt=0, description="Refuse new runs once today's model spend reaches it."
    )
    chatops_validate: bool = True
    chatops_count_tokens: bool = True

    # Slack: a bot token and signing secret (HTTP mode), plus an app token for Socket Mode.
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = None

    # Jira: Cloud (email + API token) or Server/Data Center (a personal access token).
    jira_url: str | None = None
    jira_email: str | None = None
    jira_api_token: SecretStr | None = None
    jira_pat: SecretStr | None = None
    chatops_jira_ac_field: str | None = None

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

    # Storage and jobs: the embedded default is SQLite and an in-process queue.
    database_url: str | None = None
    chatops_data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("chatops")))
    chatops_config: Path | None = None
    chatops_queue: Literal["sqlite", "postgres", "redis"] = "sqlite"
    chatops_redis_url: str = "redis://127.0.0.1:6379/0"
    chatops_queue_name: str = "chatops"
    chatops_workers: int = Field(default=2, ge=1, le=64)
    chatops_lease_s: float = Field(default=120.0, gt=0)
    chatops_max_attempts: int = Field(default=3, ge=1)
    chatops_requeue_after_s: float = Field(default=600.0, gt=0)
    # Periodic jobs (the digest, curation) in this process's consumer. With several workers,
    # turn it on for one; the digest is posted once per channel and period either way.
    chatops_scheduler: bool = True
    # On SIGTERM a consumer takes no more work and waits this long for running jobs; what is
    # still running then is handed back to the queue for another worker.
    chatops_shutdown_grace_s: float = Field(default=30.0, ge=0)
    chatops_log_format: Literal["text", "json"] = "text"
    # The model's answers kept for reuse (a re-run pays only for what changed): the most kept,
    # the least recently used going first, and how long an unused answer stays.
    chatops_answer_cache_mb: float = Field(default=256.0, ge=0)
    chatops_answer_cache_days: float = Field(default=30.0, gt=0)

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
