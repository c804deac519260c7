"""Streaming a run's progress (chat.startStream / appendStream / stopStream): the fake Web API
holds the methods to the catalog's argument rules, and the notifier streams one task per agent in
the run's thread where the workspace can, and edits the parent message where it cannot. The real
slack_sdk client against the fake on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import MarkdownTextChunk, TaskUpdateChunk

from agents.pipeline import AgentProgress, AgentStatus, Progress
from agents.report import AgentRun, Report, Risk, RiskLevel, Target
from bot.core.messages import RunMessages
from bot.store.runs import NewRun
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.notifier import STREAMING_NOTE, SlackNotifier
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.test_slack_notifier import a_slack_run, store_at

AGENTS = ("code_review", "tests", "risk")


def parent_ts(slack: FakeSlack) -> str:
    return slack.top_level()[0].ts


def error_of(call: object) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()  # type: ignore[operator]
    return str(raised.value.response["error"])


# -- the fake's rules ---------------------------------------------------------------------------


def test_the_fake_holds_start_stream_to_the_catalogs_rules() -> None:
    with FakeSlack(channels=("C111", "D111")) as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        ts = str(client.chat_postMessage(channel="C111", text="parent")["ts"])
        dm = str(client.chat_postMessage(channel="D111", text="asked")["ts"])
        who = {"recipient_user_id": "W111", "recipient_team_id": "T111"}

        def start(**args: object) -> None:
            client.api_call("chat.startStream", json={"channel": "C111", **args})

        assert error_of(lambda: start(**who)) == "invalid_arguments"  # thread_ts is required
        assert error_of(lambda: start(thread_ts=ts)) == "missing_recipient_user_id"
        assert (
            error_of(lambda: start(thread_ts=ts, recipient_user_id="W111"))
            == "missing_recipient_team_id"
        )
        assert error_of(lambda: start(thread_ts="1.2", **who)) == "invalid_arguments"
        assert (
            error_of(lambda: start(thread_ts=ts, markdown_text="x" * 12_001, **who))
            == "invalid_arguments"
        )
        assert (
            error_of(lambda: start(thread_ts=ts, task_display_mode="gantt", **who))
            == "invalid_arguments"
        )
        bad_task = {"type": "task_update", "id": "a", "title": "a", "status": "done"}
        assert error_of(lambda: start(thread_ts=ts, chunks=[bad_task], **who)) == "invalid_chunks"
        assert (
            error_of(lambda: start(thread_ts=ts, chunks=[{"type": "poem"}], **who))
            == "invalid_chunks"
        )
        assert slack.streams() == []
        started = client.chat_startStream(
            channel="C111",
            thread_ts=ts,
            markdown_text="x" * 12_000,
            recipient_user_id="W111",
            recipient_team_id="T111",
        )
        # A direct conversation needs no recipient.
        client.chat_startStream(channel="D111", thread_ts=dm, markdown_text="hello")
        first, second = slack.streams()
        assert first.ts == started["ts"] and first.thread_ts == ts
        assert first.stream is not None and first.stream.recipient_user_id == "W111"
        assert second.channel == "D111" and second.text == "hello"
        assert slack.thread(ts) == []  # a stream is not among the posted replies


def test_only_a_stream_this_app_started_and_still_streams_takes_appends() -> None:
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        ts = str(client.chat_postMessage(channel="C111", text="parent")["ts"])
        stream = str(
            client.chat_startStream(
                channel="C111",
                thread_ts=ts,
                recipient_user_id="W111",
                recipient_team_id="T111",
                markdown_text="Hello",
            )["ts"]
        )

        def append(at: str, **args: object) -> None:
            client.chat_appendStream(channel="C111", ts=at, **args)  # type: ignore[arg-type]

        assert error_of(lambda: append("1.2", markdown_text="x")) == "message_not_found"
        assert error_of(lambda: append(ts, markdown_text="x")) == "message_not_in_streaming_state"
        assert error_of(lambda: append(stream)) == "no_text"
        assert error_of(lambda: append(stream, markdown_text="x" * 12_001)) == "invalid_arguments"
        append(stream, markdown_text=", wor")
        append(stream, chunks=[MarkdownTextChunk(text="ld")])
        client.chat_stopStream(channel="C111", ts=stream, markdown_text="!")
        assert error_of(lambda: append(stream, markdown_text="more")) == (
            "message_not_in_streaming_state"
        )
        assert error_of(lambda: client.chat_stopStream(channel="C111", ts=stream)) == (
            "message_not_in_streaming_state"
        )
        [message] = slack.streams(ts)
        assert message.text == "Hello, world!"
        assert message.stream is not None and message.stream.state == "stopped"

        again = str(
            client.chat_startStream(
                channel="C111", thread_ts=ts, recipient_user_id="W111", recipient_team_id="T111"
            )["ts"]
        )
        slack.stop_stream_as_user(again)
        assert error_of(lambda: append(again, markdown_text="x")) == "stopped_by_user"


def test_slack_sdks_own_stream_helper_works_against_the_fake() -> None:
    """ChatStream buffers text, starts the stream on its first flush and stops it: the shapes it
    sends are the ones the fake takes."""
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        ts = str(client.chat_postMessage(channel="C111", text="parent")["ts"])
        streamer = client.chat_stream(
            channel="C111",
            thread_ts=ts,
            recipient_user_id="W111",
            recipient_team_id="T111",
            task_display_mode="plan",
            buffer_size=8,
        )
        streamer.append(markdown_text="Working ")
        streamer.append(chunks=[TaskUpdateChunk(id="t1", title="Looking", status="in_progress")])
        streamer.stop(chunks=[TaskUpdateChunk(id="t1", title="Looking", status="complete")])
        [message] = slack.streams(ts)
        assert message.text == "Working "
        assert message.stream is not None
        assert message.stream.task_display_mode == "plan"
        assert message.stream.tasks["t1"]["status"] == "complete"
        assert message.stream.state == "stopped"


def test_a_workspace_without_streaming_answers_every_stream_method_so() -> None:
    with FakeSlack() as slack:
        slack.stream_refusal = "unknown_method"
        client = web_client(BOT_TOKEN, slack.api_url)
        ts = str(client.chat_postMessage(channel="C111", text="parent")["ts"])
        assert error_of(lambda: client.chat_startStream(channel="C111", thread_ts=ts)) == (
            "unknown_method"
        )
        assert error_of(
            lambda: client.chat_appendStream(channel="C111", ts=ts, markdown_text="x")
        ) == ("unknown_method")
        assert error_of(lambda: client.chat_stopStream(channel="C111", ts=ts)) == ("unknown_method")


# -- the notifier -------------------------------------------------------------------------------


def checkpoints() -> list[list[AgentProgress]]:
    """What the pipeline tells: everyone waiting, then each agent running and done."""
    states: dict[str, AgentStatus] = dict.fromkeys(AGENTS, "waiting")
    seen = [[AgentProgress(name, states[name]) for name in AGENTS]]
    for name in AGENTS:
        for status in ("running", "done"):
            states[name] = status
            seen.append(
                [AgentProgress(n, states[n], 1200 if states[n] == "done" else 0) for n in AGENTS]
            )
    return seen


def a_report(
    run_id: str, stopped_early: bool = False, agents: list[AgentRun] | None = None
) -> Report:
    return Report(
        run_id=run_id,
        summary="s <!channel>",
        risk=Risk(level=RiskLevel.low, score=10),
        target=Target(
            repo="/r", branch="feature/x", base="main", head_sha="a" * 40, base_sha="b" * 40
        ),
        agents=agents
        if agents is not None
        else [AgentRun(name=name, status="done", duration_ms=1200) for name in AGENTS],
        stopped_early=stopped_early,
    )


def run_through(
    notifier: SlackNotifier, run_id: str, steps: list[list[AgentProgress]] | None = None
) -> None:
    for agents in steps if steps is not None else checkpoints():
        notifier.progress(run_id, Progress(run_id, agents))


def test_progress_streams_one_task_per_agent_in_the_thread_to_the_requester(
    tmp_path: Path,
) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        slack.user_teams["W111"] = "T999"  # the requester's own team, from users.info
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
        notifier = SlackNotifier(client, RunMessages(store))
        run_through(notifier, run.id)
        # While it runs the parent only says where the progress is: one edit, not one per step.
        [parent] = slack.top_level()
        assert parent.edits == 1
        assert STREAMING_NOTE.split(":", 2)[2].strip() in json.dumps(parent.blocks)
        [start] = slack.called("chat.startStream")
        assert start.args["thread_ts"] == posted["ts"]
        assert start.args["recipient_user_id"] == "W111"
        assert start.args["recipient_team_id"] == "T999"
        assert start.args["task_display_mode"] == "plan"
        appends = slack.called("chat.appendStream")
        assert len(appends) == 2 * len(AGENTS)  # each agent starts and ends
        assert all(len(c.args["chunks"]) == 1 for c in appends)  # only what changed is sent
        [stream] = slack.streams(posted["ts"])
        assert stream.stream is not None and stream.stream.state == "streaming"
        assert {t: v["status"] for t, v in stream.stream.tasks.items()} == dict.fromkeys(
            AGENTS, "complete"
        )

        notifier.finished(run.id, a_report(run.id))
        assert stream.stream.state == "stopped"
        assert "**Done**: risk LOW 10/100" in stream.text
        assert "<!channel>" not in stream.text  # the model's summary is not streamed
        assert parent.edits == 2  # and at the end, its final state
        final = json.dumps(parent.blocks)
        assert ": done" in final and "Risk: LOW 10/100" in final
        assert "`risk` done (1.2 s)" in final
        [report] = slack.thread(posted["ts"])
        assert report.text.startswith("Report for feature/x")
        assert float(report.ts) > float(stream.ts)  # the report comes below the progress


def test_without_streaming_the_parent_fills_in_at_each_checkpoint(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        slack.stream_refusal = "unknown_method"
        client = web_client(BOT_TOKEN, slack.api_url)
        notifier = SlackNotifier(client, RunMessages(store))
        for n in range(2):
            run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
            run_through(notifier, run.id)
            notifier.finished(run.id, a_report(run.id))
            parent = slack.top_level()[n]
            assert parent.edits == len(checkpoints()) + 1
            assert ": done" in json.dumps(parent.blocks)
            [report] = slack.thread(posted["ts"])
            assert report.text.startswith("Report for")
        # The workspace said it cannot stream: the second run did not ask again.
        assert len(slack.called("chat.startStream")) == 1
        assert slack.called("chat.appendStream") == slack.called("chat.stopStream") == []
        assert slack.streams() == []


def test_a_run_nobody_asked_for_is_not_streamed(tmp_path: Path) -> None:
    """A followed branch's run is the policy's: nobody to stream to, so the parent fills in."""
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        posted = client.chat_postMessage(channel="C111", text="Analyzing")
        run, _ = store.create(
            NewRun(requester="policy", surface="slack", repo="shop", target="f", place="C111")
        )
        store.set_message(run.id, "C111", str(posted["ts"]))
        notifier = SlackNotifier(client, RunMessages(store))
        run_through(notifier, run.id)
        assert slack.called("chat.startStream") == []
        assert slack.top_level()[0].edits == len(checkpoints())


def test_a_stream_the_person_stopped_hands_the_rest_to_the_parent(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
        notifier = SlackNotifier(client, RunMessages(store))
        steps = checkpoints()
        run_through(notifier, run.id, steps[:2])  # started, code_review running
        [stream] = slack.streams(posted["ts"])
        slack.stop_stream_as_user(stream.ts)
        run_through(notifier, run.id, steps[2:3])  # the append is refused: the parent shows it
        [parent] = slack.top_level()
        assert parent.edits == 2
        assert "`code_review` done" in json.dumps(parent.blocks)
        run_through(notifier, run.id, steps[3:])
        assert parent.edits == 2 + len(steps[3:])  # one edit per checkpoint from then on
        assert len(slack.called("chat.appendStream")) == 2  # the one that worked, the refused
        notifier.finished(run.id, a_report(run.id))
        assert slack.called("chat.stopStream") == []  # the person's stop stands
        assert ": done" in json.dumps(parent.blocks)


def test_a_failed_run_ends_its_stream_with_the_agent_in_error(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
        assert store.claim(run.id, "w", 60) is not None
        running = [
            AgentProgress("code_review", "running"),
            AgentProgress("tests"),
            AgentProgress("risk"),
        ]
        store.heartbeat(run.id, "w", 60, progress=json.dumps([a.__dict__ for a in running]))
        notifier = SlackNotifier(client, RunMessages(store))
        notifier.progress(run.id, Progress(run.id, running))
        notifier.failed(run.id, "No branch named 'feature/x'.")
        [stream] = slack.streams(posted["ts"])
        assert stream.stream is not None and stream.stream.state == "stopped"
        assert stream.stream.tasks["code_review"]["status"] == "error"
        assert stream.stream.tasks["tests"]["status"] == "pending"
        assert "**Failed**" in stream.text
        [reply] = slack.thread(posted["ts"])
        assert "The analysis failed." in json.dumps(reply.blocks)
        assert ": failed" in json.dumps(slack.top_level()[0].blocks)


def test_a_stopped_run_shows_the_agents_it_never_ran_as_not_run(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    with FakeSlack() as slack:
        client = web_client(BOT_TOKEN, slack.api_url)
        run, posted = a_slack_run(store, client, "Analyzing feature/x in shop")
        notifier = SlackNotifier(client, RunMessages(store))
        run_through(notifier, run.id, checkpoints()[:3])  # code_review done, the rest waiting
        report = a_report(
            run.id,
            stopped_early=True,
            agents=[
                AgentRun(name="code_review", status="done", duration_ms=1200),
                AgentRun(name="tests", status="skipped", duration_ms=0),
                AgentRun(name="risk", status="skipped", duration_ms=0),
            ],
        )
        notifier.finished(run.id, report)
        [stream] = slack.streams(posted["ts"])
        assert stream.stream is not None
        tests = stream.stream.tasks["tests"]
        assert tests["status"] == "pending" and tests["output"] == "not run: the run was stopped"
        assert "**Stopped**" in stream.text
