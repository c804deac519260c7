"""How a proposal reads to the person deciding on it: a review of a pull request as its
comments (not the JSON that is posted), anything else as its exact content."""

from __future__ import annotations

from agents.report import Proposal
from bot.codehost.review import KIND, ReviewDraft


def preview(content: str) -> str:
    """A review proposal as people read it before approving (not its JSON)."""
    try:
        draft = ReviewDraft.model_validate_json(content)
    except ValueError:
        return content
    lines = [
        f"Review on #{draft.number}: {len(draft.comments)} inline comment(s), "
        f"{len(draft.elsewhere)} finding(s) in the summary; it only comments."
    ]
    for comment in draft.comments:
        first = comment.body.split("\n", 1)[0]
        lines.append(f"{comment.path}:{comment.line}  {first}")
    return "\n".join(lines)


def readable(proposal: Proposal) -> str:
    """A proposal's content as the surfaces show it: a review's preview, else the content."""
    return preview(proposal.content) if proposal.kind is KIND else proposal.content
