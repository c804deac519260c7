"""Risk: the diff heuristics, and a verdict (score, level, reasons) from every finding."""

from __future__ import annotations

from agents.analyzers.heuristics import run_heuristics
from agents.report import Finding, Risk, RiskLevel, Severity, Source
from agents.roles.base import PipelineState

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
