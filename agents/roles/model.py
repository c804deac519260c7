"""What the model-backed agents share: packing context into calls, running them in parallel,
turning answers into findings, and the validation pass that drops unsupported findings."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from agents import prompts
from agents.budget import Unit, estimate_tokens, halves, pack
from agents.context import files as kinds
from agents.context.code import file_context, neutralise, numbered
from agents.llm import CostCapReached, LLMError, Prompt, UnusableOutput
from agents.report import Finding, Severity, Source, fingerprint
from agents.reuse import remember
from agents.roles.answers import ModelFinding, ValidationAnswer
from agents.roles.base import PipelineState

T = TypeVar("T", bound=BaseModel)

# Room for the instructions around the data in the user message.
_USER_OVERHEAD_TOKENS = 600


@dataclass(frozen=True)
class Shown:
    """The lines of a file a model was shown: findings must cite one of them."""

    ranges: tuple[tuple[int, int], ...]

    def covers(self, start: int, end: int) -> bool:
        return any(s <= end and start <= e for s, e in self.ranges)


def render_prompt(state: PipelineState, role: str) -> tuple[Prompt, set[str]]:
    """The role's prompt with the team's learnings and examples, and the ids of those used."""
    learned = state.learnings.texts_for(role)
    shots = state.learnings.examples_for(role)
    prompt = prompts.render(
        role,
        guidance=state.guidance,
        learnings=[text for _, text in learned],
        team_examples=[text for _, text in shots],
    )
    return prompt, {item_id for item_id, _ in learned + shots}


def prompt_for(state: PipelineState, role: str) -> Prompt:
    prompt, used = render_prompt(state, role)
    state.prompt_versions[role] = prompt.version
    with state._lock:
        state.learnings_applied |= used
    return prompt


def priority(path: str) -> int:
    """Sensitive paths and source first, tests next, everything else last."""
    if kinds.sensitive_kind(path):
        return 0
    if kinds.is_test_path(path):
        return 2
    if path.endswith((".md", ".rst", ".txt", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg")):
        return 3
    return 1


def file_units(state: PipelineState) -> tuple[list[Unit], dict[str, Shown]]:
    """One unit per analyzed file (its hunks, scopes and the analyzers' findings on it); a file
    too large for one call is split into one unit per hunk."""
    budget = chunk_budget(state, "code_review")
    grounding: dict[str, list[Finding]] = {}
    for finding in state.findings:
        if finding.file:
            grounding.setdefault(finding.file, []).append(finding)
    units: list[Unit] = []
    shown: dict[str, Shown] = {}
    for diff in state.workspace.analyzed:
        pieces, ranges = file_context(diff, state.workspace.texts[diff.path])
        shown[diff.path] = Shown(tuple(ranges))
        notes = "".join(
            f"\n- {f.file}:{f.start_line} {f.severity.value} {f.rule}: {f.title}"
            for f in grounding.get(diff.path, [])[:20]
        )
        tail = f"\n<analyzer_findings>{notes}\n</analyzer_findings>" if notes else ""
        head = f'<file path="{diff.path}" status="{diff.status}">\n'
        whole = neutralise(head + "\n".join(pieces) + tail + "\n</file>")
        if estimate_tokens(whole) <= budget or len(pieces) == 1:
            units.append(Unit(diff.path, priority(diff.path), whole))
            continue
        for piece in pieces:
            units.append(
                Unit(diff.path, priority(diff.path), neutralise(head + piece + tail + "\n</file>"))
            )
    return units, shown


def chunk_budget(state: PipelineState, role: str) -> int:
    assert state.llm is not None
    prefix = estimate_tokens(render_prompt(state, role)[0].stable)
    return state.llm.settings.input_budget_tokens - prefix - _USER_OVERHEAD_TOKENS


def run_chunks(
    state: PipelineState,
    *,
    agent: str,
    model: str,
    prompt: Prompt,
    units: list[Unit],
    user_message: Callable[[Sequence[Unit]], str],
    output: type[T],
    on_skip: Callable[[str, str], None] | None = None,
    per_unit: Callable[[T, Unit], T] | None = None,
) -> list[tuple[T, list[Unit]]]:
    """Pack `units` into calls under the budget, run them with bounded parallelism, and return
    each answer with the units it covered. A call whose answer is cut off or malformed is retried
    once as two smaller calls; what still fails, or is over the cost cap, is disclosed in
    coverage. Other errors (auth, rate limits after retries) end the agent.

    With `per_unit` (the part of an answer about one unit), each unit's part is kept, and a
    unit asked about before with the same text, around the same message, is answered from it
    and not sent: after a push only the units that changed go to the model."""
    session = state.llm
    assert session is not None
    settings = session.settings
    skip = on_skip or state.skip_for_model
    budget = settings.input_budget_tokens - estimate_tokens(prompt.stable) - _USER_OVERHEAD_TOKENS
    answers: list[tuple[T, list[Unit]]] = []
    lock = threading.Lock()
    # The words around the units: a unit's answer is reused only inside the same message.
    around = user_message([]) if per_unit is not None else ""

    def unit_key(unit: Unit) -> str:
        return session.answer_key(model, prompt, output, "unit", around, unit.file, unit.text)

    fresh: list[Unit] = []
    for unit in units:
        kept = session.reused(unit_key(unit), output) if per_unit is not None else None
        if kept is None:
            fresh.append(unit)
        else:
            answers.append((kept, [unit]))
    state.count_units(reused=len(units) - len(fresh), sent=0)
    packing = pack(fresh, budget)
    for path, reason in packing.skipped:
        skip(path, reason)

    def keep_parts(answer: T, chunk: list[Unit]) -> None:
        if per_unit is None:
            return
        files = [unit.file for unit in chunk]
        for unit in chunk:
            # A file split into several units shares one answer: its parts cannot be told apart.
            if files.count(unit.file) == 1:
                remember(
                    session.answers,
                    unit_key(unit),
                    "unit",
                    per_unit(answer, unit).model_dump_json(),
                )

    def call(chunk: list[Unit], may_split: bool) -> None:
        user = user_message(chunk)
        kept = session.kept(model=model, prompt=prompt, user=user, output=output)
        if kept is not None:  # asked before, word for word: no call, and no token count
            state.count_units(reused=len(chunk), sent=0)
            keep_parts(kept, chunk)
            with lock:
                answers.append((kept, chunk))
            return
        if settings.count_tokens_online:
            counted = session.count_tokens(prompt, user, model)
            if counted > settings.input_budget_tokens:
                parts = halves(chunk)
                if not parts:
                    skip(chunk[0].file, f"too large for one call ({counted} tokens)")
                for part in parts:
                    call(part, may_split)
                return
        try:
            answer = session.structured(
                agent=agent, model=model, prompt=prompt, user=user, output=output
            )
        except UnusableOutput as exc:
            parts = halves(chunk) if may_split else []
            if not parts:
                for unit in chunk:
                    skip(unit.file, f"model answer unusable: {exc.message}")
            for part in parts:
                call(part, False)
            return
        except CostCapReached as exc:
            state.note(exc.message + " The rest of the run used the analyzers alone.")
            limit = "today's budget" if exc.kind == "budget" else "the run's cost cap"
            for unit in chunk:
                skip(unit.file, f"{limit} was reached")
            return
        state.count_units(reused=0, sent=len(chunk))
        keep_parts(answer, chunk)
        with lock:
            answers.append((answer, chunk))

    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency)) as pool:
        # Each call in the caller's context (a log line of it carries the run it belongs to).
        calls = [pool.submit(copy_context().run, call, chunk, True) for chunk in packing.chunks]
        for future in calls:
            future.result()
    return answers


def to_finding(
    state: PipelineState,
    item: ModelFinding,
    *,
    agent: str,
    allowed: dict[str, Shown],
) -> Finding | None:
    """A model's finding, if it cites lines the model was actually shown; else None."""
    shown = allowed.get(item.file)
    start, end = item.start_line, max(item.start_line, item.end_line)
    if shown is None or not shown.covers(start, end):
        return None
    text = state.workspace.texts.get(item.file, "")
    lines = text.splitlines()
    anchor = lines[start - 1] if 0 < start <= len(lines) else item.title
    category = item.category.strip().lower().replace(" ", "-")[:40] or "review"
    return Finding(
        fingerprint=fingerprint(source=Source.llm, rule=category, file=item.file, anchor=anchor),
        agent=agent,
        category=category,
        rule=category,
        severity=Severity(item.severity),
        confidence=item.confidence,
        file=item.file,
        start_line=start,
        end_line=end,
        title=neutralise(item.title)[:200],
        detail=neutralise(item.detail)[:2000],
        suggestion=neutralise(item.suggestion)[:1000],
        source=Source.llm,
    )


def validate(state: PipelineState, findings: list[Finding], *, agent: str) -> list[Finding]:
    """Ask the fast model whether each finding is supported by the lines it cites; drop those it
    says are not. A finding it gives no verdict on is kept."""
    session = state.llm
    if session is None or not findings or not session.settings.validate:
        return findings
    prompt = prompt_for(state, "validate")
    by_id = _claim_ids(findings)
    units = [Unit(fid, 1, _claim(state, fid, finding)) for fid, finding in by_id.items()]

    def message(chunk: Sequence[Unit]) -> str:
        claims = "\n".join(unit.text for unit in chunk)
        return (
            "Check each finding against its lines.\n\n"
            f"<untrusted_diff>\n{claims}\n</untrusted_diff>"
        )

    unchecked: list[str] = []
    try:
        answers = run_chunks(
            state,
            agent=f"{agent}:validate",
            model=session.settings.fast_model,
            prompt=prompt,
            units=units,
            user_message=message,
            output=ValidationAnswer,
            on_skip=lambda fid, reason: unchecked.append(fid),
            per_unit=lambda answer, unit: ValidationAnswer(
                verdicts=[v for v in answer.verdicts if v.id == unit.file]
            ),
        )
    except LLMError as exc:
        state.note(f"Validation of {agent}'s findings failed ({exc}); they are kept unvalidated.")
        return findings
    unsupported = {
        verdict.id
        for answer, _ in answers
        for verdict in answer.verdicts
        if not verdict.supported and verdict.id in by_id
    }
    state.dropped_unsupported += len(unsupported)
    if unchecked:
        state.note(f"{len(unchecked)} of {agent}'s findings could not be validated; kept.")
    return [finding for fid, finding in by_id.items() if fid not in unsupported]


def _claim_ids(findings: list[Finding]) -> dict[str, Finding]:
    """Each finding's id for the validation pass, from its fingerprint: the same finding has the
    same id in every run, so its verdict can be reused while its lines are unchanged."""
    by_id: dict[str, Finding] = {}
    for finding in findings:
        base = f"F-{finding.fingerprint[:8]}"
        fid, n = base, 1
        while fid in by_id:
            n += 1
            fid = f"{base}-{n}"
        by_id[fid] = finding
    return by_id


def _claim(state: PipelineState, fid: str, finding: Finding) -> str:
    text = state.workspace.texts.get(finding.file or "", "")
    lines = text.splitlines()
    diff = state.diff.file(finding.file or "")
    added = diff.added_lines if diff else {}
    start = max(1, (finding.start_line or 1) - 3)
    end = min(len(lines), (finding.end_line or finding.start_line or 1) + 3)
    cited = "\n".join(numbered(n, n in added, lines[n - 1]) for n in range(start, end + 1))
    return neutralise(
        f'<finding id="{fid}" file="{finding.file}" lines="{finding.start_line}-'
        f'{finding.end_line}">\n{finding.title}\n{finding.detail}\n<lines>\n{cited}\n'
        f"</lines>\n</finding>"
    )
