"""One problem, one finding: what several analyzers report about the same problem on the same
line becomes one finding that lists every source that saw it.

A problem's fingerprint is built from its class, file and line text, never from which tool saw it,
so it stays the same whether detect-secrets, bandit or both report it (and when one of them stops).
"""

from __future__ import annotations

from collections.abc import Callable

from agents.report import Finding, Severity, Source, fingerprint

CREDENTIAL = "credential"
# bandit's checks for the problems other analyzers see too.
_BANDIT_PROBLEM = {
    "B105": CREDENTIAL,
    "B106": CREDENTIAL,
    "B107": CREDENTIAL,
    "B506": "unsafe-yaml",
    "B306": "insecure-tempfile",
    "B602": "shell-injection",
    "B604": "shell-injection",
    "B605": "shell-injection",
    "B307": "eval",
    "B501": "tls-verification-off",
    "B311": "insecure-random",
    "B701": "template-autoescape-off",
    "B608": "sql-injection",
    **{f"B3{n}": "unsafe-xml" for n in range(13, 21)},
}


def _precedence(finding: Finding) -> int:
    """Whose words lead when several saw a problem: the most specific first (a reverted
    hardening names what was removed; then the tools' own rule ids people know)."""
    if finding.rule.endswith(":reverted"):
        return 0
    order = {Source.secrets: 1, Source.bandit: 2, Source.heuristic: 3, Source.ruff: 4}
    return order.get(finding.source, 5)


LineText = Callable[[str, int], str]


def problem_of(finding: Finding) -> str | None:
    """The problem class a finding belongs to, when other analyzers can report it too."""
    if finding.source is Source.secrets:
        return CREDENTIAL
    if finding.source is Source.bandit:
        return _BANDIT_PROBLEM.get(finding.rule)
    if finding.source is Source.heuristic and finding.rule.startswith("problem:"):
        return finding.rule.removeprefix("problem:").split(":", 1)[0]
    return None


def problem_fingerprint(problem: str, file: str, line_text: str) -> str:
    return fingerprint(
        source=Source.heuristic, rule=f"problem:{problem}", file=file, anchor=line_text
    )


def _label(finding: Finding) -> str:
    return f"{finding.source.value} {finding.rule}".strip()


def merge_same_problem(findings: list[Finding], line_text: LineText) -> list[Finding]:
    """Findings of one problem class on one line of one file, merged; others unchanged."""
    groups: dict[tuple[str, int], list[Finding]] = {}
    out: list[Finding | tuple[str, int]] = []
    for finding in findings:
        problem = problem_of(finding)
        if problem is None or finding.file is None or finding.start_line is None:
            out.append(finding)
            continue
        text = line_text(finding.file, finding.start_line)
        # Two identical lines are two problems: number_repeats tells their fingerprints apart.
        key = (problem_fingerprint(problem, finding.file, text), finding.start_line)
        if key not in groups:
            groups[key] = []
            out.append(key)
        groups[key].append(finding)
    return [item if isinstance(item, Finding) else _merged(item[0], groups[item]) for item in out]


def _merged(key: str, group: list[Finding]) -> Finding:
    lead = min(group, key=lambda f: (-f.severity.rank, _precedence(f)))
    labels = sorted({_label(f) for f in group})
    update: dict[str, object] = {"fingerprint": key}
    if len(labels) > 1:
        others = [f for f in group if f is not lead and f.severity.rank > Severity.info.rank]
        confidence = max(f.confidence for f in group)
        update |= {
            "seen_by": labels,
            "confidence": min(0.95, confidence + 0.05 * len(others)),
            "detail": f"{lead.detail} Seen by: {', '.join(labels)}.".strip(),
            "suggestion": lead.suggestion
            or next((f.suggestion for f in group if f.suggestion), ""),
        }
    return lead.model_copy(update=update)
