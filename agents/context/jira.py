"""A ticket key to a `TicketContext`: the only module that reads from Jira (REST v2, `jira`).

A key is validated before any request; long text is capped and the cap said; every error a
user can cause becomes an AnalysisInputError saying what to do."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agents.errors import AnalysisInputError, shown

KEY = re.compile(r"[A-Z][A-Z0-9_]{0,19}-[1-9][0-9]{0,8}")
MAX_TEXT = 6_000
MAX_COMMENTS = 20
_AC_HEADING = re.compile(r"^\W*(h\d\.\s*)?acceptance\s+criteria\W*$", re.IGNORECASE)
_HEADING = re.compile(r"^(h\d\.\s|#{1,6}\s|\*[^*]+\*\s*$)")
_ITEM = re.compile(r"^\s*(?:[-*#]+|\d+[.)]|\[[ xX]?\]|\(/\)|\(x\))\s+(.*\S)")
_GWT = re.compile(r"^\s*(given|when|then|and)\b", re.IGNORECASE)
_BRANCH_URL = re.compile(r"/(?:tree|branch|branches|src)/([A-Za-z0-9._/+-]+?)/?(?:[?#]|$)")


@dataclass(frozen=True)
class JiraSettings:
    url: str
    email: str | None = None
    api_token: str | None = None
    pat: str | None = None
    acceptance_field: str | None = None  # e.g. customfield_10042
    timeout_s: float = 20.0
    max_retries: int = 2


@dataclass
class TicketContext:
    key: str
    summary: str
    description: str
    status: str = ""
    type: str = ""
    priority: str = ""
    assignee: str = ""
    labels: list[str] = field(default_factory=list)
    acceptance_criteria: list[str] = field(default_factory=list)
    criteria_source: str = "description"  # or the custom field's id, or "none"
    comments: list[tuple[str, str]] = field(default_factory=list)
    subtasks: list[tuple[str, str, str]] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)
    remote_links: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)

    def branches_named_in_links(self) -> list[str]:
        names = []
        for title, url in self.remote_links:
            match = _BRANCH_URL.search(url)
            if match:
                names.append(match.group(1))
            elif title.lower().startswith("branch:"):
                names.append(title.split(":", 1)[1].strip())
        return names


def validate_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise AnalysisInputError(
            f"{shown(key, 40)!r} is not a Jira issue key.",
            "Use the project key and number, e.g. PAY-412.",
        )
    return key


def parse_criteria(text: str) -> list[str]:
    """Acceptance criteria from a description: the items under an "Acceptance criteria" heading,
    else checklist items, else Given/When/Then scenarios."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _AC_HEADING.match(line.strip()):
            section: list[str] = []
            for after in lines[index + 1 :]:
                if _HEADING.match(after.strip()) and section:
                    break
                item = _ITEM.match(after)
                if item:
                    section.append(item.group(1).strip())
                elif after.strip() and not section and not _HEADING.match(after.strip()):
                    section.append(after.strip())
            if section:
                return section
    checklist = [
        m.group(1).strip()
        for line in lines
        if (m := re.match(r"^\s*(?:\[[ xX]?\]|\(/\)|\(x\))\s+(.*\S)", line))
    ]
    if checklist:
        return checklist
    scenarios: list[str] = []
    for line in lines:
        if _GWT.match(line):
            if re.match(r"^\s*given\b", line, re.IGNORECASE) or not scenarios:
                scenarios.append(line.strip())
            else:
                scenarios[-1] += " " + line.strip()
    return scenarios


def _cap(text: str, limit: int, what: str, notes: list[str]) -> str:
    if len(text) <= limit:
        return text
    notes.append(f"{what} cut at {limit} of {len(text)} characters")
    return text[:limit]


def fetch_ticket(settings: JiraSettings, key: str) -> TicketContext:
    validate_key(key)
    from jira import JIRA, JIRAError  # imported here: only ticket analysis pays for it
    from requests.exceptions import RequestException

    try:
        client = jira_client(settings, JIRA)
        issue = client.issue(key)
        remote = client.remote_links(key)
    except JIRAError as exc:
        raise explain_error(exc, key, settings) from None
    except RequestException as exc:
        raise AnalysisInputError(
            f"Jira is unreachable at {settings.url} ({type(exc).__name__}).",
            "Check JIRA_URL and the network, then try again.",
        ) from None
    return _context(issue.raw, [r.raw for r in remote], settings)


# Seconds to wait for a connection (an unreachable Jira fails fast), and between retries (the
# jira library's own back-off reaches a minute).
CONNECT_TIMEOUT_S = 5.0
MAX_RETRY_DELAY_S = 4


