"""Block Kit for runs and reports, with `slack_sdk.models.blocks`, inside Slack's limits.

Every text from a repository, a ticket or a model is escaped (`&`, `<`, `>`), so nothing in it
can mention `@channel` or a user, or forge a link. A report that does not fit one message
(50 blocks, 3,000 characters a section, about 13,000 in all) is cut to its top, and the caller
uploads the full Markdown report as a file in the thread.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextActionsBlock,
    ContextBlock,
    DividerBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    OverflowMenuElement,
    PlainTextObject,
    SectionBlock,
)

from agents.lifecycle import delta_line
from agents.pipeline import AgentProgress, Saved
from agents.report import Finding, Proposal, ProposalKind, Report, Severity
from bot.core.proposal_text import readable
from bot.surfaces.render.markdown import location

MAX_BLOCKS = 50
MAX_SECTION = 3000
# Slack answers msg_blocks_too_long at about 13,000 characters; stay well under.
MAX_MESSAGE_CHARS = 11_000
# A proposal's content longer than this is previewed, and the whole of it uploaded as a file.
PREVIEW_CHARS = 1800
_SEVERITY_ICON = {
    Severity.critical: ":red_circle:",
    Severity.high: ":large_orange_circle:",
    Severity.medium: ":large_yellow_circle:",
    Severity.low: ":large_blue_circle:",
    Severity.info: ":white_circle:",
}
_STATUS_ICON = {
    "waiting": ":hourglass:",
    "running": ":hourglass_flowing_sand:",
    "done": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":heavy_minus_sign:",
}


_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


def escape(text: str) -> str:
    """Slack's three control characters, as its docs say to escape them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text, MAX_SECTION)))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(text, MAX_SECTION))])


def to_dicts(blocks: list[Block]) -> list[dict[str, object]]:
    return [block.to_dict() for block in blocks]


def size(blocks: list[dict[str, object]]) -> int:
    return len(json.dumps(blocks))


@dataclass(frozen=True)
class ParentView:
    run_id: str
    requester: str
    target: str
    repo: str
    status: str
    agents: list[AgentProgress]
    verdict: str = ""
    # A line under it: superseded by a later run, or where that later run is.
    note: str = ""


def parent_blocks(view: ParentView) -> list[dict[str, object]]:
    """The channel message: who asked for what, and one line per agent."""
    lines = [
        f"{_STATUS_ICON.get(agent.status, '')} `{agent.name}` {agent.status}"
        + (f" ({agent.duration_ms / 1000:.1f} s)" if agent.status in ("done", "failed") else "")
        for agent in view.agents
    ]
    who = f"<@{view.requester}>" if _USER_ID.fullmatch(view.requester) else escape(view.requester)
    head = (
        f"*Analyzing `{escape(view.target)}` in {escape(view.repo)}*, requested by {who}: "
        f"{view.status}"
    )
    blocks: list[Block] = [_section(head)]
    if lines:
        blocks.append(_section("\n".join(lines)))
    if view.verdict:
        blocks.append(_section(view.verdict))
    if view.note:
        blocks.append(_section(view.note))
    blocks.append(_context(f"run `{view.run_id}` · the report goes in this thread"))
    return to_dicts(blocks)


def parent_text(view: ParentView) -> str:
    return f"Analyzing {view.target} in {view.repo}: {view.status}"


# A stepped run's checkpoint, in its parent message: the last agent's findings, each with a
# "Not a problem…" (a modal asks why), and Continue / Stop.
CHECKPOINT_CONTINUE = "checkpoint_continue"
CHECKPOINT_STOP = "checkpoint_stop"
CHECKPOINT_DROP = "checkpoint_drop"
CHECKPOINT_BLOCK = "checkpoint"
CHECKPOINT_LISTED = 15


def drop_value(run_id: str, fingerprint: str) -> str:
    return f"drop:{run_id}:{fingerprint}"


