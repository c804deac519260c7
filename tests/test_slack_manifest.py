"""manifest.yml is valid against Slack's official schema, and says exactly what the app handles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema
import pytest
import yaml
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from bot.core.approvals import Outcome
from bot.core.commands import USAGE, AnalyzeBranch, CommandError, Digest, Status, parse
from bot.store.db import make_engine, upgrade
from bot.store.inbox import InboxStore
from bot.store.stats import Acceptance
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import (
    ACTIONS,
    COMMANDS,
    DIRECT_MESSAGE,
    EVENTS,
    SESSION_STOPPED,
    VIEWS,
    handlers,
    register,
)
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.testdata import slack_testdata

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = slack_testdata("manifest-schema")


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return loaded


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_manifest_validates_against_the_official_schema(version: str) -> None:
    schema = json.loads((SCHEMA / f"manifest.schema.{version}.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(manifest(), schema, cls=jsonschema.Draft7Validator)


def test_the_schema_would_catch_a_broken_manifest() -> None:
    schema = json.loads((SCHEMA / "manifest.schema.1.0.0.json").read_text())
    broken = manifest()
    broken["features"]["slash_commands"][0]["command"] = "agent without slash"
    broken["oauth_config"]["scopes"]["bot"] = "chat:write"
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    assert errors


class _NoVotes:
    def team_acceptance(self, days: int = 30) -> Acceptance:
        return Acceptance(0, 0)


class _NoMessages:
    def run_for_message(self, channel: str, ts: str) -> None:
        return None

    def unfinished_in_thread(self, place: str, thread: str) -> list[object]:
        return []

    def run(self, run_id: str) -> None:
        return None


class _DenyAll:
    """Just enough of the service for the listeners to answer: every decision is denied, and
    nothing is waiting or voted."""

    feedback = _NoVotes()
    messages = _NoMessages()

    def decide(self, *args: object, **kwargs: object) -> Outcome:
        return Outcome(False, "Not done: test.")

    def require_member(self, *args: object) -> None:
        return None

    def recent_runs(self, *args: object, **kwargs: object) -> list[object]:
        return []

    def waiting_for(self, *args: object, **kwargs: object) -> list[object]:
        return []


def _dispatch(app: App, body: dict[str, Any] | str, content_type: str) -> int:
    raw = body if isinstance(body, str) else json.dumps(body)
    response = app.dispatch(BoltRequest(body=raw, headers={"content-type": [content_type]}))
    return int(response.status)


def _app(slack: FakeSlack, data: Path) -> App:
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
    app = App(
        client=client,
        signing_secret="unused",
        request_verification_enabled=False,
        process_before_response=True,
    )
    url = f"sqlite:///{data / 'inbox.db'}"
    upgrade(url)
    inbox = SlackInbox(
        InboxStore(make_engine(url)),
        client,
        handlers(_DenyAll()),  # type: ignore[arg-type]  # just enough of the door
        worker="test",
        lease_s=60,
    )
    register(app, inbox)
    return app


def _command(name: str) -> str:
    return urlencode(
        {
            "command": name,
            "text": "help",
            "user_id": "W111",
            "channel_id": "C111",
            "team_id": "T111",
            "trigger_id": "1.2.3",
            "response_url": "x",
        }
    )


def _action(action_id: str, slack: FakeSlack) -> str:
    payload = json.loads(
        slack_testdata("payloads", "block_actions_button_in_thread.json").read_text()
    )
    payload["actions"][0].update(action_id=action_id, value="not-a-proposal")
    payload["response_url"] = slack.response_url()
    return urlencode({"payload": json.dumps(payload)})


def _event(kind: str, **event: Any) -> dict[str, Any]:
    if kind == DIRECT_MESSAGE:  # subscribed as message.im, delivered as a `message` in an IM
        event = {"type": "message", "channel_type": "im", "channel": "D111", **event}
    elif kind == SESSION_STOPPED:
        thread = event.get("ts")
        event = {"type": kind, "channel": "D111", "thread_ts": thread, "streaming_message_ts": []}
    recorded = {
        "reaction_added": "event_reaction_added.json",
        "reaction_removed": "event_reaction_added.json",
        "app_home_opened": "event_app_home_opened.json",
    }
    if kind in recorded:
        payload: dict[str, Any] = json.loads(slack_testdata("payloads", recorded[kind]).read_text())
        payload["event"]["type"] = kind
        payload["event"]["tab"] = "home"
        payload["event_id"] = f"Ev-{kind}"
        return payload
    return {
        "type": "event_callback",
        "team_id": "T111",
        "api_app_id": "A111",
        "event_id": f"Ev-{kind}-{event.get('ts', '1.1')}",
        "event": {
            "type": kind,
            "text": "<@UBOT> help",
            "user": "W111",
            "channel": "C111",
            "ts": "1.1",
            **event,
        },
    }


def test_every_declared_command_and_event_is_handled_and_nothing_else(tmp_path: Path) -> None:
    declared = manifest()
    commands = {c["command"] for c in declared["features"]["slash_commands"]}
    events = set(declared["settings"]["event_subscriptions"]["bot_events"])
    assert commands == set(COMMANDS)
    assert events == set(EVENTS)
    with FakeSlack(channels=("C111", "D111")) as slack:
        app = _app(slack, tmp_path)
        form = "application/x-www-form-urlencoded"
        for command in commands:
            assert _dispatch(app, _command(command), form) == 200, command
        asked = slack.person_posts("D111", "help")  # the direct message, and its session
        for event in events:
            assert _dispatch(app, _event(event, ts=asked.ts), "application/json") == 200, event
        for action in ACTIONS:
            assert _dispatch(app, _action(action, slack), form) == 200, action
        for callback in VIEWS:
            submission = json.loads(slack_testdata("payloads", "view_submission.json").read_text())
            submission["view"]["callback_id"] = callback
            body = urlencode({"payload": json.dumps(submission)})
            assert _dispatch(app, body, form) == 200, callback
        # Bolt answers 404 for what no listener handles: an undeclared command, event, action.
        assert _dispatch(app, _command("/deploy"), form) == 404
        assert _dispatch(app, _action("delete_everything", slack), form) == 404
        decisions = [r["text"] for r in slack.responses if "Not done" in r["text"]]
        assert decisions == [":no_entry: Not done: test."] * 3  # approve, approve as PR, reject
        votes = [r["text"] for r in slack.responses if r["text"] == "Not a vote."]
        assert len(votes) == 4  # nothing wired: the vote buttons and menu say so
        [no_report] = [r["text"] for r in slack.responses if "no report" in r["text"]]
        assert "There is no report for run `not-a-proposal` any more." in no_report
        [home] = slack.views  # app_home_opened published the Home tab
        assert home["type"] == "home" and home["user_id"] == "W111"
        assert _dispatch(app, _event("member_joined_channel"), "application/json") == 404
        # the mention and the direct message were answered in their threads with the help
        [mention] = [m for m in slack.thread(asked.ts) if m.channel == "C111"]
        [direct] = [m for m in slack.thread(asked.ts) if m.channel == "D111"]
        assert "@chatops analyze branch NAME" in mention.text
        assert "\n  analyze branch NAME" in direct.text and "/agent" not in direct.text
        # the Stop of a session with nothing running: said to the clicker, the session ends
        [stop] = slack.called("chat.postEphemeral")
        assert stop.args["user"] == "W111" and "Nothing is running" in stop.args["text"]
        [ended] = slack.called("agents.sessions.setStatus")
        assert ended.args["status"] == "active" and ended.response["ok"]


def test_scopes_are_the_fewest_that_work() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    assert scopes == {
        "commands",
        "chat:write",
        "app_mentions:read",
        "im:history",
        "assistant:write",
        "files:write",
        "reactions:read",
        "users:read",
        "usergroups:read",
    }
    events = set(manifest()["settings"]["event_subscriptions"]["bot_events"])
    # Slack sends an event only with its scope: each subscription has the one it needs.
    needs = {
        "app_mention": "app_mentions:read",
        "message.im": "im:history",
        "reaction_added": "reactions:read",
        "reaction_removed": "reactions:read",
    }
    assert {needs[e] for e in events if e in needs} <= scopes


def test_the_agent_view_is_declared_and_its_prompts_are_commands() -> None:
    """The app is an agent: a description, and suggested prompts for a branch, a ticket, the
    status and the digest. A prompt sends its message as typed, so each is a command the
    grammar answers: a command, or a question for the name it needs with that command's usage."""
    declared = manifest()
    view = declared["features"]["agent_view"]
    assert 0 < len(view["agent_description"]) <= 300
    assert "analyze branch" in view["agent_description"]
    home = declared["features"]["app_home"]
    assert home["messages_tab_enabled"] and not home["messages_tab_read_only_enabled"]
    answers: list[object] = []
    for prompt in view["suggested_prompts"]:
        try:
            answers.append(type(parse(prompt["message"])))
        except CommandError as exc:
            answers.append(exc.usage)
    assert answers == [USAGE["analyze"], USAGE["ticket"], Status, Digest]
    assert isinstance(parse("analyze branch feature/x"), AnalyzeBranch)  # the plain words