def jira_client(settings: JiraSettings, jira_class: Any) -> Any:
    """A client whose time is bounded: a connect timeout, the read timeout, and few, short
    retries. The first request (server info) is not retried: a Jira that cannot be reached is
    said at once, not after the library's minute of back-off and warnings."""
    options = {"rest_api_version": "2", "check_update": False, "server": settings.url}
    common: dict[str, Any] = {
        "options": options,
        "get_server_info": True,
        "max_retries": 0,
        "timeout": (CONNECT_TIMEOUT_S, settings.timeout_s),
    }
    if settings.pat:
        client = jira_class(token_auth=settings.pat, **common)
    elif settings.email and settings.api_token:
        client = jira_class(basic_auth=(settings.email, settings.api_token), **common)
    else:
        raise AnalysisInputError(
            "Jira credentials are not set.",
            "Set JIRA_EMAIL and JIRA_API_TOKEN (Cloud) or JIRA_PAT (Server/Data Center).",
        )
    session = getattr(client, "_session", None)
    if session is not None:  # later calls: a few retries, short waits
        session.max_retries = settings.max_retries
        session.max_retry_delay = MAX_RETRY_DELAY_S
    return client


def explain_error(exc: Any, key: str, settings: JiraSettings) -> AnalysisInputError:
    status = getattr(exc, "status_code", None)
    if status == 404:
        return AnalysisInputError(
            f"No ticket {key} in Jira (or you may not see it).", "Check the key."
        )
    if status == 401:
        return AnalysisInputError(
            "Jira refused the credentials (401).",
            "Check JIRA_EMAIL and JIRA_API_TOKEN, or JIRA_PAT.",
        )
    if status == 403:
        return AnalysisInputError(
            f"The Jira account may not read {key} (403).",
            "Ask a Jira admin to grant it Browse Projects.",
        )
    if status == 429:
        return AnalysisInputError(
            "Jira is rate limiting us (429), still after retries.", "Try again in a minute."
        )
    return AnalysisInputError(
        f"Jira answered HTTP {status}: {str(getattr(exc, 'text', ''))[:200]}",
        f"Check {settings.url}.",
    )


def _name(value: Any, key: str = "name") -> str:
    return str(value.get(key, "")) if isinstance(value, dict) else ""


def _context(
    raw: dict[str, Any], remote: list[dict[str, Any]], settings: JiraSettings
) -> TicketContext:
    fields = raw.get("fields") or {}
    notes: list[str] = []
    description = _cap(str(fields.get("description") or ""), MAX_TEXT, "description", notes)
    criteria: list[str] = []
    source = "none"
    custom = fields.get(settings.acceptance_field) if settings.acceptance_field else None
    if custom:
        # The field holds only criteria: its list items, else its non-empty lines.
        lines = str(custom).splitlines()
        items = [m.group(1).strip() for line in lines if (m := _ITEM.match(line))]
        criteria = items or [line.strip() for line in lines if line.strip()]
        source = str(settings.acceptance_field)
    else:
        criteria = parse_criteria(description)
        source = "description" if criteria else "none"
    comments = [
        (
            _name(c.get("author"), "displayName"),
            _cap(str(c.get("body") or ""), 1_000, "a comment", notes),
        )
        for c in ((fields.get("comment") or {}).get("comments") or [])[-MAX_COMMENTS:]
    ]
    links = []
    for link in fields.get("issuelinks") or []:
        other = link.get("outwardIssue") or link.get("inwardIssue") or {}
        links.append(
            (
                _name(link.get("type")),
                str(other.get("key", "")),
                str((other.get("fields") or {}).get("summary", "")),
            )
        )
    return TicketContext(
        key=str(raw.get("key")),
        summary=str(fields.get("summary") or ""),
        description=description,
        status=_name(fields.get("status")),
        type=_name(fields.get("issuetype")),
        priority=_name(fields.get("priority")),
        assignee=_name(fields.get("assignee"), "displayName"),
        labels=[str(label) for label in fields.get("labels") or []],
        acceptance_criteria=criteria[:30],
        criteria_source=source,
        comments=comments,
        subtasks=[
            (
                str(s.get("key")),
                str((s.get("fields") or {}).get("summary", "")),
                _name((s.get("fields") or {}).get("status")),
            )
            for s in fields.get("subtasks") or []
        ],
        links=links,
        remote_links=[
            (
                str((r.get("object") or {}).get("title", "")),
                str((r.get("object") or {}).get("url", "")),
            )
            for r in remote
        ],
        truncated=notes,
    )
