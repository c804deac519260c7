"""Risk: the diff heuristics, and a verdict (score, level, reasons) from every finding; with a
model, a short summary for the person deciding and design risks the others missed."""

from __future__ import annotations

from collections.abc import Sequence

from agents.analyzers.heuristics import change_size, run_heuristics
from agents.analyzers.merge import problem_of
from agents.budget import Unit
from agents.context import files as kinds
from agents.context.code import neutralise
from agents.context.git import FileDiff
from agents.report import Finding, Risk, RiskLevel, Severity, Source
from agents.roles.answers import RiskAnswer
from agents.roles.base import PipelineState
from agents.roles.model import Shown, prompt_for, run_chunks, to_finding, validate

# The band of scores each level spans, and where a level's worst finding puts the score in it.
_BAND = {
    RiskLevel.low: (0, 19),
    RiskLevel.medium: (20, 49),
    RiskLevel.high: (50, 74),
    RiskLevel.critical: (75, 100),
}
_LEVEL_OF = {
    Severity.critical: RiskLevel.critical,
    Severity.high: RiskLevel.high,
    Severity.medium: RiskLevel.medium,
    Severity.low: RiskLevel.low,
    Severity.info: RiskLevel.low,
}
# Points within the band for each further kind of finding at or above the next severity down:
# more findings of one kind add nothing, more kinds add a little.
_EXTRA = {RiskLevel.critical: 5, RiskLevel.high: 4, RiskLevel.medium: 3, RiskLevel.low: 2}
_ORDER = [RiskLevel.low, RiskLevel.medium, RiskLevel.high, RiskLevel.critical]
# Below this confidence a finding counts one severity lower: a guess does not set the level.
CREDIBLE = 0.5
_SENSITIVE_RULES = ("sensitive-path:auth", "sensitive-path:migration")


def _credible(finding: Finding) -> Severity:
    if finding.confidence >= CREDIBLE or finding.severity is Severity.info:
        return finding.severity
    return next(s for s in Severity if s.rank == finding.severity.rank - 1)


def _kind(finding: Finding) -> str:
    """What kind of problem: the problem class several tools share (a credential is one kind
    whether detect-secrets or bandit named it), else the tool's rule."""
    return problem_of(finding) or f"{finding.source.value}:{finding.rule or finding.category}"


def assess(findings: list[Finding]) -> Risk:
    """A level from evidence, with a score in its band and the reasons that set both.

    The level is the worst credible finding's (critical needs a critical finding; a score of 100
    too), raised from low to medium when the change touches a sensitive area (auth, sessions,
    crypto, migrations). Within the level's band the score rises a little for each further kind
    of finding, never for more findings of the same kind.
    """
    worst = max(findings, key=lambda f: (_credible(f).rank, f.confidence), default=None)
    level = _LEVEL_OF[_credible(worst)] if worst is not None else RiskLevel.low
    sensitive = sorted({f.file or f.title for f in findings if f.rule in _SENSITIVE_RULES})
    raised = False
    if level is RiskLevel.low and sensitive:
        level, raised = RiskLevel.medium, True
    floor, top = _BAND[level]
    threshold = _ORDER.index(level)
    kinds_here = {
        _kind(f)
        for f in findings
        if worst is not None
        and _kind(f) != _kind(worst)
        and _ORDER.index(_LEVEL_OF[_credible(f)]) >= threshold - 1
        and _credible(f).rank > Severity.info.rank
    }
    score = floor + 5 * (worst is not None and _LEVEL_OF[_credible(worst)] is level)
    areas = {f.rule for f in findings if f.rule in _SENSITIVE_RULES}  # once per kind of area
    score += _EXTRA[level] * len(kinds_here) + 2 * len(areas)
    # The critical band (and 100) is only reached through a critical finding.
    score = min(score, top)
    return Risk(
        level=level, score=score, reasons=_reasons(findings, level, worst, sensitive, raised)
    )


def _where(finding: Finding) -> str:
    return f" ({finding.file}:{finding.start_line})" if finding.file and finding.start_line else ""


def _reasons(
    findings: list[Finding],
    level: RiskLevel,
    worst: Finding | None,
    sensitive: list[str],
    raised: bool,
) -> list[str]:
    reasons: list[str] = []
    if worst is not None and _credible(worst).rank >= Severity.medium.rank:
        reasons.append(
            f"{level.value} because of the worst finding, {worst.severity.value}: "
            f"{worst.title}{_where(worst)}"
        )
    serious = sorted(
        (f for f in findings if f is not worst and f.severity.at_least(Severity.high)),
        key=lambda f: (-f.severity.rank, -f.confidence),
    )
    for finding in serious[:4]:
        reasons.append(f"{finding.severity.value}: {finding.title}{_where(finding)}")
    if len(serious) > 4:
        reasons.append(f"... and {len(serious) - 4} more high or critical findings")
    if sensitive:
        shown = ", ".join(sensitive[:5]) + (" ..." if len(sensitive) > 5 else "")
        reasons.append(
            ("medium because it touches" if raised else "It touches") + f" sensitive areas: {shown}"
        )
    reasons += [
        f.title
        for f in findings
        if f.source is Source.heuristic
        and f.severity.at_least(Severity.medium)
        and f is not worst
        and f not in serious
    ]
    if not reasons:
        reasons.append("No finding above low and no sensitive areas touched.")
    return reasons


# Files listed one by one in the risk summary; beyond, the rest is summed per folder. A risk
# verdict needs the sensitive and the large changes by name, not 500 rows of the rest.
LISTED_FILES = 60


def _file_rows(files: Sequence[FileDiff]) -> list[str]:
    def row(file: FileDiff) -> str:
        kind = kinds.sensitive_kind(file.path) or ""
        return (
            f"{file.status:<12} +{len(file.added_lines):<5} -{len(file.removed_lines):<5} "
            f"{kind:<10} {file.path}"
        )

    if len(files) <= LISTED_FILES:
        return [row(f) for f in files]
    ranked = sorted(
        files,
        key=lambda f: (
            kinds.sensitive_kind(f.path) is None,
            f.status != "deleted",
            -(len(f.added_lines) + len(f.removed_lines)),
            f.path,
        ),
    )
    named = ranked[:LISTED_FILES]
    rows = [row(f) for f in sorted(named, key=lambda f: f.path)]
    folders: dict[str, list[FileDiff]] = {}
    for file in ranked[LISTED_FILES:]:
        folder = file.path.rsplit("/", 1)[0] + "/" if "/" in file.path else "./"
        folders.setdefault(folder, []).append(file)
    for folder, group in sorted(folders.items()):
        statuses = sorted({f.status for f in group})
        added = sum(len(f.added_lines) for f in group)
        removed = sum(len(f.removed_lines) for f in group)
        sensitive = sum(1 for f in group if kinds.sensitive_kind(f.path))
        rows.append(
            f"{'/'.join(statuses):<12} +{added:<5} -{removed:<5} {'':<10} {folder} "
            f"({len(group)} more files, {sensitive or 'none'} sensitive)"
        )
    return rows


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
        shown: dict[str, Shown] = {}
        for file in state.diff.files:
            spans = tuple((h.new_start, h.new_start + max(h.new_count, 1) - 1) for h in file.hunks)
            if file.path in state.workspace.texts:
                shown[file.path] = Shown(spans)
        rows = _file_rows(state.diff.files)
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
