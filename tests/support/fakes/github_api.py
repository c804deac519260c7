"""A fake GitHub REST API on 127.0.0.1 that answers like GitHub where it matters, over a real
bare git repository per project (the remote the bot fetches from).

- auth: `Authorization: token X` or `Bearer X`; an unknown token is 401 `Bad credentials`.
- a private repository the token cannot see is 404 `Not Found` (GitHub never says 403 there,
  so as not to tell that it exists).
- every answer carries `x-ratelimit-limit/-remaining/-used/-reset/-resource`; the limit used
  up is 403 with `x-ratelimit-remaining: 0` and GitHub's message; a secondary limit on demand is
  429 (or 403) with `retry-after` and "You have exceeded a secondary rate limit".
- pagination: `per_page` (default 30, at most `max_per_page`, 100 as GitHub's) and `page`, with
  a `Link` header (`next`, `last`, `first`, `prev`) of absolute URLs.
- pulls: `GET /repos/O/R/pulls/N` (head and base from the bare repository: `refs/pull/N/head`
  follows the head branch, as GitHub keeps it) and `GET /repos/O/R/pulls/N/files` (the diff
  from the merge-base, GitHub's `DiffEntry` fields with each file's `patch`).
- a GitHub App (`app(app_id, public_key_pem)`): `GET /repos/O/R/installation` and
  `POST /app/installations/ID/access_tokens` take the App's JWT (RS256, its `iss` the App's
  id, not expired; else 401 "A JSON web token could not be decoded"), and the installation
  token they mint works as a token does.
- writes need a token in `writers` (else 403 "Resource not accessible by personal access
  token", as for a fine-grained token without pull requests: write):
  - reviews: `POST .../pulls/N/reviews` is all or nothing: one comment on a line outside the
    diff's hunks (or on a file the diff does not show) is 422 "Line could not be resolved" and
    nothing is kept; `GET .../reviews`, `PUT .../reviews/ID` (its body),
    `GET .../reviews/ID/comments`, `GET .../pulls/N/comments`, `PATCH .../pulls/comments/ID`.
  - `POST /graphql`: `reviewThreads` of a pull request and `resolveReviewThread`.
  - `GET .../pulls?head=OWNER:BRANCH` and `POST .../pulls` (head must be a branch of the bare
    repository, 422 otherwise; one open pull request per head, 422 "A pull request already
    exists for OWNER:BRANCH."). Nothing merges, ever.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from tests.support.fakes.loopback import LoopbackServer, send_json

TOKEN = "ghp_fake_token_for_tests"
READ_ONLY_TOKEN = "github_pat_fake_read_only"  # sees everything, may write nothing
DOCS = "https://docs.github.com/rest"
_STATUS = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied"}


@dataclass
class FakePull:
    number: int
    head: str  # the head branch in the project's bare repository
    base: str = "main"
    title: str = "A change"
    state: str = "open"
    body: str = ""
    opened_by: str = "dev"  # "api": opened through the API (by the bot)


@dataclass
class FakeReview:
    id: int
    number: int
    body: str
    event: str
    commit_id: str


@dataclass
class FakeComment:
    id: int
    number: int
    review_id: int
    path: str
    line: int
    side: str
    body: str
    commit_id: str
    resolved: bool = False


@dataclass
class FakeProject:
    full_name: str
    bare: Path  # a real bare repository: the remote
    private: bool = False
    readers: set[str] = field(default_factory=set)  # tokens that see it when private
    pulls: dict[int, FakePull] = field(default_factory=dict)
    reviews: dict[int, FakeReview] = field(default_factory=dict)
    comments: dict[int, FakeComment] = field(default_factory=dict)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


class FakeGitHub(LoopbackServer):
    def __init__(self) -> None:
        self.tokens: set[str] = {TOKEN, READ_ONLY_TOKEN}
        self.writers: set[str] = {TOKEN}
        self.refused: list[dict[str, Any]] = []  # the bodies of writes answered 422
        self.app_id: str | None = None
        self.app_key: str | None = None  # the App's public key (PEM)
        self.installation_tokens: list[str] = []
        self._ids = 1000
        self.projects: dict[str, FakeProject] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, query
        self.rate_limit = 5000
        self.used = 0
        self.reset_at = int(time.time()) + 3600
        self.secondary_next = 0  # the next N requests hit a secondary limit
        self.secondary_methods: set[str] | None = None  # only these do (None: every method)
        self.made_then_502 = 0  # the next N writes are done, then answered 502 (as GitHub can)
        self.latency_s = 0.0  # every answer this late (requests in flight overlap)
        self.graphql_refused = False  # GraphQL answers as for a token without the permission
        self.secondary_status = 429
        self.secondary_retry_after = 60
        self.max_per_page = 100
        self._lock = threading.Lock()
        super().__init__(self._handler())

    # -- the tests' side ------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.url

    def add_project(
        self,
        full_name: str,
        bare: Path,
        *,
        private: bool = False,
        readers: frozenset[str] = frozenset(),
    ) -> FakeProject:
        project = FakeProject(full_name, bare, private=private, readers=set(readers))
        self.projects[full_name] = project
        return project

    def open_pull(self, full_name: str, number: int, head: str, base: str = "main") -> FakePull:
        pull = FakePull(number=number, head=head, base=base)
        self.projects[full_name].pulls[number] = pull
        self._sync(self.projects[full_name], pull)
        return pull

    def _sync(self, project: FakeProject, pull: FakePull) -> None:
        """GitHub keeps refs/pull/N/head at the head branch's commit."""
        sha = _git(project.bare, "rev-parse", f"refs/heads/{pull.head}").strip()
        _git(project.bare, "update-ref", f"refs/pull/{pull.number}/head", sha)

    def app(self, app_id: str, public_key_pem: str) -> None:
        """Install a GitHub App on every project: its JWTs are checked with this key."""
        self.app_id, self.app_key = app_id, public_key_pem

    def _app_answer(
        self, method: str, parts: list[str], token: str
    ) -> tuple[int, Any, dict[str, str]] | None:
        """The App's two endpoints, or None for any other path."""
        installation = (
            method == "GET"
            and len(parts) == 4
            and parts[0] == "repos"
            and parts[3] == "installation"
        )
        minting = (
            method == "POST"
            and len(parts) == 4
            and parts[:2] == ["app", "installations"]
            and parts[3] == "access_tokens"
        )
        if not installation and not minting:
            return None
        import jwt

        try:
            assert self.app_key is not None
            claims = jwt.decode(token, self.app_key, algorithms=["RS256"])
            assert str(claims["iss"]) == self.app_id
        except Exception:
            return 401, _error("A JSON web token could not be decoded", "401"), {}
        if installation:
            if f"{parts[1]}/{parts[2]}" not in self.projects:
                return 404, _error("Not Found", "404"), {}
            return (
                200,
                {"id": 42, "app_id": int(self.app_id or 0), "account": {"login": parts[1]}},
                {},
            )
        minted = f"ghs_installation_{len(self.installation_tokens) + 1}"
        self.installation_tokens.append(minted)
        self.tokens.add(minted)
        self.writers.add(minted)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return 201, {"token": minted, "expires_at": expires, "permissions": {}}, {}

    def reviews(self, full_name: str) -> list[FakeReview]:
        return list(self.projects[full_name].reviews.values())

    def comments(self, full_name: str) -> list[FakeComment]:
        return list(self.projects[full_name].comments.values())

    def opened(self, full_name: str) -> list[FakePull]:
        """The pull requests opened through the API (by the bot)."""
        return [p for p in self.projects[full_name].pulls.values() if p.opened_by == "api"]

    def paths(self, suffix: str = "") -> list[str]:
        return [path for _, path, _ in self.requests if path.endswith(suffix)]

    # -- the server's side ------------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - self.used)),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset_at),
            "x-ratelimit-resource": "core",
        }

    def _answer(
        self, method: str, url: str, authorization: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        with self._lock:
            self.requests.append((method, parsed.path, query))
            token = authorization.split(" ", 1)[1] if " " in authorization else ""
            if self.app_key is not None:
                app = self._app_answer(method, parsed.path.strip("/").split("/"), token)
                if app is not None:
                    return app
            if token not in self.tokens:
                return 401, _error("Bad credentials", "401"), self._rate_headers()
            if self.secondary_next > 0 and (
                self.secondary_methods is None or method in self.secondary_methods
            ):
                self.secondary_next -= 1
                return (
                    self.secondary_status,
                    _error(
                        "You have exceeded a secondary rate limit. Please wait a few minutes "
                        "before you try again.",
                        str(self.secondary_status),
                    ),
                    {**self._rate_headers(), "retry-after": str(self.secondary_retry_after)},
                )
            if self.used >= self.rate_limit:
                return (
                    403,
                    _error("API rate limit exceeded for user ID 1.", "403"),
                    self._rate_headers(),
                )
            self.used += 1
            headers = self._rate_headers()
            if parsed.path == "/graphql" and method == "POST":
                return self._graphql(body or {}, headers)
            parts = parsed.path.strip("/").split("/")
            if len(parts) < 4 or parts[0] != "repos" or parts[3] != "pulls":
                return 404, _error("Not Found", "404"), headers
            project = self.projects.get(f"{parts[1]}/{parts[2]}")
            if project is None or (project.private and token not in project.readers):
                return 404, _error("Not Found", "404"), headers
            if method != "GET" and token not in self.writers:
                return (
                    403,
                    _error("Resource not accessible by personal access token", "403"),
                    headers,
                )
            answer = self._pulls(
                method, project, parts[4:], query, body or {}, parsed.path, headers
            )
            if method != "GET" and self.made_then_502 > 0 and answer[0] < 300:
                self.made_then_502 -= 1
                return 502, {"message": "Server Error"}, headers
            return answer

    def _pulls(
        self,
        method: str,
        project: FakeProject,
        rest: list[str],
        query: dict[str, str],
        body: dict[str, Any],
        path: str,
        headers: dict[str, str],
    ) -> tuple[int, Any, dict[str, str]]:
        missing = 404, _error("Not Found", "404"), headers
        if not rest:
            if method == "POST":
                return self._open(project, body, headers)
            wanted = query.get("head", "")
            pulls = [
                self._pull_json(project, pull)
                for pull in project.pulls.values()
                if not wanted or wanted == f"{project.full_name.split('/')[0]}:{pull.head}"
            ]
            return self._page(pulls, query, path, headers)
        if rest[0] == "comments" and len(rest) == 2 and method == "PATCH":
            comment = project.comments.get(int(rest[1]) if rest[1].isdigit() else -1)
            if comment is None:
                return missing
            comment.body = str(body.get("body", ""))
            return 200, self._comment_json(project, comment), headers
        pull = project.pulls.get(int(rest[0])) if rest[0].isdigit() else None
        if pull is None:
            return missing
        self._sync(project, pull)
        rest = rest[1:]
        if not rest and method == "GET":
            return 200, self._pull_json(project, pull), headers
        if rest == ["files"] and method == "GET":
            return self._page(self._files_json(project, pull), query, path, headers)
        if rest == ["comments"] and method == "GET":
            made = [
                self._comment_json(project, c)
                for c in project.comments.values()
                if c.number == pull.number
            ]
            return self._page(made, query, path, headers)
        if rest == ["reviews"] and method == "POST":
            return self._review(project, pull, body, headers)
        if rest == ["reviews"] and method == "GET":
            listed = [
                self._review_json(project, r)
                for r in project.reviews.values()
                if r.number == pull.number
            ]
            return self._page(listed, query, path, headers)
        if len(rest) >= 2 and rest[0] == "reviews" and rest[1].isdigit():
            review = project.reviews.get(int(rest[1]))
            if review is None or review.number != pull.number:
                return missing
            if len(rest) == 2 and method == "PUT":
                review.body = str(body.get("body", ""))
                return 200, self._review_json(project, review), headers
            if rest[2:] == ["comments"] and method == "GET":
                made = [
                    self._comment_json(project, c)
                    for c in project.comments.values()
                    if c.review_id == review.id
                ]
                return self._page(made, query, path, headers)
        return missing

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _review(
        self, project: FakeProject, pull: FakePull, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """All or nothing, as GitHub: one comment outside the diff refuses the whole review."""
        lines = self.diff_lines(project, pull)
        for comment in body.get("comments") or []:
            side = comment.get("side", "RIGHT")
            shown = lines.get(comment.get("path", ""), ({}, {}))[0 if side == "RIGHT" else 1]
            if comment.get("line") not in shown:
                self.refused.append(body)
                return (
                    422,
                    {
                        "message": "Unprocessable Entity",
                        "errors": ["Line could not be resolved"],
                        "documentation_url": f"{DOCS}/pulls/reviews",
                        "status": "422",
                    },
                    headers,
                )
        commit = str(body.get("commit_id") or "")
        review = FakeReview(
            self._next_id(), pull.number, str(body.get("body", "")), str(body.get("event")), commit
        )
        project.reviews[review.id] = review
        for comment in body.get("comments") or []:
            made = FakeComment(
                self._next_id(),
                pull.number,
                review.id,
                comment["path"],
                comment["line"],
                comment.get("side", "RIGHT"),
                comment["body"],
                commit,
            )
            project.comments[made.id] = made
        return 200, self._review_json(project, review), headers

    def _open(
        self, project: FakeProject, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        head, base = str(body.get("head", "")), str(body.get("base", ""))
        owner = project.full_name.split("/")[0]

        def invalid(message: str) -> tuple[int, Any, dict[str, str]]:
            self.refused.append(body)
            return (
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
                    "documentation_url": f"{DOCS}/pulls/pulls#create-a-pull-request",
                    "status": "422",
                },
                headers,
            )

        branches = _git(project.bare, "for-each-ref", "--format=%(refname:short)", "refs/heads")
        if head not in branches.split() or base not in branches.split():
            return invalid(f"head or base is not a branch: {head}, {base}")
        if any(p.head == head and p.state == "open" for p in project.pulls.values()):
            return invalid(f"A pull request already exists for {owner}:{head}.")
        number = max([0, *project.pulls]) + 1
        pull = FakePull(
            number,
            head,
            base,
            title=str(body.get("title", "")),
            body=str(body.get("body", "")),
            opened_by="api",
        )
        project.pulls[number] = pull
        self._sync(project, pull)
        return 201, self._pull_json(project, pull), headers

    def _graphql(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        query, variables = str(body.get("query", "")), body.get("variables") or {}
        if self.graphql_refused:
            denied = {"type": "FORBIDDEN", "message": "Resource not accessible by integration"}
            return 200, {"data": None, "errors": [denied]}, headers
        if "resolveReviewThread" in query:
            thread = str(variables.get("thread", ""))
            for project in self.projects.values():
                for comment in project.comments.values():
                    if f"PRRT_{comment.id}" == thread:
                        comment.resolved = True
                        node = {"id": thread, "isResolved": True}
                        return 200, {"data": {"resolveReviewThread": {"thread": node}}}, headers
            return (
                200,
                {"data": None, "errors": [{"type": "NOT_FOUND", "message": "no thread"}]},
                headers,
            )
        if "reviewThreads" in query:
            project = self.projects.get(f"{variables.get('owner')}/{variables.get('repo')}")
            if project is None:
                return (
                    200,
                    {"data": None, "errors": [{"type": "NOT_FOUND", "message": "no repo"}]},
                    headers,
                )
            nodes = [
                {
                    "id": f"PRRT_{c.id}",
                    "isResolved": c.resolved,
                    "comments": {"nodes": [{"databaseId": c.id}]},
                }
                for c in project.comments.values()
                if c.number == variables.get("number")
            ]
            threads = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": nodes}
            data = {"repository": {"pullRequest": {"reviewThreads": threads}}}
            return 200, {"data": data}, headers
        return 200, {"data": None, "errors": [{"message": "unknown query"}]}, headers

    def diff_lines(
        self, project: FakeProject, pull: FakePull
    ) -> dict[str, tuple[set[int], set[int]]]:
        """GitHub's rule, done here on its own: a comment's line must be in a hunk of the
        file's diff, on the side it names (RIGHT: added or context; LEFT: removed or context)."""
        found: dict[str, tuple[set[int], set[int]]] = {}
        for entry in self._files_json(project, pull):
            right: set[int] = set()
            left: set[int] = set()
            old = new = 0
            for text in str(entry.get("patch") or "").splitlines():
                hunk = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", text)
                if hunk:
                    old, new = int(hunk.group(1)), int(hunk.group(2))
                elif text.startswith("+"):
                    right.add(new)
                    new += 1
                elif text.startswith("-"):
                    left.add(old)
                    old += 1
                elif text.startswith(" "):
                    right.add(new)
                    left.add(old)
                    old, new = old + 1, new + 1
            found[entry["filename"]] = (right, left)
        return found

    def _review_json(self, project: FakeProject, review: FakeReview) -> dict[str, Any]:
        return {
            "id": review.id,
            "node_id": f"PRR_{review.id}",
            "user": {"login": "chatops-bot"},
            "body": review.body,
            "state": {"COMMENT": "COMMENTED", "APPROVE": "APPROVED"}.get(review.event, "PENDING"),
            "html_url": f"https://github.example/{project.full_name}/pull/{review.number}"
            f"#pullrequestreview-{review.id}",
            "commit_id": review.commit_id,
        }

    def _comment_json(self, project: FakeProject, comment: FakeComment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "pull_request_review_id": comment.review_id,
            "path": comment.path,
            "line": comment.line,
            "side": comment.side,
            "body": comment.body,
            "commit_id": comment.commit_id,
            "user": {"login": "chatops-bot"},
            "html_url": f"https://github.example/{project.full_name}/pull/{comment.number}"
            f"#discussion_r{comment.id}",
        }

    def _page(
        self, items: list[Any], query: dict[str, str], path: str, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        per_page = min(int(query.get("per_page", "30")), self.max_per_page)
        page = max(1, int(query.get("page", "1")))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(number: int) -> str:
            return f"{self.url}{path}?{urlencode({**query, 'per_page': per_page, 'page': number})}"

        links = []
        if page < last:
            links += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        if page > 1:
            links += [f'<{link(1)}>; rel="first"', f'<{link(page - 1)}>; rel="prev"']
        if links:
            headers = {**headers, "link": ", ".join(links)}
        return 200, chunk, headers

    def _pull_json(self, project: FakeProject, pull: FakePull) -> dict[str, Any]:
        head = _git(project.bare, "rev-parse", f"refs/pull/{pull.number}/head").strip()
        base = _git(project.bare, "rev-parse", f"refs/heads/{pull.base}").strip()
        repo = {"full_name": project.full_name, "private": project.private}
        return {
            "url": f"{self.url}/repos/{project.full_name}/pulls/{pull.number}",
            "html_url": f"https://github.example/{project.full_name}/pull/{pull.number}",
            "number": pull.number,
            "state": pull.state,
            "title": pull.title,
            "user": {"login": "dev"},
            "draft": False,
            "head": {"ref": pull.head, "sha": head, "repo": repo, "label": f"dev:{pull.head}"},
            "base": {"ref": pull.base, "sha": base, "repo": repo, "label": f"org:{pull.base}"},
        }

    def _files_json(self, project: FakeProject, pull: FakePull) -> list[dict[str, Any]]:
        head = f"refs/pull/{pull.number}/head"
        merge_base = _git(project.bare, "merge-base", f"refs/heads/{pull.base}", head).strip()
        statuses = _git(project.bare, "diff", "--name-status", "-M", merge_base, head)
        counts = _git(project.bare, "diff", "--numstat", "-M", merge_base, head).splitlines()
        files = []
        for line, numbers in zip(statuses.splitlines(), counts, strict=True):
            status, *names = line.split("\t")
            added, removed = (0 if n == "-" else int(n) for n in numbers.split("\t")[:2])
            name = names[-1]
            entry: dict[str, Any] = {
                "sha": _git(project.bare, "rev-parse", f"{head}:{name}").strip()
                if status[0] != "D"
                else None,
                "filename": name,
                "status": _STATUS[status[0]],
                "additions": added,
                "deletions": removed,
                "changes": added + removed,
                "blob_url": f"https://github.example/{project.full_name}/blob/{head}/{name}",
                "raw_url": f"https://github.example/{project.full_name}/raw/{head}/{name}",
                "contents_url": f"{self.url}/repos/{project.full_name}/contents/{name}",
            }
            if status[0] == "R":
                entry["previous_filename"] = names[0]
            patch = _git(project.bare, "diff", "-U3", "-M", merge_base, head, "--", *names)
            if "\n@@ " in patch:  # none for a binary file, as GitHub
                entry["patch"] = patch[patch.index("\n@@ ") + 1 :].rstrip("\n")
            files.append(entry)
        return files

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                status, payload, headers = fake._answer(
                    method, self.path, self.headers.get("Authorization", ""), body
                )
                send_json(self, status, payload, headers)

        return Handler


def _error(message: str, status: str) -> dict[str, str]:
    return {"message": message, "documentation_url": DOCS, "status": status}
