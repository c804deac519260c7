"""A run's progress streamed into Slack (chat.startStream / appendStream / stopStream), one task
per agent, where the workspace can stream; the notifier edits the parent message where it cannot.

Why the stream is a reply and not the parent message itself: Slack streams only replies
("Streamed messages should always be replies to a user request": `thread_ts`, which the method
catalog marks required), and in a channel it streams to one person (`recipient_user_id` and
`recipient_team_id`, "required when streaming to channels"). The parent message is top-level and
is posted by the listener before any worker runs, so it cannot be a stream. So the progress
streams as a reply in the run's thread (its parent's, or the branch's earlier thread for a
re-run), to the person who asked, as a plan with one task card per agent; the parent message says
the progress is in the thread, and gets its final state (every agent, the verdict) by chat.update
at the end, as before.

Where Slack cannot stream, the parent fills in through chat.update at each checkpoint as it
always has: a workspace without the methods (unknown_method, not_allowed, missing_scope and the
like: remembered, so later runs do not ask again), a place or person it cannot stream to (asked
again for the next run), a stream that ends under us (expired, `message_not_in_streaming_state`;
stopped by the person, `stopped_by_user`: the rest of that run goes to the parent), and a run
with nobody to stream to (a followed branch's runs are asked for by the policy).

A stream lives in the process that runs the run: a run handed to another worker starts a new
stream there, and a report a reaper posts for a dead worker finds no stream to stop (the parent
still gets its final state).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import (
    Chunk,
    MarkdownTextChunk,
    PlanUpdateChunk,
    TaskUpdateChunk,
)

from agents.pipeline import AgentProgress
from bot.core.messages import thread_of
from bot.store.models import Run
from bot.surfaces.slack.unsupported import WORKSPACE_LACKS

log = logging.getLogger(__name__)

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
# Answers that mean this workspace (or this app's token) cannot stream at all: stop asking.
WORKSPACE_CANNOT_STREAM = WORKSPACE_LACKS
# Slack's task statuses: pending, in_progress, complete, error.
_TASK_STATUS = {
    "waiting": "pending",
    "running": "in_progress",
    "done": "complete",
    "failed": "error",
    "cancelled": "pending",  # it never started: not an error, not complete
}
MAX_KEPT = 256  # runs whose stream state this process keeps (those it runs now, in practice)

Shown = Literal["started", "appended", "not_streamed"]


@dataclass
class _Stream:
    channel: str
    ts: str
    shown: dict[str, tuple[str, str]] = field(default_factory=dict)  # agent -> (status, output)


def task(agent: AgentProgress) -> TaskUpdateChunk:
    """One agent as a task card. Only our own words: agent names, statuses and durations (an
    error's text is the report's to show, escaped)."""
    seconds = f"{agent.duration_ms / 1000:.1f} s"
    output = {
        "done": seconds,
        "failed": f"failed after {seconds}",
        "cancelled": "not run: the run was stopped",
    }.get(agent.status)
    return TaskUpdateChunk(
        id=agent.name, title=agent.name, status=_TASK_STATUS[agent.status], output=output
    )


def _key(chunk: TaskUpdateChunk) -> tuple[str, str]:
    return chunk.status, chunk.output or ""


class ProgressStreams:
    def __init__(self, client: WebClient) -> None:
        self.client = client
        self.cannot_stream: str | None = None  # the workspace's answer, once it said no
        self._streams: dict[str, _Stream | None] = {}  # run id -> its stream, None: not streamed
        self._teams: dict[str, str] = {}
        self._lock = threading.Lock()

    def show(self, run: Run, agents: list[AgentProgress]) -> Shown:
        """Show the agents' progress in the run's stream: "started" (the parent should say where
        the progress is), "appended", or "not_streamed" (the caller edits the parent)."""
        with self._lock:
            known = run.id in self._streams
            stream = self._streams.get(run.id)
        if known and stream is None:
            return "not_streamed"
        if stream is None:
            stream = self._start(run, agents)
            with self._lock:
                while len(self._streams) >= MAX_KEPT:
                    self._streams.pop(next(iter(self._streams)))
                self._streams[run.id] = stream
            return "started" if stream is not None else "not_streamed"
        chunks = self._changed(stream, agents)
        if not chunks:
            return "appended"
        try:
            self.client.chat_appendStream(channel=stream.channel, ts=stream.ts, chunks=chunks)
        except SlackApiError as exc:  # expired, stopped by the person, rate limited...
            log.info(
                "run %s: the progress stream ended (%s); the parent message shows the rest",
                run.id,
                exc.response.get("error"),
            )
            with self._lock:
                self._streams[run.id] = None
            return "not_streamed"
        self._mark(stream, chunks)
        return "appended"

    def stop(self, run: Run, agents: list[AgentProgress], closing: str) -> None:
        """The run ended: its tasks' last states and a closing line, and the stream stops. A
        stream that cannot be stopped (it expired) is left as it is: the parent and the report
        say the rest."""
        with self._lock:
            stream = self._streams.pop(run.id, None)
        if stream is None:
            return
        chunks: list[Chunk] = [*self._changed(stream, agents), MarkdownTextChunk(text=closing)]
        try:
            self.client.chat_stopStream(channel=stream.channel, ts=stream.ts, chunks=chunks)
        except SlackApiError as exc:
            log.info("run %s: could not stop its stream: %s", run.id, exc.response.get("error"))

    def _start(self, run: Run, agents: list[AgentProgress]) -> _Stream | None:
        if self.cannot_stream is not None or not run.place:
            return None
        thread = thread_of(run)
        user = run.requester if _USER_ID.fullmatch(run.requester) else None
        if thread is None or user is None:
            return None  # nothing to reply to, or nobody to stream to (a followed branch)
        team = self._team_of(user)
        if team is None:
            return None
        tasks = [task(agent) for agent in agents]
        try:
            started = self.client.chat_startStream(
                channel=run.place,
                thread_ts=thread,
                recipient_user_id=user,
                recipient_team_id=team,
                task_display_mode="plan",  # the agents together, as one plan
                chunks=[PlanUpdateChunk(title=f"Run {run.id}, agent by agent"), *tasks],
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error in WORKSPACE_CANNOT_STREAM:
                self.cannot_stream = error
                log.warning(
                    "Slack cannot stream here (%s): run progress edits the parent message", error
                )
            else:
                log.info("run %s: no progress stream (%s); editing the parent", run.id, error)
            return None
        stream = _Stream(run.place, str(started["ts"]))
        self._mark(stream, tasks)
        return stream

    def _team_of(self, user: str) -> str | None:
        """The recipient's own team (Slack wants it with the user)."""
        with self._lock:
            known = self._teams.get(user)
        if known is not None:
            return known
        try:
            team = str(self.client.users_info(user=user)["user"]["team_id"])
        except (SlackApiError, KeyError, TypeError) as exc:
            log.info("no team for %s (%s): not streaming to them", user, exc)
            return None
        with self._lock:
            self._teams[user] = team
        return team

    @staticmethod
    def _changed(stream: _Stream, agents: list[AgentProgress]) -> list[TaskUpdateChunk]:
        chunks = [task(agent) for agent in agents]
        return [c for c in chunks if stream.shown.get(c.id) != _key(c)]

    @staticmethod
    def _mark(stream: _Stream, chunks: list[TaskUpdateChunk]) -> None:
        for chunk in chunks:
            stream.shown[chunk.id] = _key(chunk)
