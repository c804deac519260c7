"""A pull request made ready for the analysis: asked of its host, its head and base fetched
into the local clone (through `agents/context/git.py`, the only code that runs git), and its
number and page put on the report's target."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from agents.context.git import GitRepo, fetch_review_head
from agents.errors import AnalysisInputError
from agents.report import Report
from bot.codehost.port import CodeHost, PullRequest
from bot.codehost.review import review_proposal

log = logging.getLogger(__name__)

_TARGET = re.compile(r"pr/([1-9][0-9]{0,9})")


def target_of(number: int) -> str:
    """A pull request's run target: re-runs of `pr/123` in a repository compare with each
    other, as a branch's do."""
    return f"pr/{number}"


def number_of(target: str) -> int:
    found = _TARGET.fullmatch(target)
    if found is None:
        raise AnalysisInputError(f"{target!r} is not a pull request target (pr/N).")
    return int(found.group(1))


@dataclass(frozen=True)
class PreparedPull:
    pull: PullRequest
    branch: str  # what the analysis resolves: pr/N (refs/remotes/origin/pr/N)
    base: str  # origin/BASE, fetched now
    head_sha: str  # the commit analyzed


def prepare(host: CodeHost, project: str, number: int, path: Path) -> PreparedPull:
    """Ask the host, then fetch. A push between the two is analyzed at what was fetched."""
    pull = host.pull_request(project, number)
    branch, base, sha = fetch_review_head(GitRepo.open(path), pull.fetch_ref, pull.base_ref)
    if sha != pull.head_sha:
        log.info("pull request #%d moved to %s since it was read; analyzing that", number, sha)
    return PreparedPull(pull=pull, branch=branch, base=base, head_sha=sha)


def with_pull(report: Report, pull: PullRequest) -> Report:
    """The report, its target naming the pull request and linking to it."""
    target = report.target.model_copy(update={"pull_request": pull.number, "url": pull.url})
    return report.model_copy(update={"target": target})


def with_review(report: Report, prepared: PreparedPull) -> Report:
    """The report, offering its findings as a review of the pull request (a proposal that
    posts only when approved), when there is something to post or to resolve. A head that
    moved between reading the pull request and fetching it gets no review: its diff's lines
    are not the ones read."""
    if not report.findings and not report.resolved:
        return report
    if prepared.head_sha != prepared.pull.head_sha:
        coverage = report.coverage.model_copy(
            update={
                "not_run": [
                    *report.coverage.not_run,
                    "review not offered: the pull request moved while it was read; run it again",
                ]
            }
        )
        return report.model_copy(update={"coverage": coverage})
    proposal = review_proposal(report, prepared.pull, f"P{len(report.proposals) + 1}")
    return report.model_copy(update={"proposals": [*report.proposals, proposal]})