def parse_drop_value(value: str) -> tuple[str, str] | None:
    """(run id, fingerprint) from a "Not a problem…" option."""
    parts = value.split(":")
    if len(parts) != 3 or parts[0] != "drop" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def checkpoint_blocks(view: ParentView, saved: Saved, until: str) -> list[dict[str, object]]:
    """The parent message of a run waiting after an agent: what that agent found (numbered as
    `drop RUN/F2` names them), a "Not a problem…" on each, and Continue / Stop."""
    blocks = parent_blocks(view)[:-1]  # its footer goes last
    found = saved.new_findings()
    nxt = f" Next: `{saved.next_agent}`." if saved.next_agent else ""
    head = (
        f":raised_hand: *Checkpoint after `{escape(saved.after)}`*: "
        f"{len(found) or 'no'} finding(s) from it; {len(saved.findings)} so far.{nxt} "
        "Drop what is not a problem: later agents and the report go without it."
    )
    items: list[Block] = [_section(head)]
    for number, finding in found[:CHECKPOINT_LISTED]:
        where = location(finding)
        text = (
            f"`F{number}` {_SEVERITY_ICON[finding.severity]} *{escape(clip(finding.title, 300))}*"
            + (f"  `{escape(where)}`" if where else "")
            + f"\n{escape(clip(finding.detail, 500))}"
        )
        items.append(
            SectionBlock(
                text=MarkdownTextObject(text=clip(text, MAX_SECTION)),
                accessory=OverflowMenuElement(
                    action_id=CHECKPOINT_DROP,
                    options=[
                        Option(
                            value=drop_value(view.run_id, finding.fingerprint),
                            text="Not a problem…",
                        )
                    ],
                ),
            )
        )
    if len(found) > CHECKPOINT_LISTED:
        items.append(
            _context(
                f"{len(found) - CHECKPOINT_LISTED} more: "
                f"`/agent drop {view.run_id}/F{found[-1][0]} REASON` drops one by its number."
            )
        )
    for gone in saved.dropped[-10:]:
        items.append(
            _context(f":wastebasket: dropped by <@{gone.by}>: {escape(clip(gone.title, 200))}")
        )
    items.append(
        ActionsBlock(
            block_id=CHECKPOINT_BLOCK,
            elements=[
                ButtonElement(
                    text="Continue",
                    action_id=CHECKPOINT_CONTINUE,
                    value=view.run_id,
                    style="primary",
                ),
                ButtonElement(
                    text="Stop", action_id=CHECKPOINT_STOP, value=view.run_id, style="danger"
                ),
            ],
        )
    )
    items.append(
        _context(
            f"run `{view.run_id}` · the requester or an approver decides · waits until "
            f"{escape(until)}, then stops"
        )
    )
    return blocks + to_dicts(items)


def verdict_line(report: Report) -> str:
    return f"*Risk: {escape(report.verdict())}* · {escape(report.summary)}"


# The report's 👍 / 👎: Slack's feedback buttons. VOTE_UP / VOTE_DOWN are the buttons reports
# posted before them carry; a click on one still counts.
REPORT_FEEDBACK = "report_feedback"
VOTE_UP = "report_vote_up"
VOTE_DOWN = "report_vote_down"
VOTE_FINDING = "finding_vote"
REPORT_VOTE_BLOCK = "report_vote"


def finding_vote_value(run_id: str, fingerprint: str, vote: str) -> str:
    return f"{vote}:{run_id}:{fingerprint}"


def parse_vote_value(value: str) -> tuple[int, str, str] | None:
    """(+1 or -1, run id, fingerprint or "") from a vote button or overflow option."""
    parts = value.split(":")
    if len(parts) == 2:
        parts.append("")
    if len(parts) != 3 or parts[0] not in ("up", "down"):
        return None
    return (1 if parts[0] == "up" else -1), parts[1], parts[2]


def _finding_votes(run_id: str, finding: Finding) -> OverflowMenuElement:
    return OverflowMenuElement(
        action_id=VOTE_FINDING,
        options=[
            Option(value=finding_vote_value(run_id, finding.fingerprint, "up"), text="👍 Useful"),
            Option(
                value=finding_vote_value(run_id, finding.fingerprint, "down"),
                text="👎 Wrong or noise…",
            ),
        ],
    )


