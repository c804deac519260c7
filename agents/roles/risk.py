"""Risk: the diff heuristics, and a verdict (score, level, reasons) from every finding; with a
model, a short summary for the person deciding and design risks the others missed."""

from __future__ import annotations

from collections.abc import Sequence

from agents.analyzers.heuristics import change_size, run_heuristics
from agents.budget import Unit
from agents.context import files as kinds
from agents.context.code import neutralise
from agents.report import Finding, Risk, RiskLevel, Severity, Source
from agents.roles.answers import RiskAnswer
from agents.roles.base import PipelineState
from agents.roles.model import Shown, prompt_for, run_chunks, to_finding, validate

# Points a finding adds to the score, scaled by its confidence.
_WEIGHT = {
    Severity.critical: 45,
    Severity.high: 20,
    Severity.medium: 7,
    Severity.low: 2,
    Severity.info: 0,
}
_LEVELS = ((75, RiskLevel.critical), (45, RiskLevel.high), (20, RiskLevel.medium))
_FLOOR = {Severity.critical: RiskLevel.critical, Severity.high: RiskLevel.high}
_ORDER = [RiskLevel.low, RiskLevel.medium, RiskLevel.high, RiskLevel.critical]


def assess(findings: list[Finding]) -> Risk:
    """Score 0-100 and a level, with the reasons that produced them.

    The level follows the score, but never sits below the worst finding: one critical finding
    makes the change critical however small it is.
    """
    score = min(100, round(sum(_WEIGHT[f.severity] * f.confidence for f in findings)))
    level = next((lvl for threshold, lvl in _LEVELS if score >= threshold), RiskLevel.low)
    for finding in findings:
        floor = _FLOOR.get(finding.severity)
        if floor and _ORDER.index(floor) > _ORDER.index(level):
            level = floor
    return Risk(level=level, score=score, reasons=_reasons(findings))


def _reasons(findings: list[Finding]) -> list[str]:
    reasons: list[str] = []
    worst = sorted(
        (f for f in findings if f.severity.at_least(Severity.high)),
        key=lambda f: (-f.severity.rank, -f.confidence),
    )
    for finding in worst[:5]:
        where = (
            f" ({finding.file}:{finding.start_line})" if finding.file and finding.start_line else ""
        )
        reasons.append(f"{finding.severity.value}: {finding.title}{where}")
    if len(worst) > 5:
        reasons.append(f"... and {len(worst) - 5} more high or critical findings")
    reasons += [
        f.title
        for f in findings
        if f.source is Source.heuristic and f.severity.at_least(Severity.medium)
    ]
    medium = sum(1 for f in findings if f.severity is Severity.medium)
    if medium and not reasons:
        reasons.append(f"{medium} medium finding(s)")
    if not reasons:
        reasons.append("No high-severity findings and no sensitive areas touched.")
    return reasons


class RiskAgent:
    name = "risk"
    description = "size, sensitive paths, deleted tests; the overall risk verdict"

    def run(self, state: PipelineState) -> None:
        state.findings.extend(run_heuristics(state.diff))
        if state.llm is not None:
            self._assess_with_model(state)

    def _assess_with_model(self, state: PipelineState) -> None:
        assert state.llm is not None
        added, removed = change_size(state.diff)
        rows = []
        shown: dict[str, Shown] = {}
        for file in state.diff.files[:300]:
            kind = kinds.sensitive_kind(file.path) or ""
            rows.append(
                f"{file.status:<12} +{len(file.added_lines):<5} -{len(file.removed_lines):<5} "
                f"{kind:<10} {file.path}"
            )
            spans = tuple((h.new_start, h.new_start + max(h.new_count, 1) - 1) for h in file.hunks)
            if file.path in state.workspace.texts:
                shown[file.path] = Shown(spans)
        found = "\n".join(
            f"- {f.severity.value} [{f.agent}/{f.source.value}] {f.file}:{f.start_line} {f.title}"
            for f in sorted(state.findings, key=lambda f: -f.severity.rank)[:60]
        )
        text = neutralise(
            f"Branch {state.diff.branch} against {state.diff.base}: {len(state.diff.files)} "
            f"files, +{added} -{removed} lines.\n\nFiles (status, added, removed, sensitive "
            f"kind, path):\n" + "\n".join(rows) + f"\n\nFindings so far:\n{found or '(none)'}"
        )

        def message(chunk: Sequence[Unit]) -> str:
            return f"<untrusted_diff>\n{chunk[0].text}\n</untrusted_diff>"

        answers = run_chunks(
            state,
            agent=self.name,
            model=state.llm.settings.model,
            prompt=prompt_for(state, self.name),
            units=[Unit("(change summary)", 0, text)],
            user_message=message,
            output=RiskAnswer,
            on_skip=lambda _, reason: state.note(f"The risk summary was not written: {reason}."),
        )
        model_findings: list[Finding] = []
        for answer, _ in answers:
            state.model_summary = neutralise(answer.summary).strip()[:1500]
            model_findings += [
                f
                for item in answer.findings
                if (f := to_finding(state, item, agent=self.name, allowed=shown)) is not None
            ]
        state.findings.extend(validate(state, model_findings, agent=self.name))
