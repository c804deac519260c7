"""Sessions pointed at the fake Messages API."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents.llm import LLMSession, LLMSettings
from agents.reuse import AnswerStore
from tests.support.fakes.anthropic_api import API_KEY, FakeAnthropic


def session_for(
    fake: FakeAnthropic, *, answers: AnswerStore | None = None, **overrides: Any
) -> LLMSession:
    settings = LLMSettings(api_key=API_KEY, base_url=fake.base_url, timeout_s=10, max_retries=2)
    return LLMSession(replace(settings, **overrides), answers=answers)


def model_env(fake: FakeAnthropic, **extra: str) -> dict[str, str]:
    """The environment that points a `chatops` process at the fake, one try per call."""
    return {
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "CHATOPS_LLM_MAX_RETRIES": "0",
        "CHATOPS_COUNT_TOKENS": "false",
        **extra,
    }
