"""Post an approved comment on a Jira ticket, exactly once.

The comment carries an idempotency marker (`chatops:RUN/P1`); before posting, the ticket's
comments are searched for it, so a retry after a timeout (the comment was posted, the answer
lost) posts nothing twice."""

from __future__ import annotations

from agents.context.jira import JiraSettings, validate_key
from agents.errors import AnalysisInputError
from bot.writes.git import WriteResult


def marker(ref: str) -> str:
    return f"chatops:{ref}"


def post_comment(settings: JiraSettings, key: str, text: str, ref: str) -> WriteResult:
    from jira import JIRA, JIRAError
    from requests.exceptions import RequestException

    from agents.context.jira import _client, _explain

    try:
        validate_key(key)
        client = _client(settings, JIRA)
        tag = marker(ref)
        for comment in client.comments(key):
            if tag in (comment.body or ""):
                return WriteResult(
                    "applied", f"comment {comment.id} was already on {key}", str(comment.id)
                )
        posted = client.add_comment(key, f"{text}\n\n_({tag})_")
    except AnalysisInputError as exc:
        return WriteResult("failed", exc.message)
    except JIRAError as exc:
        return WriteResult("failed", _explain(exc, key, settings).message)
    except RequestException as exc:
        return WriteResult("failed", f"Jira is unreachable ({type(exc).__name__}); nothing posted")
    return WriteResult("applied", f"comment {posted.id} posted on {key}", str(posted.id))