def report_votes(run_id: str) -> ContextActionsBlock:
    """👍 / 👎 on the whole report, as Slack's feedback buttons (a 👎 asks what was wrong). The
    clicked button's value is the vote, as the overflow menu's option is a finding's."""
    return ContextActionsBlock(
        block_id=REPORT_VOTE_BLOCK,
        elements=[
            FeedbackButtonsElement(
                action_id=REPORT_FEEDBACK,
                positive_button=FeedbackButtonObject(
                    text="👍", value=f"up:{run_id}", accessibility_label="Useful report"
                ),
                negative_button=FeedbackButtonObject(
                    text="👎", value=f"down:{run_id}", accessibility_label="Not a useful report"
                ),
            )
        ],
    )


def _finding_block(finding: Finding, number: int, run_id: str) -> SectionBlock:
    where = location(finding)
    text = (
        f"`F{number}` {_SEVERITY_ICON[finding.severity]} *{escape(clip(finding.title, 300))}*"
        + (f"  `{escape(where)}`" if where else "")
        + f"\n{escape(clip(finding.detail, 1200))}"
        + (f"\n_Suggestion:_ {escape(clip(finding.suggestion, 800))}" if finding.suggestion else "")
        + f"\n_{finding.source.value} · {finding.agent} · confidence {finding.confidence:.0%}"
        + (f" · 👍 {finding.votes.up} 👎 {finding.votes.down} so far" if finding.votes else "")
        + "_"
    )
    return SectionBlock(
        text=MarkdownTextObject(text=clip(text, MAX_SECTION)),
        accessory=_finding_votes(run_id, finding),
    )


def pull_request_link(report: Report) -> str:
    """`<URL|pull request #N>` for a pull request's report (the host's page), else ""."""
    t = report.target
    if t.pull_request is None or not t.url or not t.url.startswith(("https://", "http://")):
        return ""
    return f"<{escape(t.url)}|pull request #{t.pull_request}>"


def report_blocks(report: Report, *, hosted: bool = False) -> tuple[list[dict[str, object]], bool]:
    """The report as one message's blocks, and whether it was cut to fit (then the caller
    uploads the full Markdown report in the thread)."""
    t = report.target
    head: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(f"Report: {t.branch} against {t.base}", 150))),
        _section(
            (f"{pull_request_link(report)}\n" if pull_request_link(report) else "")
            + verdict_line(report)
            + (
                "".join(f"\n• {escape(clip(reason, 300))}" for reason in report.risk.reasons[:8])
                if report.complete
                else f"\n• {escape(clip(report.agents_line(), 300))}"
            )
        ),
    ]
    body: list[Block] = []
    if report.compliance is not None:
        c = report.compliance
        marks = {
            "met": ":white_check_mark:",
            "not_met": ":x:",
            "needs_human": ":eyes:",
            "unjudged": ":grey_question:",
        }
        lines = [
            f"{marks[j.judgment]} {escape(clip(j.criterion, 200))}"
            + (f" · `{escape(clip(', '.join(j.evidence), 150))}`" if j.evidence else "")
            for j in c.criteria[:25]
        ]
        body.append(
            _section(
                f"*Compliance with {escape(c.ticket)}: {c.verdict.replace('_', ' ')}*\n"
                + "\n".join(lines)
                + (f"\n_{escape(c.note)}_" if c.note else "")
            )
        )
    numbers = {id(f): n for n, f in enumerate(report.findings, start=1)}
    for severity in Severity:
        group = [f for f in report.findings if f.severity is severity]
        if group:
            body.append(_section(f"*{severity.value.capitalize()}* ({len(group)})"))
            body.extend(_finding_block(f, numbers[id(f)], report.run_id) for f in group)
    for proposal in report.proposals:
        body += proposal_blocks(report, proposal, hosted=hosted, cut_note=True)
    cov = report.coverage
    skipped = "; ".join(f"{escape(s.file)}: {escape(s.reason)}" for s in cov.files_skipped[:5])
    tail: list[Block] = [
        _context(
            f"Coverage: {len(cov.files_analyzed)} file(s) analyzed"
            + (f", {len(cov.files_skipped)} skipped ({clip(skipped, 1500)})" if skipped else "")
            + (
                f". *Partial:* {clip('; '.join(escape(p) for p in cov.not_run), 1000)}"
                if cov.not_run
                else ""
            )
        ),
        _context(_footer(report)),
        report_votes(report.run_id),
    ]
    if report.learnings_applied:
        tail.insert(
            1,
            _context(
                "Learnings applied: "
                + ", ".join(f"`{escape(i)}`" for i in report.learnings_applied[:20])
                + (
                    f" ({report.suppressed_findings} finding(s) left out)"
                    if report.suppressed_findings
                    else ""
                )
                + " · `/agent learnings` lists them"
            ),
        )
    blocks = to_dicts(head + body + tail)
    if len(blocks) <= MAX_BLOCKS and size(blocks) <= MAX_MESSAGE_CHARS:
        return blocks, False
    # Cut: head, as many body blocks as fit, a note, the tail.
    note = _section(":page_facing_up: The full report is in the file below.")
    fixed = to_dicts(head) + [note.to_dict()] + to_dicts([DividerBlock()] + tail)
    kept: list[dict[str, object]] = []
    for block in to_dicts(body):
        if (
            len(fixed) + len(kept) + 1 > MAX_BLOCKS
            or size(fixed + kept + [block]) > MAX_MESSAGE_CHARS
        ):
            break
        kept.append(block)
    return fixed[: len(head)] + kept + fixed[len(head) :], True


