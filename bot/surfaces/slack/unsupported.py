"""What Slack answers when this workspace or this app's token lacks a feature altogether (a
method it does not have, a scope or an app setting it was not given). The newer features (agent
sessions, streaming) are tried, and on one of these answers the older way is used instead; any
other error is about the one call (a bad thread, a stopped stream)."""

from __future__ import annotations

WORKSPACE_LACKS = frozenset(
    {
        "unknown_method",
        "not_allowed",
        "missing_scope",
        "not_allowed_token_type",
        "method_deprecated",
        "deprecated_endpoint",
        "enterprise_is_restricted",
        "access_denied",
        "no_permission",
        "feature_not_enabled",
    }
)
