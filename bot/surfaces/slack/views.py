"""Views beyond the report: the down-vote modal, the App Home tab, and the digest message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.core.digest import DigestData, sections
from bot.core.feedback import Acceptance
from bot.core.messages import subject
from bot.store.models import ProposalRow, Run
from bot.surfaces.slack.blocks import MAX_BLOCKS, clip, escape, proposal_buttons, to_dicts

VOTE_REASON = "vote_reason"
REASON_BLOCK = "reason"
CORRECTION_BLOCK = "correction"
# Slack's limits: a modal title 24 characters, a view 100 blocks.
MAX_VIEW_BLOCKS = 100


def vote_modal(run_id: str, fingerprint: str, label: str) -> View:
    """Asked after a 👎: what was wrong, and optionally what the right output would be."""
    return _reason_modal(
        VOTE_REASON,
        run_id,
        fingerprint,
        title="What was wrong?",
        submit="Send",
        close="Skip",
        intro=f"Your 👎 on {escape(clip(label, 200))} is recorded. Saying why teaches "
        "the agents: curation turns it into a learning for later runs.",
        question="What was wrong?",
        more=[
            InputBlock(
                block_id=CORRECTION_BLOCK,
                label=PlainTextObject(text="What would the right output be?"),
                optional=True,
                element=PlainTextInputElement(
                    action_id=CORRECTION_BLOCK, multiline=True, max_length=2000
                ),
            )
        ],
    )


DROP_REASON = "checkpoint_drop_reason"


def drop_modal(run_id: str, fingerprint: str, label: str) -> View:
    """Asked after "Not a problem…" at a checkpoint: why (the 👎's reason)."""
    return _reason_modal(
        DROP_REASON,
        run_id,
        fingerprint,
        title="Not a problem?",
        submit="Drop it",
        close="Cancel",
        intro=f"Drop {escape(clip(label, 200))}: later agents and the report go "
        "without it, and it counts as your 👎 with this reason.",
        question="Why is it not a problem?",
    )


def _reason_modal(
    callback_id: str,
    run_id: str,
    fingerprint: str,
    *,
    title: str,
    submit: str,
    close: str,
    intro: str,
    question: str,
    more: list[InputBlock] | None = None,
) -> View:
    """A modal about one finding that asks for a reason (`modal_values` reads it back)."""
    return View(
        type="modal",
        callback_id=callback_id,
        private_metadata=json.dumps({"run": run_id, "fp": fingerprint}),
        title=PlainTextObject(text=title),
        submit=PlainTextObject(text=submit),
        close=PlainTextObject(text=close),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=intro)),
            InputBlock(
                block_id=REASON_BLOCK,
                label=PlainTextObject(text=question),
                element=PlainTextInputElement(
                    action_id=REASON_BLOCK, multiline=True, max_length=2000
                ),
            ),
            *(more or []),
        ],
    )


def modal_values(view: dict[str, object]) -> tuple[str, str, str, str | None]:
    """(run id, fingerprint, reason, correction) from a submitted vote modal."""
    try:
        meta = json.loads(str(view.get("private_metadata") or "{}"))
    except ValueError:
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    values = (view.get("state") or {}).get("values", {})  # type: ignore[attr-defined]
    reason = ((values.get(REASON_BLOCK) or {}).get(REASON_BLOCK) or {}).get("value") or ""
    correction = ((values.get(CORRECTION_BLOCK) or {}).get(CORRECTION_BLOCK) or {}).get("value")
    return str(meta.get("run", "")), str(meta.get("fp", "")), str(reason), correction


@dataclass(frozen=True)
class HomeRun:
    run: Run
    link: str | None
    label: str = "open"  # what the link opens: "report", or the run's "thread"


_RUN_ICON = {
    "queued": ":hourglass:",
    "running": ":hourglass_flowing_sand:",
    "waiting": ":raised_hand:",  # at a checkpoint, for a person to continue it
    "done": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":heavy_minus_sign:",
}


def local_time(when: datetime) -> str:
    """A moment as Slack shows it in each reader's own time zone ("Today at 9:05 AM"), with
    UTC as the fallback text where a client cannot format it."""
    moment = when if when.tzinfo else when.replace(tzinfo=UTC)
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def home_view(
    runs: list[HomeRun],
    pending: list[tuple[ProposalRow, Run]],
    team_acceptance: Acceptance,
) -> View:
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="chatops"))]
    rate = team_acceptance.rate
    blocks.append(
        SectionBlock(
            text=MarkdownTextObject(
                text="*The team's acceptance rate (30 days):* "
                + (
                    f"{rate:.0%} ({team_acceptance.up} 👍, {team_acceptance.down} 👎)"
                    if rate is not None
                    else "no votes yet: vote on reports with 👍 / 👎"
                )
            )
        )
    )
    blocks.append(DividerBlock())
    blocks.append(SectionBlock(text=MarkdownTextObject(text="*Your recent runs*")))
    if not runs:
        blocks.append(_note("None yet. Try `/agent analyze branch NAME` in a channel."))
    for item in runs:
        run = item.run
        icon = _RUN_ICON.get(run.status, "")
        title = f"{icon} `{run.id}` *{escape(clip(subject(run), 120))}* in {escape(run.repo)}"
        link = f" · <{item.link}|{item.label}>" if item.link else ""
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"{title}: {run.status}{link}\n{local_time(run.created_at)}"
                )
            )
        )
    blocks.append(DividerBlock())
    blocks.append(SectionBlock(text=MarkdownTextObject(text="*Waiting for your approval*")))
    if not pending:
        blocks.append(_note("Nothing waits for you."))
    room = MAX_VIEW_BLOCKS - len(blocks) - 1
    for proposal, run in pending[: max(0, room // 2)]:
        ref = f"{run.id}/{proposal.pid}"
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"*{ref}*: {escape(clip(proposal.title, 200))} → "
                    f"`{escape(clip(proposal.target, 200))}` (run of {escape(run.target)})"
                )
            )
        )
        blocks.append(
            proposal_buttons(
                run.id,
                proposal.pid,
                proposal.content_sha256,
                lands=(
                    f"It will be posted on {clip(proposal.target, 150)} as comments; it never "
                    "approves."
                    if proposal.kind == "pr_review"
                    else f"It will be written to {clip(proposal.target, 150)} exactly as shown "
                    "(as a pull request, where that branch is protected and there is a code host)."
                ),
            )
        )
    return View(type="home", blocks=blocks[:MAX_VIEW_BLOCKS])


def _note(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def digest_blocks(data: DigestData) -> list[dict[str, object]]:
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="chatops digest")),
        _note(escape(data.period.label(data.tz))),
    ]
    for title, lines in sections(data):
        body = "\n".join(f"• {escape(line)}" for line in lines)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(f"*{title}*\n{body}", 3000))))
    return to_dicts(blocks[:MAX_BLOCKS])