FULL_REPORT = "full_report"
# Still-open findings listed by title in a delta; the rest are counted.
DELTA_OPEN_LISTED = 10


def delta_blocks(
    report: Report, reports: dict[str, str], *, hosted: bool = False
) -> list[dict[str, object]]:
    """A re-run's answer in the branch's thread: what is new (in full, with its votes), what
    was resolved, what is still open (each pointing at the report that first showed it), and
    a button for the full report as a file. `reports`: run id to a link to its report."""
    assert report.previous is not None
    new = [f for f in report.findings if f.status != "open"]
    still = [f for f in report.findings if f.status == "open"]
    t = report.target
    blocks: list[Block] = [
        _section(
            f"*Update: `{escape(t.branch)}` at `{t.head_sha[:10]}`: "
            f"{escape(delta_line(report))}*\n{verdict_line(report)}"
            + (f"\n{pull_request_link(report)}" if pull_request_link(report) else "")
        )
    ]
    numbers = {id(f): n for n, f in enumerate(report.findings, start=1)}
    if new:
        blocks.append(_section(f"*New* ({len(new)})"))
        blocks.extend(_finding_block(f, numbers[id(f)], report.run_id) for f in new[:15])
        if len(new) > 15:
            blocks.append(_context(f"{len(new) - 15} more new finding(s) in the full report."))
    if report.resolved:
        lines = [
            f":white_check_mark: ~{escape(clip(f.title, 200))}~ `{escape(location(f))}`"
            for f in report.resolved[:15]
        ]
        more = len(report.resolved) - 15
        blocks.append(
            _section(
                f"*Resolved* ({len(report.resolved)})\n"
                + "\n".join(lines)
                + (f"\n…and {more} more" if more > 0 else "")
            )
        )
    if still:
        last = reports.get(report.previous.run_id)
        where = f" (<{last}|the last report>)" if last else ""
        lines = []
        for f in still[:DELTA_OPEN_LISTED]:
            first = reports.get(f.first_seen.run_id) if f.first_seen else None
            lines.append(
                f"`F{numbers[id(f)]}` {_SEVERITY_ICON[f.severity]} {escape(clip(f.title, 150))}"
                f" `{escape(location(f))}`" + (f" · <{first}|first shown>" if first else "")
            )
        more = len(still) - DELTA_OPEN_LISTED
        blocks.append(
            _section(
                f"*Still open* ({len(still)}){where}\n"
                + "\n".join(lines)
                + (f"\n…and {more} more" if more > 0 else "")
            )
        )
    for proposal in report.proposals:
        blocks += proposal_blocks(report, proposal, hosted=hosted)
    blocks += [
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Full report", action_id=FULL_REPORT, value=f"report:{report.run_id}"
                ),
            ],
        ),
        report_votes(report.run_id),
        _context(_footer(report)),
    ]
    return to_dicts(blocks)


APPROVE = "proposal_approve"
APPROVE_AS_PR = "proposal_approve_pr"
REJECT = "proposal_reject"


def proposal_block_id(ref: str) -> str:
    return f"proposal:{ref}"


