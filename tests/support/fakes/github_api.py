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
  from the merge-base, GitHub's `DiffEntry` fields).
"""

from __future__ import annotations

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
DOCS = "https://docs.github.com/rest"
_STATUS = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied"}


@dataclass
class FakePull:
    number: int
    head: str  # the head branch in the project's bare repository
    base: str = "main"
    title: str = "A change"
    state: str = "open"


@dataclass
class FakeProject:
    full_name: str
    bare: Path  # a real bare repository: the remote
    private: bool = False
    readers: set[str] = field(default_factory=set)  # tokens that see it when private
    pulls: dict[int, FakePull] = field(default_factory=dict)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


class FakeGitHub(LoopbackServer):
    def __init__(self) -> None:
        self.tokens: set[str] = {TOKEN}
        self.projects: dict[str, FakeProject] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, query
        self.rate_limit = 5000
        self.used = 0
        self.reset_at = int(time.time()) + 3600
        self.secondary_next = 0  # the next N requests hit a secondary limit
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

    def _answer(self, method: str, url: str, authorization: str) -> tuple[int, Any, dict[str, str]]:
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        with self._lock:
            self.requests.append((method, parsed.path, query))
            token = authorization.split(" ", 1)[1] if " " in authorization else ""
            if token not in self.tokens:
                return 401, _error("Bad credentials", "401"), self._rate_headers()
            if self.secondary_next > 0:
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
            parts = parsed.path.strip("/").split("/")
            if method != "GET" or len(parts) < 5 or parts[0] != "repos" or parts[3] != "pulls":
                return 404, _error("Not Found", "404"), headers
            project = self.projects.get(f"{parts[1]}/{parts[2]}")
            if project is None or (project.private and token not in project.readers):
                return 404, _error("Not Found", "404"), headers
            pull = project.pulls.get(int(parts[4])) if parts[4].isdigit() else None
            if pull is None:
                return 404, _error("Not Found", "404"), headers
            self._sync(project, pull)
            if len(parts) == 5:
                return 200, self._pull_json(project, pull), headers
            if len(parts) == 6 and parts[5] == "files":
                files = self._files_json(project, pull)
                return self._page(files, query, parsed.path, headers)
            return 404, _error("Not Found", "404"), headers

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
            files.append(entry)
        return files

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                status, payload, headers = fake._answer(
                    "GET", self.path, self.headers.get("Authorization", "")
                )
                send_json(self, status, payload, headers)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                self.rfile.read(length)
                status, payload, headers = fake._answer(
                    "POST", self.path, self.headers.get("Authorization", "")
                )
                send_json(self, status, payload, headers)

        return Handler


def _error(message: str, status: str) -> dict[str, str]:
    return {"message": message, "documentation_url": DOCS, "status": status}
