"""Apply an approved change as a pull request: its commit pushed to a new branch of the bot's
own (`chatops/<run>-<proposal>`, compare-and-swap against "no such branch", so an existing
branch is never written), and one pull request from it into the target. People review and
merge it on the code host; the bot never merges, approves or pushes to it again."""

from __future__ import annotations

from dataclasses import replace

from agents.errors import GitFailure
from agents.report import Report
from bot.codehost.port import CodeHost, CodeHostError
from bot.codehost.review import code, md, where
from bot.writes.git import WriteRequest, WriteResult, apply_proposal, remote_head

FINDINGS_LISTED = 30


def bot_branch(run_id: str, pid: str) -> str:
    return f"chatops/{run_id}-{pid.lower()}"


def proposal_marker(ref: str) -> str:
    return f"<!-- chatops:proposal {ref} -->"


def open_as_pull_request(
    host: CodeHost, project: str, request: WriteRequest, base: str, body: str
) -> WriteResult:
    """Push `request` as a new branch, then open (or find, after a crash) its pull request."""
    try:  # asked first: a clone without the remote, or a name someone took, says so plainly
        taken = remote_head(request.repo, request.branch)
    except GitFailure as exc:
        return WriteResult(
            "failed",
            f"{exc}. The bot pushes its branch to the clone's `origin`: make that the GitHub "
            "repository, reachable with the clone's own credentials; nothing was written",
        )
    if taken is not None:
        return WriteResult(
            "failed",
            f"branch {request.branch} already exists on the remote; a new branch is never an "
            "existing one, nothing written",
        )
    pushed = apply_proposal(replace(request, create=True, remote=True))
    if pushed.outcome != "applied":
        return pushed
    return pull_request_for(host, project, request.branch, base, request.title, body, pushed.commit)


def pull_request_for(
    host: CodeHost,
    project: str,
    branch: str,
    base: str,
    title: str,
    body: str,
    commit: str | None,
) -> WriteResult:
    """The pull request from the bot's pushed `branch`: the one already open from it, or a
    new one. One branch, one pull request, however often this is called."""
    short = commit[:10] if commit else "its commit"
    try:
        found = host.pull_from(project, branch)
        try:
            opened = found or host.open_pull_request(project, branch, base, title, body)
        except CodeHostError as exc:
            # A 5xx is not sent again (the adapter never repeats a write): GitHub may have
            # opened it all the same, so it is looked for once before saying it was not.
            found = host.pull_from(project, branch) if exc.problem == "unavailable" else None
            if found is None:
                raise
            opened = found
    except CodeHostError as exc:
        return WriteResult(
            "failed",
            f"pushed {short} to the new branch {branch}, but no pull request was opened: "
            f"{exc.message} {exc.hint} Open one from {branch} into {base}, or delete the branch.",
            commit,
        )
    verb = "found" if found else "opened"
    waits = (
        "it waits for people's review there"
        if opened.state == "open"
        else f"it is {opened.state or 'not open'} already"
    )
    return WriteResult(
        "applied",
        f"{verb} pull request #{opened.number} from {branch} into {base} ({opened.url}); {waits}",
        commit,
    )


def description(
    report: Report | None,
    *,
    ref: str,
    title: str,
    agent: str,
    requester: str,
    approver: str,
    content_sha256: str,
) -> str:
    """The pull request's description: what it is, who asked and who approved, and the
    findings of the run that proposed it."""
    lines = [
        md(title, 250),
        "",
        f"Proposed by chatops (agent `{code(agent, 40)}`, proposal `{ref}`), requested by "
        f"{md(requester, 64)}, approved by {md(approver, 64)}. The change is exactly the "
        f"approved proposal (content sha256 `{content_sha256[:16]}`).",
        "",
        "This pull request is the review: chatops never merges it, never approves it and "
        "never pushes to its branch again.",
    ]
    if report is not None and report.findings:
        lines += ["", f"### Findings of run `{report.run_id}` ({md(report.verdict(), 60)})"]
        for finding in report.findings[:FINDINGS_LISTED]:
            lines.append(
                f"- **{finding.severity.value}** {md(finding.title, 200)} · "
                f"`{code(where(finding))}`"
            )
        more = len(report.findings) - FINDINGS_LISTED
        if more > 0:
            lines.append(f"- …and {more} more in the run's report")
    lines += ["", proposal_marker(ref)]
    return "\n".join(lines)