def proposal_blocks(
    report: Report, proposal: Proposal, *, hosted: bool, cut_note: bool = False
) -> list[Block]:
    """A proposal as people decide on it: what it does, exactly, and its buttons. `hosted`:
    the repository has a code host, so a change can also be opened as a pull request."""
    content = readable(proposal)
    shown = escape(clip(content, PREVIEW_CHARS)).replace("```", "ˋˋˋ")
    if cut_note and len(content) > PREVIEW_CHARS:
        shown += "\n(cut here: the exact change is in the file below)"
    section = _section(
        f"*{proposal.id}: {escape(clip(proposal.title, 200))}*  "
        f"({proposal.kind.value} → `{escape(proposal.target)}`, not applied)\n```{shown}```"
    )
    pull_request = report.target.pull_request
    if proposal.kind is ProposalKind.pr_review:
        lands = f"It will be posted on pull request #{pull_request} as comments; it never approves."
    elif pull_request is not None and proposal.kind is not ProposalKind.branch_patch:
        lands = f"It will be opened as a pull request into pull request #{pull_request}'s branch."
    else:
        # A patch names its branch; a new file goes on the branch analyzed.
        branch = (
            proposal.target if proposal.kind is not ProposalKind.new_file else report.target.branch
        )
        lands = f"It will be committed to {clip(branch, 150)} exactly as shown" + (
            " (as a pull request, if that branch is protected)." if hosted else "."
        )
    choice = hosted and pull_request is None and proposal.kind is not ProposalKind.pr_review
    buttons = proposal_buttons(
        report.run_id, proposal.id, proposal.content_sha256, lands=lands, as_pull_request=choice
    )
    return [section, buttons]


def proposal_buttons(
    run_id: str,
    pid: str,
    content_sha256: str,
    *,
    lands: str,
    as_pull_request: bool = False,
) -> ActionsBlock:
    """Approve / Reject (and "Approve as PR" where there is a code host). The value names the
    proposal and the first 16 hex digits of the content it showed; the server checks both
    against what it stored, so an edited value does nothing."""
    ref = f"{run_id}/{pid}"
    value = f"{ref}:{content_sha256[:16]}"
    approve = ButtonElement(
        text="Approve",
        action_id=APPROVE,
        value=value,
        style="primary",
        confirm=ConfirmObject(
            title="Approve this proposal?", text=lands, confirm="Approve", deny="Cancel"
        ),
    )
    elements = [approve]
    if as_pull_request:
        elements.append(
            ButtonElement(
                text="Approve as PR",
                action_id=APPROVE_AS_PR,
                value=value,
                confirm=ConfirmObject(
                    title="Open a pull request?",
                    text="A new branch of the bot's own gets this change, and a pull request "
                    "from it waits for review on the code host.",
                    confirm="Open it",
                    deny="Cancel",
                ),
            )
        )
    elements.append(ButtonElement(text="Reject", action_id=REJECT, value=value, style="danger"))
    return ActionsBlock(block_id=proposal_block_id(ref), elements=elements)


def decided_blocks(blocks: list[dict[str, object]], ref: str, text: str) -> list[dict[str, object]]:
    """The message's blocks with that proposal's buttons replaced by who decided what, when."""
    replaced: list[dict[str, object]] = []
    for block in blocks:
        if block.get("block_id") == proposal_block_id(ref):
            replaced.append(_context(text).to_dict())
        else:
            replaced.append(block)
    return replaced


def _footer(report: Report) -> str:
    u = report.usage
    duration = sum(a.duration_ms for a in report.agents) / 1000
    model = escape(u.model) if u.model else "none (offline analyzers)"
    return (
        f"Model {model} · tokens {u.input_tokens:,} in, {u.output_tokens:,} out, "
        f"{u.cache_read_tokens:,} cached · ${u.cost_usd:.4f} · {duration:.1f} s · "
        f"run `{report.run_id}`"
    )


def failure_blocks(run_id: str, error: str) -> list[dict[str, object]]:
    return to_dicts(
        [
            _section(f":x: *The analysis failed.* {escape(clip(error, 2500))}"),
            _context(f"run `{run_id}`"),
        ]
    )
