"""Post an approved comment on a Jira ticket, exactly once.

The comment carries an idempotency marker (`chatops:RUN/P1`); before posting, the ticket's
comments are searched for it, and the POST itself is never retried at the HTTP level: when its
answer is lost (a timeout, a 503 after the comment was stored), the comments are searched again
instead. So a retry posts nothing twice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents.context.jira import JiraSettings, validate_key
from agents.errors import AnalysisInputError
from bot.writes.git import WriteResult


def marker(ref: str) -> str:
    return f"chatops:{ref}"


def post_comment(settings: JiraSettings, key: str, text: str, ref: str) -> WriteResult:
    from jira import JIRA, JIRAError
    from requests.exceptions import RequestException

    from agents.context.jira import explain_error, jira_client

    tag = marker(ref)
    try:
        validate_key(key)
        client = jira_client(settings, JIRA)
        existing = _find(client, key, tag)
        if existing is not None:
            return WriteResult("applied", f"comment {existing} was already on {key}", existing)
        poster = jira_client(replace(settings, max_retries=0), JIRA)
        try:
            posted = poster.add_comment(key, f"{text}\n\n_({tag})_")
        except (JIRAError, RequestException):
            existing = _find(client, key, tag)  # stored, but the answer was lost?
            if existing is not None:
                return WriteResult("applied", f"comment {existing} posted on {key}", existing)
            raise
    except AnalysisInputError as exc:
        return WriteResult("failed", exc.message)
    except JIRAError as exc:
        return WriteResult("failed", explain_error(exc, key, settings).message)
    except RequestException as exc:
        return WriteResult("failed", f"Jira is unreachable ({type(exc).__name__}); nothing posted")
    return WriteResult("applied", f"comment {posted.id} posted on {key}", str(posted.id))


def find_comment(settings: JiraSettings, key: str, ref: str) -> str | None:
    """The id of the comment proposal `ref` posted on `key`, if it is there (recovery asks)."""
    from jira import JIRA

    from agents.context.jira import jira_client

    validate_key(key)
    return _find(jira_client(settings, JIRA), key, marker(ref))


def _find(client: Any, key: str, tag: str) -> str | None:
    for comment in client.comments(key):
        if tag in (comment.body or ""):
            return str(comment.id)
    return None
