"""The agent view and the native feedback buttons (issue 17, items 2 and 4), in process: the
real composition root with the real slack_sdk client against the fake Slack Web API, deliveries
through the inbox as the listeners hand them over, the job run here.

A direct conversation takes the commands in plain words; its run works in the asking message's
thread, an agent session whose status says so while the run works (the assistant thread's
status where the workspace has no agent sessions, a log line where it has neither) and leaves
"processing" when the run ends or is stopped. The session's Stop button stops the run through
`/agent stop`'s use case, by its rule. The report's 👍 / 👎 are Slack's feedback buttons, and a
click lands in the vote log as the old buttons' did."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slack_sdk import WebClient

from agents.pipeline import AgentProgress, Progress
from bot.app import Runtime, build_app
from bot.core.actor import Actor
from bot.core.commands import AnalyzeBranch
from bot.store.inbox import InboxStore
from bot.store.models import Run
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.blocks import REPORT_FEEDBACK, VOTE_FINDING
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import DIRECT_MESSAGE, SESSION_STOPPED, handlers
from bot.surfaces.slack.sessions import AgentSessions, set_status
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack, Message
from tests.support.gitrepo import RepoBuilder
from tests.test_inbox import Deployment, make_deployment
from tests.test_slack import TESTDATA

DM = "D111"
SESSIONS = "agents.sessions.setStatus"
ASSISTANT = "assistant.threads.setStatus"


@dataclass
class Chat:
    app: Runtime
    slack: FakeSlack
    inbox: SlackInbox

    def says(self, text: str, user: str = "W111", thread: str | None = None) -> Message:
        """`user` writes `text` to the app in a direct message; the app hears of it."""
        message = self.slack.person_posts(DM, text, thread)
        event = {
            "type": "message",
            "channel": DM,
            "channel_type": "im",
            "user": user,
            "team": "T111",
            "text": text,
            "ts": message.ts,
            "event_ts": message.ts,
        }
        if thread is not None:
            event["thread_ts"] = thread
        self._deliver(DIRECT_MESSAGE, f"Ev{message.ts}", event)
        return message

    def stops(self, thread: str, user: str) -> None:
        """`user` clicks the Stop button of the session in `thread`."""
        event = {
            "type": SESSION_STOPPED,
            "channel": DM,
            "thread_ts": thread,
            "user": user,
            "streaming_message_ts": [],
            "event_ts": "1800000000.000100",
        }
        self._deliver(SESSION_STOPPED, f"Ev-stop-{thread}-{user}", event)

    def _deliver(self, kind: str, event_id: str, event: dict[str, Any]) -> None:
        body = {
            "type": "event_callback",
            "team_id": "T111",
            "api_app_id": "A111",
            "event_id": event_id,
            "event": event,
        }
        self.inbox.receive(kind, f"slack:event:{event_id}", body, list, list)

    def statuses(self, method: str = SESSIONS) -> list[str]:
        return [str(call.args.get("status")) for call in self.slack.called(method)]

    def runs(self) -> list[Run]:
        return list(reversed(self.app.store.recent()))


@pytest.fixture
def deployment(tmp_path: Any, repo: RepoBuilder) -> Deployment:
    return make_deployment(tmp_path, repo)


@pytest.fixture
def chat(deployment: Deployment) -> Iterator[Chat]:
    with FakeSlack(channels=("C111", DM)) as slack:
        app = build_app(deployment.settings(slack))
        inbox = SlackInbox(
            InboxStore(app.engine),
            web_client(BOT_TOKEN, slack.api_url),
            handlers(app.service),
            worker="w-test",
            lease_s=60,
        )
        try:
            yield Chat(app, slack, inbox)
        finally:
            app.close()


def test_plain_words_in_a_direct_message_run_in_its_thread_with_the_session_status(
    chat: Chat,
) -> None:
    asked = chat.says("analyze branch feature/imports")
    [run] = chat.runs()
    assert (run.place, run.thread, run.requester) == (DM, asked.ts, "W111")
    [parent] = chat.slack.thread(asked.ts)  # the answer is in the asking message's thread
    assert "Analyzing feature/imports in shop" in parent.text
    [started] = chat.slack.called(SESSIONS)
    assert started.args == {
        "channel_id": DM,
        "thread_ts": asked.ts,
        "status": "processing",
        "title": "feature/imports in shop",
        "initiator_user_id": "W111",
    }
    assert started.response["ok"] and "warning" not in started.response  # Stop is subscribed

    chat.app.executor(run.id)  # the job
    [report] = [m for m in chat.slack.thread(asked.ts) if m.text.startswith("Report for")]
    statuses = chat.statuses()
    assert statuses[0] == "processing" and statuses[-1] == "active"
    assert set(statuses) == {"processing", "active"}
    last = chat.slack.called(SESSIONS)[-1]
    posted = [c for c in chat.slack.called("chat.postMessage") if c.response.get("ts") == report.ts]
    assert posted[0].at <= last.at  # the session stops processing once the report is in
    assert chat.slack.called(ASSISTANT) == []  # the workspace has sessions: nothing else
    blocks = json.dumps(report.blocks)
    assert '"type": "context_actions"' in blocks and '"type": "feedback_buttons"' in blocks


def test_a_direct_message_is_answered_in_its_thread_in_the_same_words(chat: Chat) -> None:
    status = chat.says("status")
    [answer] = chat.slack.thread(status.ts)
    assert answer.text == "You have no runs yet. Try `/agent analyze branch NAME`."
    prompt = chat.says("analyze ticket")  # a suggested prompt: the command without its key
    [question] = chat.slack.thread(prompt.ts)
    assert "Say which ticket." in question.text and "Usage: `analyze ticket KEY" in question.text
    assert "/agent" not in question.text
    in_thread = chat.says("analyze branch nope", thread=status.ts)
    [_, typed, refusal] = chat.slack.thread(status.ts)
    assert typed.ts == in_thread.ts and "No branch" in refusal.text and "nope" in refusal.text
    assert chat.runs() == [] and chat.slack.called(SESSIONS) == []  # nothing ran: no session


def test_the_sessions_stop_button_stops_the_run_by_the_rule_of_agent_stop(chat: Chat) -> None:
    asked = chat.says("analyze branch feature/imports")
    [run] = chat.runs()
    chat.stops(asked.ts, user="W999")  # a member, neither its requester nor an approver
    [refused] = chat.slack.called("chat.postEphemeral")
    assert refused.args["user"] == "W999" and refused.args["thread_ts"] == asked.ts
    assert (
        f"Only W111 (who asked for it) or an approver may stop run {run.id}"
        in (refused.args["text"])
    )
    assert chat.app.store.get(run.id).status == "queued"  # type: ignore[union-attr]
    assert chat.statuses() == ["processing"]  # still working, still stoppable

    chat.stops(asked.ts, user="W111")  # its requester
    stopped = chat.app.store.get(run.id)
    assert stopped is not None and stopped.status == "cancelled"
    assert stopped.stop_requested_by == "W111"
    said = chat.slack.called("chat.postEphemeral")[-1]
    assert said.args["user"] == "W111" and said.args["text"] == f"Run `{run.id}` cancelled."
    parent = [m for m in chat.slack.thread(asked.ts) if "Analyzing" in m.text][0]
    assert "cancelled by <@W111>" in parent.text
    assert chat.statuses() == ["processing", "active"]  # Slack leaves that to the app


def test_an_approver_stops_a_working_run_and_the_session_stays_stopped(chat: Chat) -> None:
    asked = chat.says("analyze branch feature/imports")
    [run] = chat.runs()
    assert chat.app.store.claim(run.id, "w-elsewhere", 60) is not None  # a worker has it
    chat.stops(asked.ts, user="U222")  # an approver
    said = chat.slack.called("chat.postEphemeral")[-1]
    assert said.args["text"] == f"Run `{run.id}` will stop after the current agent."
    assert chat.statuses() == ["processing", "active"]
    # the worker reaches its checkpoint: the stopped run does not show as working again
    [sessions] = [o for o in chat.app.executor.observers if isinstance(o, AgentSessions)]
    sessions.progress(run.id, Progress(run.id, [AgentProgress("code_review", "running")]))
    assert chat.statuses() == ["processing", "active"]


def test_stop_in_words_in_the_session_ends_its_processing_too(chat: Chat) -> None:
    asked = chat.says("analyze branch feature/imports")
    [run] = chat.runs()
    chat.says(f"stop {run.id}", thread=asked.ts)
    assert chat.app.store.get(run.id).status == "cancelled"  # type: ignore[union-attr]
    assert f"Run `{run.id}` cancelled." in [m.text for m in chat.slack.thread(asked.ts)]
    assert chat.statuses() == ["processing", "active"]
    chat.stops(asked.ts, user="W111")  # a late click: nothing runs there any more
    said = chat.slack.called("chat.postEphemeral")[-1]
    assert said.args["text"] == "Nothing is running here any more."


def test_without_agent_sessions_the_assistant_thread_shows_the_status(chat: Chat) -> None:
    chat.slack.refusals[SESSIONS] = "unknown_method"  # a workspace without agent sessions
    asked = chat.says("analyze branch feature/imports")
    [run] = chat.runs()
    [shown] = chat.slack.called(ASSISTANT)
    assert shown.response["ok"] and shown.args == {
        "channel_id": DM,
        "thread_ts": asked.ts,
        "status": "is analyzing feature/imports in shop…",
    }
    chat.app.executor(run.id)
    said = chat.statuses(ASSISTANT)
    assert any(s.startswith("is running ") for s in said)  # what works, agent by agent
    assert said[-1] == ""  # cleared when the run ends
    assert len(said) == len(set(said))  # each shown once, not at every checkpoint
    assert [m for m in chat.slack.thread(asked.ts) if m.text.startswith("Report for")]


def test_with_no_status_at_all_the_run_goes_on_and_a_line_is_logged(
    chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    chat.slack.refusals.update({SESSIONS: "not_allowed", ASSISTANT: "not_allowed"})
    with caplog.at_level(logging.INFO, logger="bot.surfaces.slack.sessions"):
        asked = chat.says("analyze branch feature/imports")
        [run] = chat.runs()
        chat.app.executor(run.id)
    assert chat.app.store.get(run.id).status == "done"  # type: ignore[union-attr]
    assert [m for m in chat.slack.thread(asked.ts) if m.text.startswith("Report for")]
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.surfaces.slack.sessions"]
    assert lines and all("agent sessions answered not_allowed" in line for line in lines)


@pytest.mark.parametrize("error", ["not_allowed", "unknown_method", "missing_scope"])
def test_each_answer_of_a_workspace_without_sessions_falls_back(error: str) -> None:
    with FakeSlack(channels=(DM,)) as slack:
        client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
        thread = slack.person_posts(DM, "analyze branch feature/x").ts
        slack.refusals[SESSIONS] = error
        assert set_status(client, DM, thread, "processing", "is analyzing…") == "assistant"
        assert set_status(client, DM, thread, "active") == "assistant"
        assert [c.args["status"] for c in slack.called(ASSISTANT)] == ["is analyzing…", ""]
        # a session's own error (a thread Slack does not know) is not a missing feature
        del slack.refusals[SESSIONS]
        assert set_status(client, DM, "1.2", "processing", "is analyzing…") is None
        assert len(slack.called(ASSISTANT)) == 2


def _feedback_click(chat: Chat, report: Message, value: str, at: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (TESTDATA / "block_actions_button_in_thread.json").read_text()
    )
    payload.update(
        user={"id": "W111", "team_id": "T111"},
        team={"id": "T111"},
        channel={"id": "C111"},
        response_url=chat.slack.response_url(),
        trigger_id="1800000000.111.abc",
    )
    payload["message"].update(ts=report.ts, text=report.text, blocks=report.blocks)
    payload["actions"] = [
        {
            "type": "feedback_buttons",
            "action_id": REPORT_FEEDBACK,
            "block_id": "report_vote",
            "value": value,
            "text": {"type": "plain_text", "text": "👍"},
            "action_ts": at,
        }
    ]
    return payload


def test_the_reports_feedback_buttons_vote_into_the_same_log(chat: Chat) -> None:
    requested = chat.app.service.request_analysis(
        Actor("W111", "slack", team="T111"), AnalyzeBranch("feature/imports"), place="C111"
    )
    chat.app.executor(requested.run.id)
    [report] = [m for m in chat.slack.messages if m.text.startswith("Report for")]
    [actions] = [b for b in report.blocks if b["type"] == "context_actions"]
    [buttons] = actions["elements"]
    assert buttons["type"] == "feedback_buttons" and buttons["action_id"] == REPORT_FEEDBACK
    up, down = buttons["positive_button"]["value"], buttons["negative_button"]["value"]
    assert (up, down) == (f"up:{requested.run.id}", f"down:{requested.run.id}")
    # the per-finding menu is still there
    menus = [b["accessory"] for b in report.blocks if b.get("accessory")]
    assert menus and all(m["action_id"] == VOTE_FINDING for m in menus)

    for at, value in enumerate((up, down)):
        body = _feedback_click(chat, report, value, f"1800000000.00{at}")
        key = f"slack:action:W111:{body['actions'][0]['action_ts']}:{REPORT_FEEDBACK}"
        chat.inbox.receive(REPORT_FEEDBACK, key, body, list, list)
    rows = chat.app.service.feedback.store.votes()
    assert [(r.user, r.fingerprint, r.vote, r.via) for r in rows] == [("W111", "", -1, "button")]
    assert any(
        r["text"] == f"Recorded 👍 on the report of run {requested.run.id}."
        for r in chat.slack.responses
    )
    [modal] = chat.slack.views  # the 👎 asks what was wrong, as before
    assert modal["type"] == "modal" and modal["callback_id"] == "vote_reason"
