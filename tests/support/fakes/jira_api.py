"""A fake Jira REST API v2 on 127.0.0.1 that answers like Jira where it matters.

serverInfo, issue (with comments, subtasks, links), remote links, comments (list and add),
search; Basic (email + API token) and Bearer (PAT) auth; Jira's error bodies
(`{"errorMessages": [...], "errors": {}}`) for 401, 403, 404; 429 with `Retry-After` on demand;
and a "lost answer" mode in which a comment is stored but the response is a 503."""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.fakes.loopback import LoopbackServer, send_json

EMAIL = "bot@example.invalid"
TOKEN = "jira-api-token"
PAT = "jira-personal-access-token"


@dataclass
class Ticket:
    key: str
    summary: str
    description: str = ""
    status: str = "In Progress"
    fields: dict[str, Any] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    remote_links: list[dict[str, str]] = field(default_factory=list)
    forbidden: bool = False


class FakeJira(LoopbackServer):
    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self.requests: list[tuple[str, str]] = []
        self.rate_limit_next = 0
        self.lose_next_comment_answer = False
        self._ids = 10_000
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def add(self, ticket: Ticket) -> Ticket:
        self.tickets[ticket.key] = ticket
        return ticket

    def _issue(self, ticket: Ticket) -> dict[str, Any]:
        return {
            "id": str(abs(hash(ticket.key)) % 100000),
            "key": ticket.key,
            "self": f"{self.url}/rest/api/2/issue/{ticket.key}",
            "fields": {
                "summary": ticket.summary,
                "description": ticket.description,
                "status": {"name": ticket.status},
                "issuetype": {"name": "Story"},
                "priority": {"name": "High"},
                "assignee": {"displayName": "Ana Dev"},
                "labels": ["payments"],
                "comment": {"comments": ticket.comments, "total": len(ticket.comments)},
                "subtasks": [],
                "issuelinks": [],
                **ticket.fields,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _send(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                send_json(self, status, payload, headers, "application/json;charset=UTF-8")

            def _error(
                self, status: int, message: str, headers: dict[str, str] | None = None
            ) -> None:
                self._send(status, {"errorMessages": [message], "errors": {}}, headers)

            def _authorized(self) -> bool:
                auth = self.headers.get("authorization", "")
                basic = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
                return auth in (basic, f"Bearer {PAT}")

            def _route(self, method: str) -> None:
                path = urlparse(self.path).path
                with fake._lock:
                    fake.requests.append((method, self.path))
                if not self._authorized():
                    self._error(
                        401,
                        "You are not authenticated. Authentication required to "
                        "perform this operation.",
                    )
                    return
                if fake.rate_limit_next > 0 and path != "/rest/api/2/serverInfo":
                    fake.rate_limit_next -= 1
                    self._error(429, "Rate limit exceeded.", {"Retry-After": "1"})
                    return
                if path == "/rest/api/2/serverInfo":
                    self._send(
                        200,
                        {
                            "baseUrl": fake.url,
                            "version": "9.12.2",
                            "versionNumbers": [9, 12, 2],
                            "deploymentType": "Server",
                            "buildNumber": 912002,
                            "serverTitle": "Fake Jira",
                        },
                    )
                    return
                if path == "/rest/api/2/search":
                    jql = parse_qs(urlparse(self.path).query).get("jql", [""])[0]
                    keys = re.findall(r"[A-Z]+-\d+", jql)
                    issues = [
                        fake._issue(t) for k, t in fake.tickets.items() if not keys or k in keys
                    ]
                    self._send(
                        200,
                        {"startAt": 0, "maxResults": 50, "total": len(issues), "issues": issues},
                    )
                    return
                match = re.fullmatch(r"/rest/api/2/issue/([^/]+)(/remotelink|/comment)?", path)
                if not match:
                    self._error(404, f"No route {path}")
                    return
                key, tail = match.groups()
                ticket = fake.tickets.get(key)
                if ticket is None:
                    self._error(
                        404, "Issue does not exist or you do not have permission to see it."
                    )
                    return
                if ticket.forbidden:
                    self._error(403, "You do not have the permission to see the specified issue.")
                    return
                if tail is None:
                    self._send(200, fake._issue(ticket))
                elif tail == "/remotelink":
                    self._send(
                        200,
                        [
                            {"id": n, "self": f"{fake.url}/remotelink/{n}", "object": link}
                            for n, link in enumerate(ticket.remote_links, start=1)
                        ],
                    )
                elif method == "GET":
                    self._send(
                        200,
                        {
                            "startAt": 0,
                            "maxResults": 1048576,
                            "total": len(ticket.comments),
                            "comments": ticket.comments,
                        },
                    )
                else:
                    body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                    with fake._lock:
                        fake._ids += 1
                        comment = {
                            "id": str(fake._ids),
                            "body": body["body"],
                            "author": {"displayName": "chatops bot"},
                            "self": f"{fake.url}/comment/{fake._ids}",
                        }
                        ticket.comments.append(comment)
                        lose = fake.lose_next_comment_answer
                        fake.lose_next_comment_answer = False
                    if lose:
                        self._error(503, "Service Unavailable")
                        return
                    self._send(201, comment)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        return Handler
