"""The one thin wrapper around `anthropic`. No other module imports it.

Structured output comes from a JSON schema generated from pydantic models (`output_config`),
never from forced tool choice. The system prompt's stable prefix carries `cache_control`. No
sampling parameters are sent. Content blocks are picked by type, never by position. Every call,
failed or not, is recorded with its tokens, cost, latency and outcome.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

from agents.budget import estimate_tokens
from agents.report import LLMCall, sha256_hex
from agents.reuse import AnswerStore, NoAnswers, key_of, recall, remember

if TYPE_CHECKING:
    # The SDK takes almost two seconds to import: offline runs never pay for it.
    import anthropic
    from anthropic.types import MessageParam, OutputConfigParam, TextBlockParam

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_FAST_MODEL = "claude-haiku-5-5"


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(
        self, input_tokens: int, output_tokens: int, cache_write: int, cache_read: int
    ) -> float:
        return (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_write * self.cache_write
            + cache_read * self.cache_read
        ) / 1_000_000


def load_prices(override: Path | None = None) -> dict[str, Price]:
    """The packaged price table, with a user's TOML file of the same shape laid over it."""
    text = resources.files("agents").joinpath("prices.toml").read_text(encoding="utf-8")
    tables = [tomllib.loads(text)]
    if override is not None:
        tables.append(tomllib.loads(override.read_text(encoding="utf-8")))
    prices: dict[str, Price] = {}
    for table in tables:
        for model, row in table.get("models", {}).items():
            prices[model] = Price(
                input=float(row["input"]),
                output=float(row["output"]),
                cache_write=float(row["cache_write"]),
                cache_read=float(row["cache_read"]),
            )
    return prices


@dataclass(frozen=True)
class LLMSettings:
    api_key: str
    base_url: str | None = None
    model: str = DEFAULT_MODEL
    fast_model: str = DEFAULT_FAST_MODEL
    prices: Mapping[str, Price] = field(default_factory=load_prices)
    max_output_tokens: int = 8192
    input_budget_tokens: int = 24_000
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 2
    max_run_cost_usd: float | None = None
    validate: bool = True
    count_tokens_online: bool = True


class LLMError(Exception):
    """A model call that did not produce a usable answer, with a reason a person can act on."""

    def __init__(self, kind: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.message} (retryable)" if self.retryable else self.message


class UnusableOutput(LLMError):
    """The model stopped at max_tokens or its JSON does not match the schema: worth one retry
    with a smaller request."""


class CostCapReached(LLMError):
    """The run's cost cap would be passed by the next call."""


@dataclass(frozen=True)
class Prompt:
    """A system prompt: its stable, cached prefix and that prefix's version (a hash)."""

    stable: str

    @property
    def version(self) -> str:
        return sha256_hex(self.stable)[:12]

    def blocks(self) -> list[TextBlockParam]:
        return [{"type": "text", "text": self.stable, "cache_control": {"type": "ephemeral"}}]


