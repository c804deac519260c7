"""The Slack app end to end over real HTTP: `chatops serve` in HTTP mode, requests signed with
Slack's algorithm built from the real payloads in ../shared/testdata, and the fake Slack Web API
(Block Kit limits, rate limits, the file-upload flow) as SLACK_API_URL."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from tests.conftest import BASE_FILES, PLANTED
from tests.support.fakes.jira_api import EMAIL as JIRA_EMAIL
from tests.support.fakes.jira_api import TOKEN as JIRA_TOKEN
from tests.support.fakes.jira_api import FakeJira, Ticket
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.support.processes import clean_env
from tests.support.testdata import slack_testdata

pytestmark = pytest.mark.slow

SECRET = "test-signing-secret"
TESTDATA = slack_testdata("payloads")


def sign(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}


@dataclass
class Served:
    url: str
    slack: FakeSlack
    repo: RepoBuilder
    data: Path
    jira: FakeJira

    def post(
        self,
        body: bytes,
        headers: dict[str, str],
        content_type: str = "application/x-www-form-urlencoded",
    ) -> tuple[int, bytes, float]:
        request = urllib.request.Request(
            f"{self.url}/slack/events",
            data=body,
            method="POST",
            headers={"content-type": content_type, **headers},
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), time.perf_counter() - started
        except urllib.error.HTTPError as error:
            return error.code, error.read(), time.perf_counter() - started

    def command(
        self,
        text: str,
        *,
        trigger: str | None = None,
        channel: str = "C111",
        extra_headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret: str = SECRET,
    ) -> tuple[int, bytes, float]:
        form = dict(parse_qsl((TESTDATA / "slash_command.form.txt").read_text().strip()))
        form.update(
            command="/agent",
            text=text,
            channel_id=channel,
            user_id="W111",
            response_url=self.slack.response_url(),
            trigger_id=trigger or f"{uuid.uuid4().int % 10**12}.111.abc",
        )
        body = urlencode(form).encode()
        return self.post(body, {**sign(body, timestamp, secret), **(extra_headers or {})})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("slack")
    repo = RepoBuilder(root / "shop")
    repo.commit(BASE_FILES, "base")
    repo.branch("feature/planted")
    repo.commit(PLANTED, "planted")
    repo.checkout("main")
    repo.branch("feature/many")
    repo.commit({f"shop/gen_{i}.py": f"def run_{i}(x):\n    return eval(x)\n" for i in range(60)})
    repo.checkout("main")
    other = RepoBuilder(root / "web")
    other.commit({"README.md": "web\n"})
    policy = root / "chatops.toml"
    repo.branch("feature/PAY-412-retry")
    repo.commit(
        {"shop/billing.py": "def charge_with_retry(gateway):\n    return gateway.charge()\n"}
    )
    repo.checkout("main")
    repo.branch("feature/imports")
    repo.commit(
        {
            "shop/cli.py": "import json\nimport os\nimport sys\n\n\ndef main():\n"
            "    return sys.argv\n"
        }
    )
    repo.checkout("main")
    policy.write_text(
        f'[repos.shop]\npath = "{repo.root}"\n\n[repos.web]\npath = "{other.root}"\n\n'
        '[approvals]\napprovers = ["U222"]\n'
    )
    port = free_port()
    with FakeSlack() as slack, FakeJira() as jira:
        jira.add(
            Ticket(
                "PAY-412",
                "Retry failed charges",
                "h3. Acceptance criteria\n"
                "* A failed charge is retried\n* Nobody is charged twice\n",
            )
        )
        env = clean_env(
            CHATOPS_DATA_DIR=str(root / "data"),
            CHATOPS_CONFIG=str(policy),
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            CHATOPS_WORKERS="2",
            JIRA_URL=jira.url,
            JIRA_EMAIL=JIRA_EMAIL,
            JIRA_API_TOKEN=JIRA_TOKEN,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                    assert response.read() == b"ok"
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        server.stderr.read().decode() if server.stderr else ""
                    ) from None
                time.sleep(0.1)
        try:
            yield Served(url, slack, repo, root / "data", jira)
        finally:
            server.terminate()
            server.wait(timeout=10)


def parent_for(slack: FakeSlack, branch: str) -> str:
    def find() -> str | None:
        for message in slack.top_level():
            if f"Analyzing {branch} in" in message.text:
                return message.ts
        return None

    return str(slack.wait_for(find))


def test_a_command_yields_parent_message_progress_and_a_threaded_report(served: Served) -> None:
    status, body, elapsed = served.command("analyze branch feature/planted in shop")
    assert status == 200 and body == b""
    assert elapsed < 1.0
    ts = parent_for(served.slack, "feature/planted")
    report = served.slack.wait_for(
        lambda: [m for m in served.slack.thread(ts) if m.text.startswith("Report for")]
    )
    [message] = report
    text = json.dumps(message.blocks)
    assert "Possible AWS Access Key added" in text
    assert "AKIA4HJXZQ2WBNVGL7PK" not in text
    assert "shop/orders.py:11" in text
    assert "Risk: CRITICAL" in text
    parent = next(m for m in served.slack.top_level() if m.ts == ts)
    assert parent.edits >= 2  # progress lines, then the verdict
    assert "code_review" in json.dumps(parent.blocks) and "Risk: CRITICAL" in json.dumps(
        parent.blocks
    )
    # The progress streamed in the thread, one task per agent, and the stream was stopped.
    [stream] = served.slack.streams(ts)
    assert stream.stream is not None and stream.stream.state == "stopped"
    assert "code_review" in stream.stream.tasks and "**Done**" in stream.text
    # Nothing the bot sent broke a limit.
    assert [c.response for c in served.slack.calls if not c.response.get("ok", True)] == []


def test_a_report_too_large_for_a_message_comes_with_the_full_file(served: Served) -> None:
    status, _, _ = served.command("analyze branch feature/many in shop")
    assert status == 200
    ts = parent_for(served.slack, "feature/many")
    [shared] = served.slack.wait_for(
        lambda: [f for f in served.slack.shared_files if f["thread_ts"] == ts]
    )
    content = shared["content"].decode()
    assert content.startswith("# Analysis of `feature/many` against `main`")
    assert content.count("B307") >= 60
    [message] = [m for m in served.slack.thread(ts) if m.text.startswith("Report for")]
    assert len(message.blocks) <= 50
    assert "The full report is in the file below" in json.dumps(message.blocks)


def test_bad_signature_and_stale_timestamp_get_401_and_start_nothing(served: Served) -> None:
    before = len(served.slack.calls)
    forged, _, _ = served.command("analyze branch feature/planted in shop", secret="wrong")
    stale, _, _ = served.command(
        "analyze branch feature/planted in shop", timestamp=int(time.time()) - 6 * 60
    )
    assert (forged, stale) == (401, 401)
    time.sleep(0.5)
    assert [c.method for c in served.slack.calls[before:]] == []


def test_a_retried_command_starts_one_run(served: Served) -> None:
    served.repo.branch("feature/retry", "main")
    served.repo.commit({"shop/retry.py": "X = 1\n"})
    served.repo.checkout("main")
    trigger = "5555.111.retry"
    first = served.command("analyze branch feature/retry in shop", trigger=trigger)
    again = served.command(
        "analyze branch feature/retry in shop",
        trigger=trigger,
        extra_headers={"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"},
    )
    assert first[0] == again[0] == 200
    parent_for(served.slack, "feature/retry")
    time.sleep(1.0)
    assert len([m for m in served.slack.top_level() if "feature/retry" in m.text]) == 1


def test_a_repeated_event_id_starts_one_run(served: Served) -> None:
    served.repo.branch("feature/mention", "main")
    served.repo.commit({"shop/mention.py": "Y = 2\n"})
    served.repo.checkout("main")
    payload = json.loads((TESTDATA / "AppMentionPayload.json").read_text())
    # The file has every key with placeholder values; fill the ones an event callback needs.
    payload.update(
        type="event_callback",
        team_id="T111",
        api_app_id="A111",
        event_id=f"Ev{uuid.uuid4().hex[:10].upper()}",
    )
    payload["event"].update(
        text="<@UBOT> analyze branch feature/mention in shop",
        channel="C111",
        user="W111",
        ts="1700000000.000001",
        thread_ts=None,
        bot_id=None,
        app_id=None,
        bot_profile=None,
    )
    body = json.dumps(payload).encode()
    for retry in ("", "1"):
        headers = {**sign(body), **({"x-slack-retry-num": retry} if retry else {})}
        status, _, _ = served.post(body, headers, content_type="application/json")
        assert status == 200
    parent_for(served.slack, "feature/mention")
    time.sleep(1.0)
    assert len([m for m in served.slack.top_level() if "feature/mention" in m.text]) == 1


def test_an_invalid_command_gets_ephemeral_usage(served: Served) -> None:
    status, body, _ = served.command("analyse branch x")
    assert status == 200
    answer = json.loads(body)
    assert answer["response_type"] == "ephemeral"
    assert "Unknown command 'analyse'" in answer["text"]
    assert "/agent help" in answer["text"]


def test_help_lists_the_commands(served: Served) -> None:
    _, body, _ = served.command("help")
    text = json.loads(body)["text"]
    assert "/agent analyze branch NAME [in REPO] [against BASE]" in text


def test_an_unknown_repository_lists_the_known_ones(served: Served) -> None:
    before = len(served.slack.responses)
    status, _, _ = served.command("analyze branch feature/planted in nope")
    assert status == 200
    [reply] = served.slack.wait_for(lambda: served.slack.responses[before:])
    assert reply["response_type"] == "ephemeral"
    assert "Unknown repository 'nope'. Known: shop, web." in reply["text"]


def test_no_repository_named_when_several_are_configured(served: Served) -> None:
    before = len(served.slack.responses)
    served.command("analyze branch feature/planted")
    [reply] = served.slack.wait_for(lambda: served.slack.responses[before:])
    assert "Several repositories are configured" in reply["text"]


def test_a_channel_without_the_bot_says_to_invite_it(served: Served) -> None:
    before = len(served.slack.responses)
    served.command("analyze branch feature/planted in shop", channel="CNOTIN")
    [reply] = served.slack.wait_for(lambda: served.slack.responses[before:])
    assert "not_in_channel" in reply["text"] and "/invite @chatops" in reply["text"]


def test_rate_limited_updates_are_retried_after_retry_after(served: Served) -> None:
    served.repo.branch("feature/ratelimit", "main")
    served.repo.commit({"shop/rl.py": "Z = 3\n"})
    served.repo.checkout("main")
    served.slack.rate_limit_next("chat.update", times=1)
    served.command("analyze branch feature/ratelimit in shop")
    ts = parent_for(served.slack, "feature/ratelimit")
    served.slack.wait_for(
        lambda: [m for m in served.slack.thread(ts) if m.text.startswith("Report for")]
    )
    updates = [c for c in served.slack.called("chat.update") if c.args.get("ts") == ts]
    limited = [c for c in served.slack.calls if c.status == 429]
    assert limited, "the fake should have answered 429 once"
    assert any(c.at - limited[0].at >= 0.9 for c in updates if c.status == 200)


def test_status_and_stop_answer_ephemerally(served: Served) -> None:
    before = len(served.slack.responses)
    served.command("status")
    [reply] = served.slack.wait_for(lambda: served.slack.responses[before:])
    assert reply["response_type"] == "ephemeral"
    assert "feature/planted in shop" in reply["text"]
    before = len(served.slack.responses)
    served.command("stop nope")
    [reply] = served.slack.wait_for(lambda: served.slack.responses[before:])
    assert "No run 'nope'." in reply["text"]


def click(served: Served, user: str, message_ts: str, value: str, action_id: str) -> int:
    payload = json.loads((TESTDATA / "block_actions_button_in_thread.json").read_text())
    message = next(m for m in served.slack.messages if m.ts == message_ts)
    payload["user"] = {"id": user, "team_id": "T111"}
    payload["team"] = {"id": "T111"}
    payload["channel"] = {"id": "C111"}
    payload["container"].update(
        channel_id="C111", message_ts=message_ts, thread_ts=message.thread_ts
    )
    payload["message"].update(
        ts=message_ts, text=message.text, blocks=message.blocks, thread_ts=message.thread_ts
    )
    payload["response_url"] = served.slack.response_url()
    payload["actions"] = [
        {
            "action_id": action_id,
            "block_id": f"proposal:{value.split(':')[0]}",
            "value": value,
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
    ]
    body = urlencode({"payload": json.dumps(payload)}).encode()
    status, _, _ = served.post(body, sign(body))
    return status


def test_an_approvers_click_commits_the_ruff_fix_once_and_the_thread_says_so(
    served: Served,
) -> None:
    base = served.repo.head("feature/imports")
    served.command("analyze branch feature/imports in shop")
    ts = parent_for(served.slack, "feature/imports")
    [report] = served.slack.wait_for(
        lambda: [m for m in served.slack.thread(ts) if m.text.startswith("Report for")]
    )
    [value] = [
        e["value"]
        for b in report.blocks
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == "proposal_approve"
    ]
    ref = value.split(":")[0]

    before = len(served.slack.responses)
    assert click(served, "W111", report.ts, value, "proposal_approve") == 200  # the requester
    [denied] = served.slack.wait_for(lambda: served.slack.responses[before:])
    assert "four-eyes is on" in denied["text"] and denied["response_type"] == "ephemeral"

    assert click(served, "U222", report.ts, value, "proposal_approve") == 200
    assert click(served, "U222", report.ts, value, "proposal_approve") == 200  # a double click
    served.slack.wait_for(
        lambda: [m for m in served.slack.thread(ts) if f"{ref} applied" in m.text]
    )
    time.sleep(0.5)
    head = served.repo.head("feature/imports")
    assert served.repo.git("rev-list", "--count", f"{base}..{head}").strip() == "1"
    message = served.repo.git("log", "-1", "--format=%B", head)
    assert "Approved-by: U222" in message and "Requested-by: W111" in message
    assert f"Chatops-Run: {ref.split('/')[0]}" in message
    updated = next(m for m in served.slack.messages if m.ts == report.ts)
    assert "Approved by <@U222>" in json.dumps(updated.blocks)
    assert not [
        b
        for b in updated.blocks
        if b.get("block_id") == f"proposal:{ref}" and b.get("type") == "actions"
    ]
    assert len([m for m in served.slack.thread(ts) if f"{ref} applied" in m.text]) == 1


def test_a_ticket_gets_a_compliance_report_and_one_approved_comment(served: Served) -> None:
    served.command("analyze ticket PAY-412 in shop")
    ts = parent_for(served.slack, "feature/PAY-412-retry")
    [report] = served.slack.wait_for(
        lambda: [m for m in served.slack.thread(ts) if m.text.startswith("Report for")]
    )
    text = json.dumps(report.blocks)
    assert "Compliance with PAY-412" in text and "A failed charge is retried" in text
    values = [
        e["value"]
        for b in report.blocks
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == "proposal_approve"
    ]
    comment = next(v for v in values if f"P{len(values)}:" in v)  # the comment comes last
    ref = comment.split(":")[0]
    assert click(served, "U222", report.ts, comment, "proposal_approve") == 200
    served.slack.wait_for(
        lambda: [m for m in served.slack.thread(ts) if f"{ref} applied" in m.text]
    )
    assert click(served, "U222", report.ts, comment, "proposal_approve") == 200
    time.sleep(0.5)
    comments = served.jira.tickets["PAY-412"].comments
    assert len(comments) == 1
    assert f"chatops:{ref}" in comments[0]["body"]
    assert "||Criterion||Judgment||Evidence||" in comments[0]["body"]


def interact(served: Served, payload: dict[str, object]) -> tuple[int, bytes]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    status, answer, _ = served.post(body, sign(body))
    return status, answer


def block_action(served: Served, user: str, message_ts: str, action: dict[str, object]) -> int:
    payload = json.loads((TESTDATA / "block_actions_button_in_thread.json").read_text())
    message = next(m for m in served.slack.messages if m.ts == message_ts)
    payload.update(
        user={"id": user, "team_id": "T111"},
        team={"id": "T111"},
        channel={"id": "C111"},
        trigger_id=f"{uuid.uuid4().int % 10**12}.111.{uuid.uuid4().hex[:8]}",
        response_url=served.slack.response_url(),
        actions=[{"action_ts": f"{time.time():.6f}", **action}],
    )
    payload["container"].update(channel_id="C111", message_ts=message_ts)
    payload["message"].update(ts=message_ts, text=message.text, blocks=message.blocks)
    return interact(served, payload)[0]


def event(served: Served, kind: str, **fields: object) -> int:
    name = (
        "event_app_home_opened.json" if kind == "app_home_opened" else "event_reaction_added.json"
    )
    payload = json.loads((TESTDATA / name).read_text())
    payload["event"] = {"type": kind, **fields}
    payload["event_id"] = f"Ev{uuid.uuid4().hex[:10]}"
    body = json.dumps(payload).encode()
    return served.post(body, sign(body), "application/json")[0]


def votes(served: Served) -> list[tuple[str, str, int, str | None, str | None, str]]:
    from sqlmodel import select

    from bot.store.db import make_engine, session_scope
    from bot.store.models import FeedbackRow

    engine = make_engine(f"sqlite:///{served.data / 'chatops.db'}")
    with session_scope(engine) as session:
        rows = list(session.exec(select(FeedbackRow).order_by(FeedbackRow.id)))
    engine.dispose()
    return [(r.user, r.fingerprint, r.vote, r.reason, r.correction, r.via) for r in rows]


def report_of(served: Served, branch: str) -> tuple[str, Any]:
    served.command(f"analyze branch {branch} in shop")
    ts = parent_for(served.slack, branch)
    [report] = served.slack.wait_for(
        lambda: [m for m in served.slack.thread(ts) if m.text.startswith("Report for")]
    )
    return ts, report


def test_votes_by_overflow_modal_and_reactions_reach_the_log(served: Served) -> None:
    served.repo.branch("feature/votes", "main")
    served.repo.commit({"shop/votes.py": "def run(x):\n    return eval(x)\n"})
    served.repo.checkout("main")
    parent_ts, report = report_of(served, "feature/votes")
    [section] = [b for b in report.blocks if "accessory" in b and "`F1`" in b["text"]["text"]]
    menu = section["accessory"]
    assert menu["type"] == "overflow" and menu["action_id"] == "finding_vote"
    down = menu["options"][1]
    assert down["value"].startswith("down:")
    fingerprint = down["value"].rsplit(":", 1)[1]

    views_before = len(served.slack.views)
    assert (
        block_action(
            served,
            "W111",
            report.ts,
            {"action_id": "finding_vote", "type": "overflow", "selected_option": down},
        )
        == 200
    )
    [modal] = served.slack.wait_for(lambda: served.slack.views[views_before:])
    assert modal["type"] == "modal" and modal["callback_id"] == "vote_reason"
    served.slack.wait_for(lambda: [v for v in votes(served) if v[1] == fingerprint])

    submission = json.loads((TESTDATA / "view_submission.json").read_text())
    submission["user"] = {"id": "W111", "team_id": "T111"}
    submission["view"].update(callback_id="vote_reason", private_metadata=modal["private_metadata"])
    submission["view"]["state"] = {"values": {"reason": {"reason": {"value": ""}}}}
    status, answer = interact(served, submission)  # no reason: Slack shows the error in the modal
    assert status == 200 and json.loads(answer)["errors"] == {"reason": "Say what was wrong."}
    submission["view"]["state"] = {
        "values": {
            "reason": {"reason": {"type": "plain_text_input", "value": "eval of a constant"}},
            "correction": {"correction": {"type": "plain_text_input", "value": "No finding"}},
        }
    }
    assert interact(served, submission)[0] == 200
    served.slack.wait_for(lambda: [v for v in votes(served) if v[3] == "eval of a constant"])

    # 👍 on the report message by someone else, then taken back
    assert (
        event(
            served,
            "reaction_added",
            user="W222",
            reaction="+1::skin-tone-3",
            item={"type": "message", "channel": "C111", "ts": report.ts},
        )
        == 200
    )
    served.slack.wait_for(lambda: [v for v in votes(served) if v[0] == "W222"])
    # a Slack Connect guest's reaction is not a vote: votes change what later runs report
    served.slack.user_teams["WEXT"] = "T999"
    assert (
        event(
            served,
            "reaction_added",
            user="WEXT",
            reaction="-1",
            item={"type": "message", "channel": "C111", "ts": report.ts},
        )
        == 200
    )
    served.slack.wait_for(
        lambda: [c for c in served.slack.called("users.info") if c.args.get("user") == "WEXT"]
    )
    # a reaction on a message that is not a run's changes nothing
    assert (
        event(
            served,
            "reaction_added",
            user="W333",
            reaction="-1",
            item={"type": "message", "channel": "C111", "ts": "1.000001"},
        )
        == 200
    )
    assert (
        event(
            served,
            "reaction_removed",
            user="W222",
            reaction="+1",
            item={"type": "message", "channel": "C111", "ts": parent_ts},
        )
        == 200
    )
    served.slack.wait_for(lambda: not [v for v in votes(served) if v[0] == "W222"])
    mine = [v for v in votes(served) if v[0] == "W111" and v[1] == fingerprint]
    assert mine == [("W111", fingerprint, -1, "eval of a constant", "No finding", "button")]
    assert not [v for v in votes(served) if v[0] in ("W333", "WEXT")]


def test_the_home_tab_shows_runs_with_links_approvals_and_acceptance(served: Served) -> None:
    served.repo.branch("feature/home", "main")
    served.repo.commit({"shop/home.py": "import os\nimport sys\n\n\ndef main():\n    return 1\n"})
    served.repo.checkout("main")
    _, report = report_of(served, "feature/home")
    run_id = json.dumps(report.blocks).split("run `")[1].split("`")[0]
    before = len(served.slack.views)
    assert event(served, "app_home_opened", user="W111", tab="home", channel="D111") == 200
    assert event(served, "app_home_opened", user="U222", tab="messages", channel="D111") == 200
    assert event(served, "app_home_opened", user="U222", tab="home", channel="D111") == 200
    published = served.slack.wait_for(
        lambda: served.slack.views[before:] if len(served.slack.views) >= before + 2 else None
    )
    time.sleep(0.3)
    assert len(served.slack.views) == before + 2  # the "messages" tab publishes nothing
    by_user = {view["user_id"]: view for view in published}
    mine, approver = by_user["W111"], by_user["U222"]
    text = json.dumps(mine["blocks"])
    assert f"`{run_id}` *feature/home* in shop: done" in text
    assert f"{served.slack.url}/archives/C111/p" in text  # a link to the run's thread
    assert "acceptance rate (30 days)" in text
    assert "Nothing waits for you." in text  # W111 is not an approver
    buttons = [
        e
        for b in approver["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["value"].startswith(f"{run_id}/P1:")
    ]
    assert [b["action_id"] for b in buttons] == ["proposal_approve", "proposal_reject"]


def test_digest_on_demand_posts_in_the_channel_with_its_chart(served: Served) -> None:
    files_before = len(served.slack.shared_files)
    status, _, _ = served.command("digest")
    assert status == 200
    [message] = served.slack.wait_for(
        lambda: [m for m in served.slack.top_level() if m.text.startswith("chatops digest")]
    )
    text = json.dumps(message.blocks)
    assert "*Runs*" in text and "*Acceptance" in text and "*Tokens and cost*" in text
    [chart] = served.slack.wait_for(lambda: served.slack.shared_files[files_before:])
    assert chart["content"].startswith(b"\x89PNG")


def test_serve_exposes_prometheus_metrics_with_ack_latency(served: Served) -> None:
    served.command("help")
    with urllib.request.urlopen(f"{served.url}/metrics", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    count = next(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("chatops_slack_ack_seconds_count")
    )
    assert count >= 1
    assert 'chatops_runs{status="done"}' in text and "chatops_queue_depth" in text
    assert "chatops_store_up 1.0" in text
