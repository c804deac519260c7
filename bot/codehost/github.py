"""The GitHub adapter (github.com and GitHub Enterprise Server): the `CodeHost` port over
githubkit. The only module that reads `GITHUB_TOKEN` or the GitHub App's key.

Why githubkit rather than PyGithub:
- typing: every endpoint is a typed method generated from GitHub's OpenAPI description, its
  parameters and (for the smaller objects, as the files of a pull request) its answers as
  pydantic models; mypy strict checks the calls. PyGithub's objects are hand-written and
  lazily completed by further requests, which hides the request count.
- sync and async from one client (the worker is sync today; Slack's ASGI side may not be).
- rate limits: it raises `PrimaryRateLimitExceeded` / `SecondaryRateLimitExceeded` with the
  wait read from `retry-after` or `x-ratelimit-reset`, as GitHub's documentation says to, and
  its retry decision is a function we give it (`_retry` below: a short wait is waited once, a
  long one is said to the person, never slept through in a worker or a CI job).
- Enterprise: `base_url` (https://HOST/api/v3), and `GITHUB_API_URL` points the tests at the
  fake on 127.0.0.1.
- App auth: `AppAuthStrategy(app_id, private_key).as_installation(id)` mints and refreshes
  installation tokens itself (PyJWT), the installation found per repository.
- pagination follows the `Link: rel="next"` header (`rest.paginate`).

The pull request itself is read as JSON into a small model of the fields used here: the full
generated model requires every field of every nested user and repository object, which would
make the adapter fail on a field an Enterprise version leaves out.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.codehost.lines import lines_of_patch
from bot.codehost.port import (
    CodeHost,
    CodeHostError,
    HostComment,
    OpenedPull,
    PostedReview,
    PullRequest,
    ReviewComment,
)
from bot.settings import Settings

log = logging.getLogger(__name__)

_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
# A wait longer than this is not slept through: the person is told when to try again.
MAX_WAIT_S = 10.0
PER_PAGE = 100  # the most GitHub gives a page
READ, WRITE = "reading", "writing"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})

_THREADS = """
query($owner: String!, $repo: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $repo) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { id isResolved comments(first: 1) { nodes { databaseId } } }
      }
    }
  }
}
"""
_RESOLVE = """
mutation($thread: ID!) {
  resolveReviewThread(input: {threadId: $thread}) { thread { id isResolved } }
}
"""


def valid_project(project: str) -> bool:
    return bool(_PROJECT.fullmatch(project)) and ".." not in project


def _split(project: str) -> tuple[str, str]:
    if not valid_project(project):
        raise CodeHostError(
            f"{project[:100]!r} is not a GitHub repository (OWNER/NAME).",
            'Write it as github = "org/repo" in the policy file.',
            problem="config",
        )
    owner, repo = project.split("/", 1)
    return owner, repo


def _items(response: Any) -> list[dict[str, Any]]:
    """A page as plain JSON: the generated models require every field of every nested object,
    which an Enterprise version may leave out; the few fields used here are read by name."""
    items = response.json()
    return items if isinstance(items, list) else []


def _comment(entry: dict[str, Any]) -> HostComment:
    review = entry.get("pull_request_review_id")
    return HostComment(
        id=int(entry["id"]),
        body=str(entry.get("body") or ""),
        path=str(entry.get("path") or ""),
        review_id=int(review) if review is not None else None,
    )


def _thread_of(github: Any, owner: str, repo: str, number: int, comment_id: int) -> str | None:
    """The id of the unresolved conversation whose first comment is `comment_id`."""
    after: str | None = None
    while True:
        data = github.graphql.request(
            _THREADS, {"owner": owner, "repo": repo, "number": number, "after": after}
        )
        threads = data["repository"]["pullRequest"]["reviewThreads"]
        for node in threads["nodes"]:
            first = node["comments"]["nodes"]
            if first and first[0].get("databaseId") == comment_id:
                return None if node["isResolved"] else str(node["id"])
        if not threads["pageInfo"]["hasNextPage"]:
            return None
        after = threads["pageInfo"]["endCursor"]


class _Repo(BaseModel):
    full_name: str = ""


class _Ref(BaseModel):
    ref: str
    sha: str
    repo: _Repo | None = None  # null when a fork's repository was deleted


class _Pull(BaseModel):
    number: int
    title: str = ""
    html_url: str
    state: str
    head: _Ref
    base: _Ref


@dataclass(frozen=True)
class GitHubCredentials:
    """A token, or a GitHub App's id and private key (PEM), and the API's URL."""

    api_url: str | None = None
    token: str | None = None
    app_id: str | None = None
    private_key: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubCredentials:
        key = settings.github_app_private_key
        key_text: str | None
        if key is None and settings.github_app_private_key_file is not None:
            try:
                key_text = settings.github_app_private_key_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise CodeHostError(
                    f"Cannot read GITHUB_APP_PRIVATE_KEY_FILE: {exc.strerror}.",
                    "Point it at the App's private key (.pem), readable by the bot.",
                    problem="config",
                ) from None
        else:
            key_text = key.get_secret_value() if key is not None else None
        return cls(
            api_url=settings.github_api_url,
            token=settings.github_token.get_secret_value() if settings.github_token else None,
            app_id=settings.github_app_id,
            private_key=key_text,
        )


class GitHub:
    """`CodeHost` for one GitHub (its API URL), authenticated by a token or as an App."""

    name = "github"

    def __init__(self, credentials: GitHubCredentials) -> None:
        self.credentials = credentials
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.api_url = (credentials.api_url or "https://api.github.com").rstrip("/")
        if not credentials.token and not (credentials.app_id and credentials.private_key):
            raise CodeHostError(
                "GitHub is not configured: no GITHUB_TOKEN, and no GitHub App.",
                "Set GITHUB_TOKEN (pull requests: read, contents: read), or GITHUB_APP_ID and "
                "GITHUB_APP_PRIVATE_KEY; see docs/github.md.",
                problem="config",
            )

    # -- the port: reads -------------------------------------------------------------------

    def pull_request(self, project: str, number: int) -> PullRequest:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        what = f"pull request #{number} of {project}"
        with self._errors(what, project):
            answer = github.rest.pulls.get(owner, repo, number)
            try:
                pull = _Pull.model_validate(answer.json())
            except ValidationError:
                raise CodeHostError(
                    f"GitHub's answer for {what} is not a pull request.",
                    "Check GITHUB_API_URL: it should be the REST API's root.",
                    problem="unavailable",
                ) from None
            entries = list(
                github.rest.paginate(
                    github.rest.pulls.list_files,
                    owner=owner,
                    repo=repo,
                    pull_number=number,
                    per_page=PER_PAGE,
                    map_func=_items,
                )
            )
        return PullRequest(
            project=project,
            number=pull.number,
            title=pull.title,
            url=pull.html_url,
            state=pull.state,
            head_sha=pull.head.sha,
            head_ref=pull.head.ref,
            base_ref=pull.base.ref,
            base_sha=pull.base.sha,
            files=tuple(str(entry["filename"]) for entry in entries),
            fetch_ref=f"refs/pull/{pull.number}/head",
            head_repo=pull.head.repo.full_name if pull.head.repo else "",
            lines={
                str(entry["filename"]): lines_of_patch(entry.get("patch"))
                for entry in entries
                if entry.get("status") != "removed"
            },
        )

    def review_comments(self, project: str, number: int) -> list[HostComment]:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"the review comments of pull request #{number}", project):
            return [
                _comment(entry)
                for entry in github.rest.paginate(
                    github.rest.pulls.list_review_comments,
                    owner=owner,
                    repo=repo,
                    pull_number=number,
                    per_page=PER_PAGE,
                    map_func=_items,
                )
            ]

    def reviews_marked(self, project: str, number: int, marker: str) -> list[int]:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"the reviews of pull request #{number}", project):
            return [
                int(entry["id"])
                for entry in github.rest.paginate(
                    github.rest.pulls.list_reviews,
                    owner=owner,
                    repo=repo,
                    pull_number=number,
                    per_page=PER_PAGE,
                    map_func=_items,
                )
                if marker in str(entry.get("body") or "")
            ]

    def pull_from(self, project: str, head: str) -> OpenedPull | None:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"the pull requests from {head}", project):
            answer = github.rest.pulls.list(
                owner, repo, head=f"{owner}:{head}", state="all", per_page=PER_PAGE
            )
            for entry in answer.json():
                if entry.get("head", {}).get("ref") == head:
                    return OpenedPull(
                        int(entry["number"]), str(entry["html_url"]), str(entry.get("state", ""))
                    )
        return None

    # -- the port: writes (an approved proposal's apply job only) ---------------------------

    def post_review(
        self,
        project: str,
        number: int,
        commit: str,
        body: str,
        comments: list[ReviewComment],
    ) -> PostedReview:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"a review on pull request #{number} of {project}", project, WRITE):
            answer = github.rest.pulls.create_review(
                owner,
                repo,
                number,
                data={
                    "commit_id": commit,
                    "body": body,
                    "event": "COMMENT",  # never APPROVE, never REQUEST_CHANGES
                    "comments": [
                        {"path": c.path, "line": c.line, "side": c.side, "body": c.body}
                        for c in comments
                    ],
                },
            )
            review = answer.json()
            # The id first: whatever happens next, the review is there and can be found.
            return PostedReview(int(review["id"]), str(review.get("html_url") or ""))

    def update_review(self, project: str, number: int, review_id: int, body: str) -> None:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"the bot's review on pull request #{number}", project, WRITE):
            github.rest.pulls.update_review(owner, repo, number, review_id, data={"body": body})

    def update_comment(self, project: str, comment_id: int, body: str) -> None:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"the bot's review comment {comment_id}", project, WRITE):
            github.rest.pulls.update_review_comment(owner, repo, comment_id, data={"body": body})

    def resolve_thread(self, project: str, number: int, comment_id: int) -> bool:
        """REST cannot resolve a conversation; GraphQL can (`resolveReviewThread`). A token
        that may not is logged and answered False: the comment's text says it is resolved."""
        from githubkit.exception import GraphQLFailed

        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"the conversations of pull request #{number}", project, WRITE):
            try:
                thread = _thread_of(github, owner, repo, number, comment_id)
                if thread is None:
                    return False
                github.graphql.request(_RESOLVE, {"thread": thread})
            except GraphQLFailed as exc:
                log.warning("could not resolve the conversation of comment %d: %s", comment_id, exc)
                return False
        return True

    def open_pull_request(
        self, project: str, head: str, base: str, title: str, body: str
    ) -> OpenedPull:
        owner, repo = _split(project)
        github = self._client(owner, repo)
        with self._errors(f"a pull request from {head} into {base}", project, WRITE):
            answer = github.rest.pulls.create(
                owner, repo, data={"title": title, "head": head, "base": base, "body": body}
            )
            made = answer.json()
        return OpenedPull(int(made["number"]), str(made["html_url"]))

    # -- the client -------------------------------------------------------------------------

    def _client(self, owner: str, repo: str) -> Any:
        """One client per repository, kept: an App's installation is looked up once, and its
        token is refreshed by githubkit when it expires."""
        key = f"{owner}/{repo}".lower()
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._new_client(owner, repo)
            return self._clients[key]

    def _new_client(self, owner: str, repo: str) -> Any:
        from githubkit import AppAuthStrategy
        from githubkit import GitHub as Client

        options: dict[str, Any] = {
            "base_url": self.api_url,
            "auto_retry": _retry,
            "http_cache": False,  # a fresh head every time; the store keeps what matters
            "timeout": 30.0,
            "user_agent": "chatops-bot",
        }
        if self.credentials.token:
            return Client(self.credentials.token, **options)
        assert self.credentials.app_id and self.credentials.private_key
        app = AppAuthStrategy(self.credentials.app_id, self.credentials.private_key)
        with self._errors(f"the GitHub App's installation on {owner}/{repo}", f"{owner}/{repo}"):
            # Held in a name: githubkit's namespaces refer to their client weakly.
            as_app = Client(app, **options)
            installation = as_app.rest.apps.get_repo_installation(owner, repo)
            installation_id = int(installation.json()["id"])
        return Client(app.as_installation(installation_id), **options)

    def _errors(self, what: str, project: str, doing: str = READ) -> _Translated:
        return _Translated(what, project, self.api_url, doing, app=not self.credentials.token)