class LLMSession:
    """One run's use of the model: the client, every call made, the money spent and reserved."""

    def __init__(
        self,
        settings: LLMSettings,
        client: anthropic.Anthropic | None = None,
        *,
        on_call: Callable[[LLMCall], None] | None = None,
        budget_left: Callable[[], float | None] | None = None,
        answers: AnswerStore | None = None,
    ) -> None:
        """`on_call` hears of every call as it ends (to record spend at once); `budget_left`
        says what a shared budget still allows (checked before every call); `answers` keeps
        answers for reuse (none: every question is asked)."""
        import anthropic

        self.settings = settings
        self.on_call = on_call
        self.budget_left = budget_left
        self.answers: AnswerStore = answers if answers is not None else NoAnswers()
        # Calls answered from `answers` instead of the model, this session.
        self.reused_calls = 0
        self._client = client or anthropic.Anthropic(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        self._lock = threading.Lock()
        self._reserved = 0.0
        self.calls: list[LLMCall] = []
        # Each prompt sent, by (version, agent): the interaction log keeps the text once.
        self.prompts: dict[tuple[str, str], str] = {}

    @property
    def spent_usd(self) -> float:
        with self._lock:
            return sum(call.cost_usd for call in self.calls)

    def price(self, model: str) -> Price:
        price = self.settings.prices.get(model)
        if price is None:
            raise LLMError(
                "config",
                f"No price for model {model!r}. Add it to a prices file named by CHATOPS_PRICES.",
                retryable=False,
            )
        return price

    def count_tokens(self, prompt: Prompt, user: str, model: str) -> int:
        """Exact input tokens from the API when allowed, else the documented estimate."""
        import anthropic

        if not self.settings.count_tokens_online:
            return estimate_tokens(prompt.stable) + estimate_tokens(user)
        key = key_of("count", model, prompt.stable, user)
        known = recall(self.answers, key)
        if known is not None and known.isdigit():
            return int(known)
        try:
            counted = self._client.messages.count_tokens(
                model=model, system=prompt.blocks(), messages=_user(user)
            )
        except anthropic.APIError as exc:
            raise self._translate(exc) from None
        remember(self.answers, key, "count", str(int(counted.input_tokens)))
        return int(counted.input_tokens)

    def answer_key(self, model: str, prompt: Prompt, output: type[BaseModel], *parts: str) -> str:
        """The key of an answer: the model, the whole system prompt (learnings included), the
        answer's schema, and what the user message held."""
        schema = json.dumps(output.model_json_schema(), sort_keys=True)
        return key_of("answer", model, prompt.stable, schema, *parts)

    def kept(
        self,
        *,
        model: str,
        prompt: Prompt,
        user: str,
        output: type[T],
        max_tokens: int | None = None,
    ) -> T | None:
        """The answer to this exact question from an earlier call, if one was kept (counted
        in `reused_calls`); `structured` asks this first."""
        limit = max_tokens or self.settings.max_output_tokens
        kept = self.reused(self.answer_key(model, prompt, output, str(limit), user), output)
        if kept is not None:
            with self._lock:
                self.reused_calls += 1
        return kept

    def reused(self, key: str, output: type[T]) -> T | None:
        """The answer kept under `key`, if there is one that still matches `output`."""
        kept = recall(self.answers, key)
        if kept is None:
            return None
        try:
            return output.model_validate_json(kept)
        except ValidationError:  # kept under an older schema: ask again
            return None

    def structured(
        self,
        *,
        agent: str,
        model: str,
        prompt: Prompt,
        user: str,
        output: type[T],
        max_tokens: int | None = None,
    ) -> T:
        """One call whose answer must match `output`'s JSON schema. The same question asked
        before (same model, prompt, schema, limit and message) is answered from `answers`."""
        import anthropic

        limit = max_tokens or self.settings.max_output_tokens
        key = self.answer_key(model, prompt, output, str(limit), user)
        kept = self.kept(model=model, prompt=prompt, user=user, output=output, max_tokens=limit)
        if kept is not None:
            return kept
        reservation = self._reserve(model, prompt, user, limit)
        started = time.perf_counter()
        try:
            format_: OutputConfigParam = {
                "format": {"type": "json_schema", "schema": anthropic.transform_schema(output)}
            }
            message = self._client.messages.create(
                model=model,
                max_tokens=limit,
                system=prompt.blocks(),
                messages=_user(user),
                output_config=format_,
            )
        except anthropic.APIError as exc:
            failure = self._translate(exc)
            self._record(agent, model, prompt, started, reservation, outcome=failure.kind)
            raise failure from None
        error: UnusableOutput | None = None
        result: T | None = None
        if message.stop_reason == "max_tokens":
            error = UnusableOutput(
                "max_tokens",
                f"The model's answer was cut off at max_tokens ({limit}).",
                retryable=True,
            )
        else:
            # Pick text blocks by type: an answer may begin with a thinking block.
            text = "".join(block.text for block in message.content if block.type == "text")
            try:
                result = output.model_validate_json(text)
            except ValidationError as exc:
                error = UnusableOutput(
                    "invalid_output",
                    f"The model's answer did not match the schema: {exc.errors()[0]['msg']}",
                    retryable=True,
                )
        usage = message.usage
        self._record(
            agent,
            model,
            prompt,
            started,
            reservation,
            outcome=error.kind if error else "ok",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write=usage.cache_creation_input_tokens or 0,
            cache_read=usage.cache_read_input_tokens or 0,
        )
        if error is not None:
            raise error
        assert result is not None
        remember(self.answers, key, "answer", result.model_dump_json())
        return result

    def _reserve(self, model: str, prompt: Prompt, user: str, max_tokens: int) -> float:
        """Hold the worst case of this call against the cap, so parallel calls cannot pass it."""
        price = self.price(model)
        worst = price.cost(
            estimate_tokens(prompt.stable) + estimate_tokens(user), max_tokens, 0, 0
        ) + price.cost(0, 0, estimate_tokens(prompt.stable), 0)
        cap = self.settings.max_run_cost_usd
        # What a shared budget still allows, with this session's finished calls already in it
        # (read before the lock: it may ask a database).
        left = self.budget_left() if self.budget_left is not None else None
        with self._lock:
            spent = sum(call.cost_usd for call in self.calls)
            if cap is not None and spent + self._reserved + worst > cap:
                raise CostCapReached(
                    "cost_cap",
                    f"Stopped calling the model: the run's cost cap (CHATOPS_MAX_RUN_COST_USD = "
                    f"${cap:.2f}) would be passed; ${spent:.4f} spent.",
                    retryable=False,
                )
            if left is not None and self._reserved + worst > left:
                raise CostCapReached(
                    "budget",
                    f"Stopped calling the model: today's budget (CHATOPS_DAILY_BUDGET_USD) "
                    f"leaves ${max(left, 0.0):.4f}, less than this call may cost.",
                    retryable=False,
                )
            self._reserved += worst
        return worst

    def _record(
        self,
        agent: str,
        model: str,
        prompt: Prompt,
        started: float,
        reservation: float,
        *,
        outcome: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_write: int = 0,
        cache_read: int = 0,
    ) -> None:
        cost = self.price(model).cost(input_tokens, output_tokens, cache_write, cache_read)
        call = LLMCall(
            agent=agent,
            model=model,
            prompt_version=prompt.version,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cost_usd=round(cost, 6),
            latency_ms=int((time.perf_counter() - started) * 1000),
            outcome=outcome,
        )
        with self._lock:
            self._reserved -= reservation
            self.calls.append(call)
            self.prompts.setdefault((prompt.version, agent), prompt.stable)
        if self.on_call is not None:
            try:
                self.on_call(call)
            except Exception:  # the ledger missed one call; the run and its report go on
                log.exception("could not record a model call")

    def _translate(self, exc: anthropic.APIError) -> LLMError:
        import anthropic

        retries = self.settings.max_retries
        if isinstance(exc, anthropic.AuthenticationError):
            return LLMError(
                "auth",
                "Anthropic rejected the API key (401): check ANTHROPIC_API_KEY.",
                retryable=False,
            )
        if isinstance(exc, anthropic.PermissionDeniedError):
            return LLMError(
                "permission",
                "The API key may not use this model (403): check CHATOPS_MODEL and the key's "
                "workspace.",
                retryable=False,
            )
        if isinstance(exc, anthropic.RateLimitError):
            return LLMError(
                "rate_limited",
                f"Rate limited by the Anthropic API (429), still after {retries} retries.",
                retryable=True,
            )
        if isinstance(exc, anthropic.InternalServerError):
            overloaded = exc.status_code == 529
            return LLMError(
                "overloaded" if overloaded else "server_error",
                f"The Anthropic API is {'overloaded (529)' if overloaded else 'failing'} "
                f"(HTTP {exc.status_code}), still after {retries} retries.",
                retryable=True,
            )
        if isinstance(exc, anthropic.APITimeoutError):
            return LLMError(
                "timeout",
                f"The Anthropic API did not answer within {self.settings.timeout_s:.0f} s.",
                retryable=True,
            )
        if isinstance(exc, anthropic.APIConnectionError):
            where = self.settings.base_url or "the Anthropic API"
            return LLMError(
                "connection",
                f"Cannot reach {where}: check ANTHROPIC_BASE_URL and the network.",
                retryable=True,
            )
        if isinstance(exc, anthropic.APIStatusError):
            return LLMError(
                "bad_request",
                f"The Anthropic API refused the request (HTTP {exc.status_code}): {exc.message}",
                retryable=False,
            )
        return LLMError("error", f"Anthropic API error: {exc}", retryable=False)


def _user(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]
