"""Shows runs in Slack as they go: the progress streams in the run's thread where the workspace
can stream (`stream.py`: one task per agent), else the parent message is edited at each
checkpoint; the parent gets its final state either way, and the report (or the failure) is posted
in its thread, with the full report as a file when it does not fit one message."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agents.lifecycle import delta_line
from agents.pipeline import AgentProgress, Progress, Saved
from agents.report import Report
from bot.core.approvals import target_branch
from bot.core.messages import MessageRef, RunMessages, subject, thread_of
from bot.core.ports import WriteResult
from bot.store.models import ProposalRow, Run
from bot.surfaces.render.markdown import render_markdown
from bot.surfaces.slack.blocks import (
    PREVIEW_CHARS,
    ParentView,
    checkpoint_blocks,
    delta_blocks,
    escape,
    failure_blocks,
    parent_blocks,
    parent_text,
    report_blocks,
    verdict_line,
)
from bot.surfaces.slack.stream import ProgressStreams

log = logging.getLogger(__name__)
# The listener posts the parent message right after the run is queued; a fast worker may finish
# first. Wait this long for the message before posting the report without a thread.
PARENT_WAIT_S = 5.0
STREAMING_NOTE = ":hourglass_flowing_sand: Its progress, agent by agent, is in this thread."


def post_parent(
    client: WebClient,
    messages: RunMessages,
    run: Run,
    channel: str,
    requester: str,
    thread: str | None = None,
) -> str:
    """Post a run's parent message in `channel` and keep where it is. A branch shown there
    before: the message goes in that run's thread (a branch has one thread per channel), and
    the earlier parent says it was superseded. `thread`: the thread to post in instead (an
    agent session's, in a direct conversation), superseding only an earlier run there. Raises
    SlackApiError when it cannot post."""
    earlier = messages.earlier_posted(run, channel)
    if thread is None:
        thread = thread_of(earlier) if earlier is not None else None
    elif earlier is not None and thread_of(earlier) != thread:
        earlier = None  # shown in another session: nothing is superseded there
    view = ParentView(run.id, requester, subject(run), run.repo, "queued", [])
    posted = client.chat_postMessage(
        channel=channel, text=parent_text(view), blocks=parent_blocks(view), thread_ts=thread
    )
    ts = str(posted["ts"])
    messages.set_message(run.id, MessageRef(channel, ts, thread))
    if earlier is not None:
        _mark_superseded(client, messages, earlier, run)
    return ts


def _mark_superseded(client: WebClient, messages: RunMessages, earlier: Run, run: Run) -> None:
    """The earlier run's parent message gets a line: a newer run of the branch is in its thread."""
    assert earlier.place is not None and earlier.message is not None
    report = messages.report(earlier.id)
    view = ParentView(
        earlier.id,
        earlier.requester,
        subject(earlier),
        earlier.repo,
        earlier.status,
        agents_of(earlier),
        verdict_line(report) if report is not None else "",
        note=f":arrows_counterclockwise: Superseded by run `{run.id}`: "
        "its update is in this thread.",
    )
    edit_parent(client, earlier, view)


def edit_parent(client: WebClient, run: Run, view: ParentView) -> None:
    """Show `view` in the run's parent message. A lost edit is cosmetic (the run, its report
    and its thread stand either way): it is logged, never raised."""
    assert run.place is not None and run.message is not None
    try:
        client.chat_update(
            channel=run.place, ts=run.message, text=parent_text(view), blocks=parent_blocks(view)
        )
    except SlackApiError as exc:
        log.warning("run %s: chat.update failed: %s", run.id, exc.response.get("error"))


class SlackNotifier:
    def __init__(
        self,
        client: WebClient,
        messages: RunMessages,
        hosted: Callable[[str], bool] = lambda repo: False,
    ) -> None:
        """`hosted(repo)`: has the repository a code host (so a change can be approved as a
        pull request)?"""
        self.client = client
        self.messages = messages
        self.hosted = hosted
        self.streams = ProgressStreams(client)

    def announce(self, run_id: str) -> None:
        """A run no listener posted (a followed branch moved): its parent, in the thread."""
        run = self.messages.run(run_id)
        if run is None or run.surface != "slack" or not run.place or run.message:
            return
        try:
            post_parent(self.client, self.messages, run, run.place, run.requester)
        except SlackApiError as exc:
            log.warning(
                "run %s: could not post it in %s: %s", run_id, run.place, exc.response.get("error")
            )
            self.messages.withdraw(run_id)  # a run nobody can see is not run

    def _run(self, run_id: str, wait: bool = False) -> Run | None:
        deadline = time.monotonic() + (PARENT_WAIT_S if wait else 0)
        while True:
            run = self.messages.run(run_id)
            if run is None or run.surface != "slack" or not run.place:
                return None
            if run.message or time.monotonic() >= deadline:
                return run
            time.sleep(0.1)

    def progress(self, run_id: str, progress: Progress) -> None:
        run = self._run(run_id)
        if run is None or not run.message:
            return
        if run.step:  # its legs run in any process: the parent, not a stream, shows them
            self._update(run, "running", progress.agents)
            return
        shown = self.streams.show(run, progress.agents)
        if shown == "started":  # the parent says where the progress is, and fills in at the end
            view = ParentView(
                run.id, run.requester, subject(run), run.repo, "running", [], note=STREAMING_NOTE
            )
            edit_parent(self.client, run, view)
        elif shown == "not_streamed":
            self._update(run, "running", progress.agents)

    def waiting(self, run_id: str, checkpoint: Saved) -> None:
        """The parent message shows the checkpoint: the agent's findings, Continue / Stop."""
        run = self._run(run_id, wait=True)
        if run is None or not run.message:
            return
        show_checkpoint(self.client, run, checkpoint)

    def finished(self, run_id: str, report: Report) -> None:
        run = self._run(run_id, wait=True)
        if run is None:
            return
        # One poster per report: the worker that finished it, or a reaper redelivering it.
        marker = f"pending:{uuid.uuid4().hex[:12]}"
        if not self.messages.claim_report_post(run.id, marker):
            return
        try:
            self._post_report(run, report)
        except Exception:
            self.messages.release_report_post(run.id, marker)
            raise

    def _post_report(self, run: Run, report: Report) -> None:
        agents = [
            AgentProgress(
                a.name, "cancelled" if a.status == "skipped" else a.status, a.duration_ms, a.error
            )
            for a in report.agents
        ]
        status = "done"
        if report.stopped_early:
            by = run.stop_requested_by
            status = f"stopped by <@{by}>" if by else "stopped"
        delta = run.thread is not None and report.previous is not None
        word = "Done" if not report.stopped_early else "Stopped"
        self.streams.stop(
            run,
            agents,
            f"**{word}**: risk {report.verdict()}. The {'update' if delta else 'report'} "
            "follows in this thread.",
        )
        if run.message:
            self._update(run, status, agents, verdict_line(report))
        assert run.place is not None
        thread = thread_of(run)
        if run.thread is not None and report.previous is not None:
            # A re-run in the branch's thread: what changed, not the whole report again.
            earlier = {report.previous.run_id} | {
                f.first_seen.run_id for f in report.findings if f.first_seen is not None
            }
            links = {run: link for run in sorted(earlier) if (link := self._report_link(run))}
            blocks, cut = delta_blocks(report, links, hosted=self.hosted(run.repo)), False
            text = f"Update for {report.target.branch}: {delta_line(report)}"
        else:
            blocks, cut = report_blocks(report, hosted=self.hosted(run.repo))
            text = f"Report for {report.target.branch}: risk {report.verdict()}"
        posted = self.client.chat_postMessage(
            channel=run.place,
            thread_ts=thread,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        self.messages.set_report_message(run.id, str(posted["ts"]))
        for proposal in report.proposals:
            if len(proposal.content) > PREVIEW_CHARS:  # approvers see the exact change
                suffix = "diff" if proposal.kind.value == "patch" else "txt"
                self.client.files_upload_v2(
                    channel=run.place,
                    thread_ts=thread,
                    content=proposal.content,
                    filename=f"{report.run_id}-{proposal.id}.{suffix}",
                    title=f"{report.run_id}/{proposal.id}: the exact change",
                )
        if cut:
            self.client.files_upload_v2(
                channel=run.place,
                thread_ts=thread,
                content=render_markdown(report),
                filename=f"chatops-report-{report.run_id}.md",
                title=f"Full report: {report.target.branch}",
            )

    def failed(self, run_id: str, error: str) -> None:
        run = self._run(run_id, wait=True)
        if run is None:
            return
        assert run.place is not None
        agents = [
            AgentProgress(a.name, "failed", a.duration_ms) if a.status == "running" else a
            for a in agents_of(run)
        ]
        self.streams.stop(run, agents, "**Failed**: the reason follows in this thread.")
        if run.message:
            self._update(run, "failed", agents)
        self.client.chat_postMessage(
            channel=run.place,
            thread_ts=thread_of(run),
            text=f"The analysis failed: {error[:200]}",
            blocks=failure_blocks(run.id, error),
        )

    def proposal_done(self, proposal: ProposalRow, run: Run, result: WriteResult) -> None:
        if run.surface != "slack" or not run.place:
            return
        ref = f"{run.id}/{proposal.pid}"
        who = f"<@{proposal.decided_by}>" if proposal.decided_by else "an approver"
        if result.outcome == "applied":
            text = (
                f":white_check_mark: *{ref} applied*: commit `{(result.commit or '')[:10]}` "
                f"on `{escape(target_branch(run, proposal))}`, approved by {who}."
            )
        elif result.outcome == "stale":
            text = (
                f":warning: *{ref} not applied*: {escape(result.detail)}. Nothing was "
                f"written. Run `/agent analyze branch {escape(run.target)} in {run.repo}` "
                "again for a fresh proposal."
            )
        elif result.unsure:
            text = f":warning: *{ref} may not be applied*: {escape(result.detail)}."
        else:
            text = f":x: *{ref} not applied*: {escape(result.detail)}. Nothing was written."
        self.client.chat_postMessage(channel=run.place, thread_ts=thread_of(run), text=text)

    def _report_link(self, run_id: str) -> str | None:
        """A link to an earlier run's report message, where its findings were shown."""
        earlier = self.messages.run(run_id)
        if earlier is None or not earlier.place or not earlier.report_message:
            return None
        if earlier.report_message.startswith("pending:"):
            return None
        try:
            found = self.client.chat_getPermalink(
                channel=earlier.place, message_ts=earlier.report_message
            )
        except SlackApiError as exc:  # the delta stands without its link
            log.info("no permalink for run %s's report: %s", run_id, exc.response.get("error"))
            return None
        link = found.get("permalink")
        return str(link) if link else None

    def _update(
        self, run: Run, status: str, agents: list[AgentProgress], verdict: str = ""
    ) -> None:
        view = ParentView(run.id, run.requester, subject(run), run.repo, status, agents, verdict)
        edit_parent(self.client, run, view)


def show_checkpoint(client: WebClient, run: Run, checkpoint: Saved) -> None:
    """A waiting run's parent message: its checkpoint (after a drop too). A lost edit is
    logged; `/agent continue RUN` works either way."""
    assert run.place is not None and run.message is not None
    until = run.wait_until.strftime("%Y-%m-%d %H:%M UTC") if run.wait_until else "its deadline"
    view = ParentView(
        run.id,
        run.requester,
        subject(run),
        run.repo,
        f"waiting after {checkpoint.after}",
        agents_of(run),
    )
    try:
        client.chat_update(
            channel=run.place,
            ts=run.message,
            text=f"{parent_text(view)}: continue or stop",
            blocks=checkpoint_blocks(view, checkpoint, until),
        )
    except SlackApiError as exc:
        log.warning("run %s: chat.update failed: %s", run.id, exc.response.get("error"))


def agents_of(run: Run) -> list[AgentProgress]:
    """The agents' last progress the run stored (its parent message shows them)."""
    return [AgentProgress(**item) for item in json.loads(run.progress)] if run.progress else []
