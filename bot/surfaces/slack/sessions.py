"""The agent view: a run asked for in a direct conversation with the app works in the asking
message's thread, which is an agent session. Its status says what the run does while it works
and leaves "processing" when the run ends or is stopped (Slack does not change it by itself).

Slack's agent sessions (`agents.sessions.setStatus`) where the app is an agent; where the
workspace answers that it cannot have them, the assistant thread's status
(`assistant.threads.setStatus`); where that fails too, a log line. A status is a courtesy: it
never fails a request or a run."""

from __future__ import annotations

import logging
import threading
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from agents.pipeline import Progress, Saved
from agents.report import Report
from bot.core.messages import RunMessages, subject
from bot.store.models import Run
from bot.surfaces.slack.unsupported import WORKSPACE_LACKS

log = logging.getLogger(__name__)

# Where this app or workspace has no agent sessions, the assistant thread's status is tried
# instead. Any other error is the session's own (a bad thread): logged.
NO_SESSIONS = WORKSPACE_LACKS
TITLE_CHARS = 200  # agents.sessions.setStatus: a session's title
# AgentSessions: nothing more to show for a run while it works (an agent session shows it as
# processing, or it is not in a session).
_QUIET = "\0quiet"

State = Literal["processing", "active"]
Shown = Literal["session", "assistant"]


def is_direct(place: str) -> bool:
    """A direct conversation with the app (Slack's IM ids start with D)."""
    return place.startswith("D")


def session_of(run: Run) -> tuple[str, str] | None:
    """(channel, thread) of the agent session a run works in: asked for in a direct
    conversation, its messages go in the asking message's thread."""
    if run.surface != "slack" or not run.place or not is_direct(run.place) or not run.thread:
        return None
    return run.place, run.thread


def set_status(
    client: WebClient,
    channel: str,
    thread: str,
    state: State,
    doing: str = "",
    *,
    title: str | None = None,
    initiator: str | None = None,
) -> Shown | None:
    """Show `state` on the session in `thread` of `channel`. `doing` is what the assistant
    thread's status says while processing ("is running code_review…"); `title` and `initiator`
    name a session created now. Which status showed it, or None (logged)."""
    try:
        answer = client.agents_sessions_setStatus(
            channel_id=channel,
            thread_ts=thread,
            status=state,
            title=title[:TITLE_CHARS] if title else None,
            initiator_user_id=initiator,
        )
    except SlackApiError as exc:
        error = str(exc.response.get("error", ""))
        if error not in NO_SESSIONS:
            log.info("agent session %s/%s: no %s status: %s", channel, thread, state, error)
            return None
        unsupported = error
    except (SlackClientError, OSError) as exc:
        log.info("agent session %s/%s: no %s status: %s", channel, thread, state, exc)
        return None
    else:
        if answer.get("warning"):  # e.g. not subscribed to agent_session_stopped: no Stop button
            log.warning("agent session %s/%s: %s", channel, thread, answer.get("warning"))
        return "session"
    try:
        client.assistant_threads_setStatus(
            channel_id=channel, thread_ts=thread, status=doing if state == "processing" else ""
        )
    except (SlackClientError, OSError) as exc:
        log.info(
            "no status in %s/%s: agent sessions answered %s, the assistant thread %s",
            channel,
            thread,
            unsupported,
            exc.response.get("error") if isinstance(exc, SlackApiError) else exc,
        )
        return None
    return "assistant"


def start_session(
    client: WebClient, channel: str, thread: str, run: Run, requester: str
) -> Shown | None:
    """A run was asked for in a session: it shows as processing, titled by what it analyzes
    (a title names a session when it is created; Slack keeps the first)."""
    what = f"{subject(run)} in {run.repo}"
    return set_status(
        client,
        channel,
        thread,
        "processing",
        f"is analyzing {what}…",
        title=what,
        initiator=requester,
    )


def end_session(client: WebClient, channel: str, thread: str) -> Shown | None:
    """Nothing works in the session any more: it leaves processing (and its Stop button)."""
    return set_status(client, channel, thread, "active")


def leave_if_idle(client: WebClient, messages: RunMessages, run: Run) -> None:
    """`run` ended or was stopped: its session leaves processing, unless another of its runs
    still works there (a ticket's branches share the session)."""
    where = session_of(run)
    if where is None:
        return
    working = [
        r for r in messages.unfinished_in_thread(*where) if r.id != run.id and not r.stop_requested
    ]
    if not working:
        end_session(client, *where)


def doing_text(progress: Progress) -> str | None:
    """What the run does now, for the assistant thread's status; None between two agents (the
    status shown stays)."""
    running = [agent.name for agent in progress.agents if agent.status == "running"]
    done = sum(agent.status in ("done", "failed", "cancelled") for agent in progress.agents)
    if not running:
        return None
    return f"is running {', '.join(running)} ({done} of {len(progress.agents)} done)…"


class AgentSessions:
    """The run observer of agent sessions: a session's status follows its runs (told after the
    notifier, so it leaves processing once the report is posted). An agent session is told
    once that its run is processing; the assistant thread's status line says which agent runs,
    each time that changes. Runs elsewhere are not its business."""

    def __init__(self, client: WebClient, messages: RunMessages) -> None:
        self.client = client
        self.messages = messages
        # run id -> the assistant thread's words shown last, or _QUIET
        self._shown: dict[str, str] = {}
        self._lock = threading.Lock()

    def progress(self, run_id: str, progress: Progress) -> None:
        doing = doing_text(progress)
        with self._lock:
            shown = self._shown.get(run_id)
        if doing is None or shown in (doing, _QUIET):
            return
        run = self.messages.run(run_id)
        where = session_of(run) if run is not None else None
        if run is None or where is None:
            with self._lock:
                self._shown[run_id] = _QUIET
            return
        if run.stop_requested:  # a stopped run does not show as working again
            return
        showing = set_status(self.client, *where, "processing", doing)
        with self._lock:  # only the assistant thread's line changes as the agents go
            self._shown[run_id] = doing if showing == "assistant" else _QUIET

    def waiting(self, run_id: str, checkpoint: Saved) -> None:
        """Waiting for a person at a checkpoint: the session leaves processing (nothing works
        for it until someone continues)."""
        self._ended(run_id)

    def finished(self, run_id: str, report: Report) -> None:
        self._ended(run_id)

    def failed(self, run_id: str, error: str) -> None:
        self._ended(run_id)

    def _ended(self, run_id: str) -> None:
        with self._lock:
            self._shown.pop(run_id, None)
        run = self.messages.run(run_id)
        if run is not None:
            leave_if_idle(self.client, self.messages, run)
