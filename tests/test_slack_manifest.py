"""manifest.yml is valid against Slack's official schema, and says exactly what the app handles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema
import yaml
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from bot.core.approvals import Outcome
from bot.store.db import make_engine, upgrade
from bot.store.inbox import InboxStore
from bot.store.stats import Acceptance
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import ACTIONS, COMMANDS, EVENTS, VIEWS, handlers, register
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.testdata import slack_testdata

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = slack_testdata("manifest-schema")


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return loaded


def test_manifest_validates_against_the_official_schema() -> None:
    schema = json.loads((SCHEMA / "manifest.schema.1.0.0.json").read_text())
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


def _event(kind: str) -> dict[str, Any]:
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
        "event_id": f"Ev-{kind}",
        "event": {
            "type": kind,
            "text": "<@UBOT> help",
            "user": "W111",
            "channel": "C111",
            "ts": "1.1",
        },
    }


def test_every_declared_command_and_event_is_handled_and_nothing_else(tmp_path: Path) -> None:
    declared = manifest()
    commands = {c["command"] for c in declared["features"]["slash_commands"]}
    events = set(declared["settings"]["event_subscriptions"]["bot_events"])
    assert commands == set(COMMANDS)
    assert events == set(EVENTS)
    with FakeSlack() as slack:
        app = _app(slack, tmp_path)
        form = "application/x-www-form-urlencoded"
        for command in commands:
            assert _dispatch(app, _command(command), form) == 200, command
        for event in events:
            assert _dispatch(app, _event(event), "application/json") == 200, event
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
        assert decisions == [":no_entry: Not done: test."] * 2
        votes = [r["text"] for r in slack.responses if r["text"] == "Not a vote."]
        assert len(votes) == 3  # nothing wired: the vote buttons say so
        [no_report] = [r["text"] for r in slack.responses if "no report" in r["text"]]
        assert "There is no report for run `not-a-proposal` any more." in no_report
        [home] = slack.views  # app_home_opened published the Home tab
        assert home["type"] == "home" and home["user_id"] == "W111"
        assert _dispatch(app, _event("member_joined_channel"), "application/json") == 404
        [reply] = slack.messages  # the mention was answered in its thread with the help
        assert reply.thread_ts == "1.1" and "analyze branch NAME" in reply.text


def test_scopes_are_the_fewest_that_work() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    assert scopes == {
        "commands",
        "chat:write",
        "app_mentions:read",
        "files:write",
        "reactions:read",
        "users:read",
        "usergroups:read",
    }


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