def _retry(exc: Exception, count: int) -> Any:
    """githubkit's retry decision: a rate limit with a short wait is waited once; a server
    error (5xx) on a read is tried twice more; anything else is raised at once. A write is
    never sent again after a 5xx: GitHub may have made the review or the pull request anyway,
    and the caller looks for it instead of making a second one."""
    from githubkit.exception import RateLimitExceeded, RequestFailed
    from githubkit.retry import RetryOption

    if isinstance(exc, RateLimitExceeded):
        if count < 1 and exc.retry_after.total_seconds() <= MAX_WAIT_S:
            log.warning("GitHub rate limit: waiting %s before one retry", exc.retry_after)
            return RetryOption(True, exc.retry_after)
        return RetryOption(False)
    if (
        isinstance(exc, RequestFailed)
        and exc.response.status_code >= 500
        and exc.response.raw_request.method in IDEMPOTENT
        and count < 2
    ):
        return RetryOption(True, timedelta(seconds=0.5 * (count + 1)))
    return RetryOption(False)


class _Translated:
    """Turns githubkit's exceptions into `CodeHostError`s a person can act on."""

    def __init__(self, what: str, project: str, api_url: str, doing: str, *, app: bool) -> None:
        self.app = app  # authenticated as a GitHub App, not by a token
        self.what = what
        self.project = project
        self.api_url = api_url
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, CodeHostError):
            return
        if isinstance(exc, KeyError | TypeError | ValueError) and not _githubkit(exc):
            log.warning("GitHub's answer %s %s was not as expected: %r", self.doing, self.what, exc)
            raise CodeHostError(
                f"GitHub's answer {self.doing} {self.what} was not what the bot expected.",
                "Check GITHUB_API_URL (the REST API's root); if it is right, look on the pull "
                "request for what was written.",
                problem="unavailable",
            ) from None
        translated = self._translate(exc)
        if translated is not None:
            raise translated from None

    def _translate(self, exc: BaseException) -> CodeHostError | None:
        from githubkit.exception import (
            AuthCredentialError,
            PrimaryRateLimitExceeded,
            RateLimitExceeded,
            RequestError,
            RequestFailed,
        )

        if isinstance(exc, RateLimitExceeded):
            wait = max(1, int(exc.retry_after.total_seconds()))
            if isinstance(exc, PrimaryRateLimitExceeded):
                until = (datetime.now(UTC) + exc.retry_after).strftime("%H:%M UTC")
                return CodeHostError(
                    f"GitHub's rate limit for this token is used up ({self.doing} {self.what}).",
                    f"Try again after {until} (in {_duration(wait)}), or use a GitHub App, "
                    "whose limit is higher.",
                    problem="rate_limited",
                )
            return CodeHostError(
                "GitHub asked the bot to slow down (a secondary rate limit, "
                f"{self.doing} {self.what}).",
                f"Try again in {_duration(wait)}.",
                problem="rate_limited",
            )
        if isinstance(exc, RequestFailed):
            status = exc.response.status_code
            needs = (
                "pull requests: write (and contents: write, to push the bot's branch)"
                if self.doing == WRITE
                else "pull requests: read and contents: read"
            )
            if status == 401:
                return CodeHostError(
                    f"GitHub refused the bot's credentials (401) {self.doing} {self.what}.",
                    "GITHUB_APP_ID or the App's private key is wrong (or the key was revoked): "
                    "check them against the App's settings page (see docs/github.md)."
                    if self.app
                    else "GITHUB_TOKEN is wrong, expired or revoked: make a new one (see "
                    "docs/github.md) and restart the bot.",
                    problem="auth",
                )
            if status == 404:
                return CodeHostError(
                    f"GitHub has no {self.what} that the bot can see (404).",
                    f"Check the number; if {self.project} is private, give the bot's token "
                    f"access to it ({needs}; see docs/github.md).",
                    problem="not_found",
                )
            if status == 403:
                return CodeHostError(
                    f"GitHub denied the bot {self.doing} {self.what} (403).",
                    f"The token lacks a permission: {needs} (see docs/github.md); an "
                    "organization may also need to approve it.",
                    problem="forbidden",
                )
            if status == 422:
                return CodeHostError(
                    f"GitHub refused {self.what} (422: {_validation(exc)}).",
                    "Nothing was written by that request; run the analysis again, then approve "
                    "its proposal.",
                    problem="refused",
                )
            return CodeHostError(
                f"GitHub answered {status} {self.doing} {self.what}.",
                "Try again later; if it persists, check GitHub's status page.",
                problem="unavailable",
            )
        if isinstance(exc, AuthCredentialError):
            return CodeHostError(
                f"The GitHub App's credentials cannot be used: {exc}.",
                "Check GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY.",
                problem="config",
            )
        if isinstance(exc, RequestError):
            return CodeHostError(
                f"Cannot reach GitHub at {self.api_url} ({type(exc.exc).__name__}).",
                "Check GITHUB_API_URL and the network, then try again.",
                problem="unavailable",
            )
        return None


def _githubkit(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("githubkit")


def _validation(exc: Any) -> str:
    """GitHub's reason for a 422: its message and each error's text, as it sends them."""
    try:
        answer = exc.response.json()
    except ValueError:
        return "no reason given"
    reasons = [str(answer.get("message") or "Unprocessable Entity")]
    for error in answer.get("errors") or []:
        reasons.append(
            str(error.get("message") or error) if isinstance(error, dict) else str(error)
        )
    return "; ".join(reasons)[:300]


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def from_settings(settings: Settings) -> CodeHost:
    """The registry's factory (typed as the port, so mypy checks the adapter implements it)."""
    return GitHub(GitHubCredentials.from_settings(settings))
