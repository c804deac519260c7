"""A report and live progress in the terminal, with rich.

Text from repositories and tools is always wrapped in `rich.text.Text`, never parsed as rich
markup, so a file or finding cannot restyle or fake the output.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agents.lifecycle import delta_line
from agents.pipeline import Progress
from agents.report import Report, RiskLevel, Severity
from bot.core.proposal_state import ProposalState
from bot.core.proposal_text import readable
from bot.surfaces.render.markdown import location

SEVERITY_STYLE = {
    Severity.critical: "bold white on red",
    Severity.high: "bold red",
    Severity.medium: "yellow",
    Severity.low: "cyan",
    Severity.info: "dim",
}
RISK_STYLE = {
    RiskLevel.critical: "bold white on red",
    RiskLevel.high: "bold red",
    RiskLevel.medium: "bold yellow",
    RiskLevel.low: "bold green",
}
_STATUS_MARK = {
    "waiting": ("·", "dim"),
    "running": ("…", "bold blue"),
    "done": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "cancelled": ("-", "dim"),
}


def progress_view(progress: Progress) -> RenderableType:
    lines = []
    for agent in progress.agents:
        mark, style = _STATUS_MARK[agent.status]
        line = Text(f" {mark} ", style=style)
        line.append(f"{agent.name:<14}")
        line.append(agent.status, style=style)
        if agent.status in ("done", "failed"):
            line.append(f"  {agent.duration_ms} ms", style="dim")
        if agent.error:
            line.append(f"  {agent.error}", style="red")
        lines.append(line)
    return Group(*lines)


def report_view(
    report: Report, states: Mapping[str, ProposalState] | None = None
) -> RenderableType:
    """`states`: what became of the proposals since (a report shown again); without them, a
    report no one could act on yet (the command line's)."""
    t = report.target
    risk = report.risk
    head = Text()
    head.append("Risk ", style="bold")
    style = RISK_STYLE[risk.level] if report.complete else "bold white on magenta"
    head.append(
        f" {report.verdict().upper() if report.complete else report.verdict()} ", style=style
    )
    head.append(f"   {t.branch} against {t.base} ({t.head_sha[:10]})", style="bold")
    parts: list[RenderableType] = [head]
    if t.pull_request is not None and t.url:
        parts.append(Text(f"  pull request #{t.pull_request}: {t.url}"))
    if report.complete:
        parts += [Text(f"  • {reason}") for reason in risk.reasons]
    else:
        parts.append(Text(f"  • {report.agents_line()}"))
    parts.append(Text(report.summary))
    if report.previous is not None:
        parts.append(Text(delta_line(report) + ".", style="bold"))
    if report.findings:
        table = Table(show_header=True, header_style="bold", expand=True, show_lines=False)
        table.add_column("#", no_wrap=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("where", overflow="fold", max_width=40)
        table.add_column("finding", overflow="fold", ratio=1)
        for number, finding in enumerate(report.findings, start=1):
            body = Text(finding.title, style="bold")
            if finding.detail:
                body.append("\n" + finding.detail)
            if finding.suggestion:
                body.append("\n→ " + finding.suggestion, style="italic")
            table.add_row(
                f"F{number}" + (" new" if finding.status == "new" else ""),
                Text(finding.severity.value, style=SEVERITY_STYLE[finding.severity]),
                Text(location(finding)),
                body,
            )
        parts.append(table)
    if report.previous is not None and report.resolved:
        gone = Text(f"Resolved since {report.previous.head_sha[:10]}:", style="bold")
        for finding in report.resolved:
            gone.append(f"\n  ✓ {finding.severity.value} {location(finding)} {finding.title}")
        parts.append(gone)
    if report.compliance is not None:
        c = report.compliance
        table = Table(
            title=Text(f"Compliance with {c.ticket}: {c.verdict.replace('_', ' ')}"),
            show_header=True,
            header_style="bold",
            expand=True,
        )
        table.add_column("criterion", ratio=2)
        table.add_column("judgment", no_wrap=True)
        table.add_column("evidence", ratio=1, overflow="fold")
        for j in c.criteria:
            table.add_row(
                Text(j.criterion), j.judgment.replace("_", " "), Text(", ".join(j.evidence) or "-")
            )
        parts.append(table)
        if c.note:
            parts.append(Text(c.note, style="italic"))
    for proposal in report.proposals:
        state = states.get(proposal.id) if states is not None else None
        standing = state.words() if state is not None else "not applied"
        parts.append(
            Panel(
                Text(readable(proposal)),
                title=Text(f"{proposal.id}: {proposal.title}"),
                subtitle=Text(f"{proposal.kind.value} → {proposal.target} ({standing})"),
                title_align="left",
            )
        )
    cov = report.coverage
    coverage = Text(f"Coverage: {len(cov.files_analyzed)} file(s) analyzed", style="dim")
    for part in cov.not_run:
        coverage.append(f"\n  PARTIAL: {part}", style="bold red")
    for skipped in cov.files_skipped[:20]:
        coverage.append(f"\n  skipped {skipped.file}: {skipped.reason}")
    if len(cov.files_skipped) > 20:
        coverage.append(f"\n  ... and {len(cov.files_skipped) - 20} more skipped")
    parts.append(coverage)
    if report.learnings_applied:
        left_out = (
            f"; {report.suppressed_findings} finding(s) left out"
            if report.suppressed_findings
            else ""
        )
        parts.append(
            Text(
                f"Learnings applied: {', '.join(report.learnings_applied)}{left_out} "
                "(`learnings` lists them)",
                style="dim",
            )
        )
    u = report.usage
    parts.append(
        Text(
            f"Model {u.model or 'none (offline analyzers)'} · tokens {u.input_tokens}+"
            f"{u.output_tokens} · ${u.cost_usd:.4f} · "
            + " ".join(f"{a.name} {a.status} {a.duration_ms}ms" for a in report.agents)
            + f" · run {report.run_id}",
            style="dim",
        )
    )
    return Group(*parts)


def print_report(
    console: Console, report: Report, states: Mapping[str, ProposalState] | None = None
) -> None:
    console.print(report_view(report, states))
