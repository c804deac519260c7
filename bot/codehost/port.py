"""The narrow port every code host implements (GitHub today; GitLab is one more adapter).

Reads only, for now: a pull request's head, base and changed files. The writes of the third
safety tier (a review with inline comments, a pull request from the bot's own branch) are
declared in `CodeHostWrites` and implemented next, by the same adapters, called only by the
apply job for an approved proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from agents.errors import AnalysisInputError

Problem = Literal["auth", "forbidden", "not_found", "rate_limited", "unavailable", "config"]


class CodeHostError(AnalysisInputError):
    """The code host refused or could not answer: what happened and what to do (a person can
    act on it: a token, a permission, a wait). Surfaces show it like any input error (exit 2 on
    the command line, an ephemeral answer in Slack), never as a traceback."""

    def __init__(self, message: str, hint: str, *, problem: Problem) -> None:
        super().__init__(message, hint)
        self.problem = problem


@dataclass(frozen=True)
class PullRequest:
    """What the analysis needs of a pull request, in the host's neutral terms."""

    project: str  # org/repo as configured
    number: int
    title: str
    url: str  # the page people open
    state: str  # open, closed (merged is closed here)
    head_sha: str
    head_ref: str  # the branch in the head repository (maybe a fork's)
    base_ref: str  # the branch it asks to be merged into
    base_sha: str
    files: tuple[str, ...]  # changed paths, every page of them (the host's cap applies)
    fetch_ref: str  # the ref the host keeps for the head on its remote: refs/pull/N/head


class CodeHost(Protocol):
    """One host, authenticated by its adapter (the only code that reads its credentials)."""

    name: str  # github, gitlab, ...

    def pull_request(self, project: str, number: int) -> PullRequest:
        """The pull request and its changed files. Raises `CodeHostError`."""
        ...


@dataclass(frozen=True)
class ReviewComment:
    """One inline comment, in the line/side form (item 3; only lines in the PR's diff)."""

    path: str
    line: int
    side: Literal["RIGHT", "LEFT"]
    body: str
    start_line: int | None = None


class CodeHostWrites(Protocol):
    """The third tier's writes (issue #19 items 3 and 4), not implemented yet: a review that
    only comments, and a pull request from a new branch of the bot's own. Never a merge, never
    an approval, never a push to a branch it did not create."""

    def post_review(
        self, project: str, number: int, commit: str, summary: str, comments: list[ReviewComment]
    ) -> str:
        """One review with `event=COMMENT`; the review's URL."""
        ...

    def open_pull_request(
        self, project: str, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """A pull request from `head` (a branch the bot pushed) into `base`."""
        ...
