"""A report made into a pull request review the bot may post once a person approves it: the
proposal's content (`ReviewDraft`, JSON, its hash checked at apply time), the comments' and the
summary's text, and the markers that let a later run find what the bot posted.

Only a finding on a line of the pull request's diff gets an inline comment (on the line the
code host allows, `FileLines`); every other finding is listed in the summary. The review only
comments: nothing here can approve or request changes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from agents.report import Finding, Proposal, ProposalKind, Report, Severity, sha256_hex
from bot.codehost.port import FileLines, PullRequest

KIND = ProposalKind.pr_review
INLINE_LIMIT = 25  # more inline comments than this is noise: the rest go in the summary
# An inline comment notifies and asks for an answer; a low or informational finding ("no test
# for this new function") is listed in the summary instead.
INLINE_AT_LEAST = Severity.medium
_DETAIL_CHARS = 1200
_SPECIALS = re.compile(r"([\\`*_{}\[\]<>#|!~])")


class DraftComment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    path: str
    line: int
    side: str = "RIGHT"
    body: str


class ReviewDraft(BaseModel):
    """What approving posts: a summary and the inline comments, for one head of one PR."""

    model_config = ConfigDict(extra="forbid")

    project: str
    number: int
    url: str
    head_sha: str
    run_id: str
    summary: str
    comments: list[DraftComment]
    elsewhere: list[str]  # fingerprints of the findings listed in the summary only
    findings: list[str]  # every finding's fingerprint: a comment whose finding is not here is gone
    # Every part of the analysis ran: only then is a finding missing from it gone (a part that
    # did not run found nothing, which resolves nothing).
    complete: bool = True


def review_marker(ref: str) -> str:
    """In the summary review's body: which proposal posted it (RUN/P1)."""
    return f"<!-- chatops:review {ref} -->"


def addendum_marker(ref: str) -> str:
    """In a later review of only new findings: posted before the rest of its apply is done."""
    return f"<!-- chatops:addendum {ref} -->"


def finding_marker(fingerprint: str) -> str:
    return f"<!-- chatops:finding {fingerprint} -->"


def md(text: str, limit: int = 300) -> str:
    """Untrusted text (a finding's title, the model's words) made inert in GitHub's Markdown:
    no HTML, no formatting, and no @mention that would notify someone."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _SPECIALS.sub(r"\\\1", text).replace("@", "@\u200b")


def code(text: str, limit: int = 200) -> str:
    """Text for inside a code span, where Markdown's escapes do not apply: no backticks."""
    text = " ".join(text.replace("`", "'").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def where(finding: Finding) -> str:
    if not finding.file:
        return "the change as a whole"
    return f"{finding.file}:{finding.start_line}" if finding.start_line else finding.file


def comment_body(finding: Finding, run_id: str) -> str:
    source = finding.rule or finding.source.value
    parts = [f"**{finding.severity.value}** · {md(finding.title)} ({md(source, 60)})"]
    if finding.detail:
        parts.append(md(finding.detail, _DETAIL_CHARS))
    if finding.suggestion:
        parts.append(f"Suggestion: {md(finding.suggestion, _DETAIL_CHARS)}")
    parts.append(f"<sub>chatops · run {run_id}</sub>\n{finding_marker(finding.fingerprint)}")
    return "\n\n".join(parts)


def line_for(finding: Finding, lines: Mapping[str, FileLines]) -> int | None:
    """The first line of the finding's range that the diff shows on the head's side."""
    if not finding.file or finding.start_line is None:
        return None
    shown = lines.get(finding.file)
    if shown is None:
        return None
    last = max(finding.end_line or finding.start_line, finding.start_line)
    for line in range(finding.start_line, min(last, finding.start_line + 200) + 1):
        if line in shown.right:
            return line
    return None


def draft_review(report: Report, pull: PullRequest) -> ReviewDraft:
    ordered = sorted(
        report.findings, key=lambda f: (-f.severity.rank, f.file or "", f.start_line or 0)
    )
    comments: list[DraftComment] = []
    elsewhere: list[Finding] = []
    for finding in ordered:
        inline = len(comments) < INLINE_LIMIT and finding.severity.at_least(INLINE_AT_LEAST)
        line = line_for(finding, pull.lines) if inline else None
        if line is None or finding.file is None:
            elsewhere.append(finding)
            continue
        comments.append(
            DraftComment(
                fingerprint=finding.fingerprint,
                path=finding.file,
                line=line,
                body=comment_body(finding, report.run_id),
            )
        )
    return ReviewDraft(
        project=pull.project,
        number=pull.number,
        url=pull.url,
        head_sha=report.target.head_sha,
        run_id=report.run_id,
        summary=summary_body(report, len(comments), elsewhere),
        comments=comments,
        elsewhere=[f.fingerprint for f in elsewhere],
        findings=[f.fingerprint for f in report.findings],
        complete=report.complete and not report.coverage.not_run,
    )


def summary_body(report: Report, inline: int, elsewhere: list[Finding]) -> str:
    head = report.target.head_sha[:10]
    lines = [
        f"**chatops review** of `{head}` (run `{report.run_id}`): risk "
        f"{md(report.verdict(), 60)}, {len(report.findings)} finding(s), {inline} inline.",
    ]
    if not report.complete or report.coverage.not_run:
        lines.append("")
        lines.append(
            "**Partial:** "
            + md("; ".join(report.coverage.not_run) or "an agent did not finish", 600)
        )
    if elsewhere:
        lines += ["", "Not commented inline (low severity, or not on a line of this diff):"]
        for finding in elsewhere[:40]:
            lines.append(
                f"- **{finding.severity.value}** {md(finding.title, 200)} · "
                f"`{code(where(finding))}`"
            )
        if len(elsewhere) > 40:
            lines.append(f"- …and {len(elsewhere) - 40} more in the report")
    lines += ["", "_This review only comments; people approve the pull request._"]
    return "\n".join(lines)


def review_proposal(report: Report, pull: PullRequest, pid: str) -> Proposal:
    draft = draft_review(report, pull)
    content = draft.model_dump_json(indent=1)
    return Proposal(
        id=pid,
        kind=KIND,
        agent="review",
        title=f"Post this review on pull request #{pull.number}",
        target=f"pr/{pull.number}",
        base_sha=draft.head_sha,
        content=content,
        content_sha256=sha256_hex(content),
    )


def resolved_body(body: str, head_sha: str, run_id: str) -> str:
    """A comment whose finding is gone, kept with what it said and its marker."""
    said, _, marker = body.rpartition("\n<!-- chatops:finding ")
    return (
        f"**Resolved** at `{head_sha[:10]}` (run `{run_id}`): this finding is no longer "
        f"reported.\n\n<details><summary>What it said</summary>\n\n{said.strip()}\n\n</details>"
        f"\n<!-- chatops:finding {marker}"
    )