def test_the_fake_grants_exactly_the_manifests_scopes() -> None:
    """Every end-to-end test runs with the scopes manifest.yml asks for: a method it forgot
    fails there as it would in a workspace."""
    from slack_sdk.errors import SlackApiError

    with FakeSlack() as granted, FakeSlack(scopes={"chat:write"}) as narrow:
        client = WebClient(token=BOT_TOKEN, base_url=granted.api_url)
        assert client.users_info(user="W111")["user"]["team_id"] == "T111"
        try:
            WebClient(token=BOT_TOKEN, base_url=narrow.api_url).users_info(user="W111")
        except SlackApiError as exc:
            assert exc.response["error"] == "missing_scope"
            assert exc.response["needed"] == "users:read"
        else:
            raise AssertionError("users.info without users:read must fail")


def test_a_direct_message_that_is_no_persons_command_is_acked_and_not_answered(
    tmp_path: Path,
) -> None:
    """The app's own messages, another bot's, edits and deletions arrive as `message` events in
    the conversation too: acked, never recorded, never answered (it would answer itself)."""
    with FakeSlack(channels=("C111", "D111")) as slack:
        app = _app(slack, tmp_path)
        ignored = [
            {"user": "UBOT", "bot_id": "B111"},  # its own reply
            {"user": "UBOT"},  # its own, as the user it is
            {"bot_id": "B999", "subtype": "bot_message"},
            {"subtype": "message_changed", "message": {"text": "help"}},
            {"subtype": "message_deleted"},
            {"channel_type": "channel", "channel": "C111"},  # not a direct conversation
        ]
        for n, fields in enumerate(ignored):
            body = _event(DIRECT_MESSAGE, ts=f"2.{n}", text="help")
            body["event"].update(fields)
            assert _dispatch(app, body, "application/json") == 200, fields
        assert slack.messages == []
        body = _event(DIRECT_MESSAGE, ts="3.1", text="help")  # a person's, for contrast
        assert _dispatch(app, body, "application/json") == 200
        [reply] = slack.messages
        assert reply.channel == "D111" and reply.thread_ts == "3.1"
