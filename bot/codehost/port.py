"""The narrow port every code host implements (GitHub today; GitLab is one more adapter).

Reads: a pull request's head, base, changed files and which of their lines its diff shows.
Writes (the third safety tier, called only by the apply job of an approved proposal): a review
that only comments, edits of the bot's own comments, and a pull request from a branch the bot
pushed. No method merges, approves, requests changes or deletes: an adapter cannot be asked to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agents.errors import AnalysisInputError

Problem = Literal[
    "auth", "forbidden", "not_found", "rate_limited", "unavailable", "config", "refused"
]
Side = Literal["RIGHT", "LEFT"]


class CodeHostError(AnalysisInputError):
    """The code host refused or could not answer: what happened and what to do (a person can
    act on it: a token, a permission, a wait). Surfaces show it like any input error (exit 2 on
    the command line, an ephemeral answer in Slack), never as a traceback."""

    def __init__(self, message: str, hint: str, *, problem: Problem) -> None:
        super().__init__(message, hint)
        self.problem = problem


@dataclass(frozen=True)
class FileLines:
    """The lines of one file a review comment may be on: those of the diff's hunks, added or
    context (RIGHT, the head's numbering) and removed or context (LEFT, the base's). GitHub
    refuses a comment anywhere else (422), so nothing else is ever sent."""

    right: frozenset[int] = frozenset()
    left: frozenset[int] = frozenset()


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
    # path -> its commentable lines; a file the host shows no patch for (binary, too large)
    # has none, so its findings go in the review's summary.
    lines: Mapping[str, FileLines] = field(default_factory=dict)
    head_repo: str = ""  # org/repo the head branch is in: another one for a fork's PR


@dataclass(frozen=True)
class ReviewComment:
    """One inline comment to send, in the line/side form."""

    path: str
    line: int
    side: Side
    body: str


@dataclass(frozen=True)
class HostComment:
    """A review comment as the host has it now."""

    id: int
    body: str
    path: str
    review_id: int | None


@dataclass(frozen=True)
class PostedReview:
    id: int
    url: str


@dataclass(frozen=True)
class OpenedPull:
    number: int
    url: str
    state: str = "open"  # open, closed (merged is closed here)


class CodeHost(Protocol):
    """One host, authenticated by its adapter (the only code that reads its credentials).
    Every method raises `CodeHostError` with what to do."""

    name: str  # github, gitlab, ...

    def pull_request(self, project: str, number: int) -> PullRequest:
        """The pull request, its changed files and their commentable lines."""
        ...

    def post_review(
        self,
        project: str,
        number: int,
        commit: str,
        body: str,
        comments: list[ReviewComment],
    ) -> PostedReview:
        """One review that only comments (never approves, never requests changes); its
        comments are read back with `review_comments` (their `review_id` is its id)."""
        ...

    def update_review(self, project: str, number: int, review_id: int, body: str) -> None:
        """A review's summary, rewritten in place."""
        ...

    def review_comments(self, project: str, number: int) -> list[HostComment]:
        """Every review comment on the pull request, every page of them."""
        ...

    def reviews_marked(self, project: str, number: int, marker: str) -> list[int]:
        """The reviews whose body holds `marker` (finding what a dead worker posted)."""
        ...

    def update_comment(self, project: str, comment_id: int, body: str) -> None:
        """One review comment's text, rewritten in place."""
        ...

    def resolve_thread(self, project: str, number: int, comment_id: int) -> bool:
        """Mark the conversation a comment started resolved; False where the host cannot."""
        ...

    def pull_from(self, project: str, head: str) -> OpenedPull | None:
        """The pull request whose head is branch `head` of `project`, if any (any state)."""
        ...

    def open_pull_request(
        self, project: str, head: str, base: str, title: str, body: str
    ) -> OpenedPull:
        """A pull request from `head` (a branch the bot pushed) into `base`."""
        ...
