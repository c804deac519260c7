"""A report as Markdown: the full, untruncated form (a file upload, `--format markdown`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from agents.lifecycle import delta_line
from agents.report import Finding, Report, Severity
from bot.core.proposal_state import ProposalState
from bot.core.proposal_text import readable

_SEVERITY_ORDER = [Severity.critical, Severity.high, Severity.medium, Severity.low, Severity.info]


def _fence(content: str, lang: str = "") -> str:
    """A code fence longer than any backtick run inside, so content cannot close it early."""
    longest = max((len(m) for m in re.findall(r"`+", content)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{content.rstrip(chr(10))}\n{ticks}"


_SAFE_URL = re.compile(r"https?://[A-Za-z0-9.:/_~%#?=&+-]{1,500}")


def _inline(text: str) -> str:
    """Untrusted text on one line, with Markdown and HTML specials neutralised."""
    text = " ".join(text.split())
    return re.sub(r"([\\`*_{}\[\]<>#|!])", r"\\\1", text)


def location(finding: Finding) -> str:
    if not finding.file:
        return ""
    if finding.start_line and finding.end_line and finding.end_line != finding.start_line:
        return f"{finding.file}:{finding.start_line}-{finding.end_line}"
    if finding.start_line:
        return f"{finding.file}:{finding.start_line}"
    return finding.file


def _life(finding: Finding) -> str:
    votes = f" (👍 {finding.votes.up} 👎 {finding.votes.down} so far)" if finding.votes else ""
    if finding.status == "new":
        return " **new**" + votes
    if finding.status == "open" and finding.first_seen is not None:
        return f" open since `{finding.first_seen.head_sha[:10]}`" + votes
    return votes


def render_markdown(report: Report, states: Mapping[str, ProposalState] | None = None) -> str:
    """`states`: what became of the proposals since (a report shown again), said under each;
    without them, nothing is said of their state (the command line's report)."""
    t = report.target
    out: list[str] = [
        f"# Analysis of `{t.branch}` against `{t.base}`",
        "",
        f"Repository `{t.repo}`, head `{t.head_sha[:12]}`, merge-base `{t.base_sha[:12]}`.",
        "",
        *(
            [f"Pull request #{t.pull_request}: <{t.url}>", ""]
            if t.pull_request is not None and t.url and _SAFE_URL.fullmatch(t.url)
            else []
        ),
        f"**Risk: {report.verdict()}**",
        "",
        *(
            [f"- {_inline(report.agents_line())}"]
            if not report.complete
            else [f"- {_inline(reason)}" for reason in report.risk.reasons]
        ),
        "",
        _inline(report.summary),
        "",
        *([f"**{delta_line(report)}.**", ""] if report.previous else []),
        "## Findings",
        "",
    ]
    if not report.findings:
        out += ["No findings.", ""]
    for severity in _SEVERITY_ORDER:
        group = [f for f in report.findings if f.severity is severity]
        if not group:
            continue
        out += [f"### {severity.value.capitalize()} ({len(group)})", ""]
        for finding in group:
            where = location(finding)
            number = report.findings.index(finding) + 1
            out.append(
                f"- F{number} **{_inline(finding.title)}**"
                + (f" `{where}`" if where else "")
                + f" ({finding.source.value}, {finding.agent}, "
                f"confidence {finding.confidence:.0%}, `{finding.fingerprint}`)" + _life(finding)
            )
            if finding.detail:
                out.append(f"  {_inline(finding.detail)}")
            if finding.suggestion:
                out.append(f"  Suggestion: {_inline(finding.suggestion)}")
        out.append("")
    if report.previous is not None and report.resolved:
        out += [f"## Resolved since `{report.previous.head_sha[:12]}` ({len(report.resolved)})", ""]
        for finding in report.resolved:
            where = location(finding)
            out.append(
                f"- {finding.severity.value} **{_inline(finding.title)}**"
                + (f" `{where}`" if where else "")
                + f" (`{finding.fingerprint}`)"
            )
        out.append("")
    if report.compliance is not None:
        c = report.compliance
        title = f" ({_inline(report.ticket.summary)})" if report.ticket else ""
        out += [f"## Compliance with {c.ticket}{title}: {c.verdict.replace('_', ' ')}", ""]
        if c.criteria:
            out += ["| criterion | judgment | evidence |", "|---|---|---|"]
            out += [
                f"| {_inline(j.criterion)} | {j.judgment.replace('_', ' ')} | "
                f"{_inline(', '.join(j.evidence)) or '-'} |"
                for j in c.criteria
            ]
        if c.note:
            out += ["", _inline(c.note)]
        out.append("")
    if report.proposals:
        out += ["## Proposed changes", ""]
        for proposal in report.proposals:
            state = states.get(proposal.id) if states is not None else None
            out += [
                f"### {proposal.id}: {_inline(proposal.title)}",
                "",
                f"{proposal.kind.value} to `{proposal.target}` at `{proposal.base_sha[:12]}`, "
                f"sha256 `{proposal.content_sha256[:16]}`",
                "",
                *([f"**State: {_inline(state.words())}.**", ""] if state is not None else []),
                _fence(readable(proposal), "diff" if proposal.kind.value == "patch" else ""),
                "",
            ]
    if report.learnings_applied:
        out += [
            "## Learnings applied",
            "",
            ", ".join(f"`{i}`" for i in report.learnings_applied)
            + (
                f" ({report.suppressed_findings} finding(s) left out)"
                if report.suppressed_findings
                else ""
            ),
            "",
        ]
    cov = report.coverage
    out += ["## Coverage", "", f"{len(cov.files_analyzed)} file(s) analyzed."]
    if cov.files_skipped:
        out += ["", "Skipped:", ""]
        out += [f"- `{s.file}`: {_inline(s.reason)}" for s in cov.files_skipped]
    if cov.not_run:
        out += ["", "**Partial report.** Did not run:", ""]
        out += [f"- {_inline(part)}" for part in cov.not_run]
    out += ["", "## Agents", "", "| agent | status | time |", "|---|---|---|"]
    out += [f"| {a.name} | {a.status} | {a.duration_ms} ms |" for a in report.agents]
    u = report.usage
    out += [
        "",
        f"Model: {u.model or 'none (offline analyzers)'}; tokens in {u.input_tokens}, "
        f"out {u.output_tokens}, cache read {u.cache_read_tokens}, "
        f"cache write {u.cache_write_tokens}; cost ${u.cost_usd:.4f}. Run `{report.run_id}`.",
        "",
    ]
    return "\n".join(out)
