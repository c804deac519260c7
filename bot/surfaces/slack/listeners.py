"""Bolt listeners: validate, record, ack, then call the use cases from the record (the inbox).
Nothing slow runs before `ack()`: one insert."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agents.errors import shown
from bot.core.actor import Actor, UserError
from bot.core.approvals import Outcome
from bot.core.checkpoints import Dropped, saved_of
from bot.core.commands import (
    AnalyzeBranch,
    AnalyzePullRequest,
    AnalyzeTicket,
    Command,
    CommandError,
    Continue,
    Digest,
    FlagRetire,
    Follow,
    Help,
    Learnings,
    Status,
    Stop,
    Unfollow,
    help_text,
    parse,
)
from bot.core.digests import Posted
from bot.core.feedback import Voted
from bot.core.follows import follows_text
from bot.core.messages import MessageRef, subject, thread_of
from bot.core.service import Asked, Requested, Service
from bot.store.models import LearningRow, Run
from bot.surfaces.render.markdown import render_markdown
from bot.surfaces.slack.blocks import (
    APPROVE,
    APPROVE_AS_PR,
    CHECKPOINT_CONTINUE,
    CHECKPOINT_DROP,
    CHECKPOINT_STOP,
    FULL_REPORT,
    REJECT,
    REPORT_FEEDBACK,
    VOTE_DOWN,
    VOTE_FINDING,
    VOTE_UP,
    ParentView,
    decided_blocks,
    escape,
    parse_drop_value,
    parse_vote_value,
)
from bot.surfaces.slack.home import publish_home
from bot.surfaces.slack.inbox import (
    STORE_DOWN,
    Delivery,
    Handler,
    SlackInbox,
    is_direct_message,
)
from bot.surfaces.slack.notifier import edit_parent, post_parent, show_checkpoint
from bot.surfaces.slack.sessions import end_session, leave_if_idle, start_session
from bot.surfaces.slack.views import (
    DROP_REASON,
    REASON_BLOCK,
    VOTE_REASON,
    drop_modal,
    modal_values,
    vote_modal,
)

log = logging.getLogger(__name__)

# A message in a direct conversation with the app: Slack's subscription is `message.im`, its
# event a `message` with channel_type "im". The agent view's conversations are these.
DIRECT_MESSAGE = "message.im"
# An agent session's Stop button was clicked.
SESSION_STOPPED = "agent_session_stopped"
# What this app handles; manifest.yml declares exactly these (tests/test_slack_manifest.py).
COMMANDS = ("/agent",)
EVENTS = (
    "app_mention",
    "reaction_added",
    "reaction_removed",
    "app_home_opened",
    DIRECT_MESSAGE,
    SESSION_STOPPED,
)
ACTIONS = (
    APPROVE,
    APPROVE_AS_PR,
    REJECT,
    VOTE_UP,
    VOTE_DOWN,
    VOTE_FINDING,
    FULL_REPORT,
    REPORT_FEEDBACK,
    CHECKPOINT_CONTINUE,
    CHECKPOINT_STOP,
    CHECKPOINT_DROP,
)
VIEWS = (VOTE_REASON, DROP_REASON)
# Reactions that are votes on a report (skin tones are stripped first).
_REACTION_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}


def register(app: App, inbox: SlackInbox) -> None:
    """The whole surface: one slash command, its buttons, a modal and six events. The manifest
    declares exactly these (tests/test_slack_manifest.py keeps the two in step). Each listener
    answers at once only what needs no record (usage, help, a modal's validation); everything
    else is recorded in the inbox, acked, then handled from the record."""

    @app.command(COMMANDS[0])
    def on_command(ack: Ack, body: dict[str, Any]) -> None:
        try:
            parsed = parse(body.get("text", ""))
        except CommandError as exc:
            ack(response_type="ephemeral", text=_usage_error(exc))
            return
        if isinstance(parsed, Help):
            ack(response_type="ephemeral", text=f"```{help_text()}```")
            return
        inbox.receive(
            "command",
            f"slack:command:{body.get('trigger_id')}",
            body,
            ack,
            lambda: ack(response_type="ephemeral", text=STORE_DOWN),
        )

    def on_event(ack: Ack, body: dict[str, Any]) -> None:
        kind = str((body.get("event") or {}).get("type", ""))
        key = f"slack:event:{body.get('event_id')}"
        inbox.receive(kind, key, body, ack, _down(ack, inbox, key, body))

    for name in EVENTS:
        if name != DIRECT_MESSAGE:
            app.event(name)(on_event)

    @app.event("message")
    def on_message(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        event = body.get("event") or {}
        if not _from_a_person(event, context.bot_user_id):  # never an answer to itself
            ack()
            return
        key = f"slack:event:{body.get('event_id')}"
        inbox.receive(DIRECT_MESSAGE, key, body, ack, _down(ack, inbox, key, body))

    def on_action(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id")
        key = f"slack:action:{user}:{action.get('action_ts')}:{action.get('action_id')}"
        inbox.receive(str(action.get("action_id")), key, body, ack, _down(ack, inbox, key, body))

    for action_id in ACTIONS:
        app.action(action_id)(on_action)

    def reason_view(callback_id: str, needs_finding: bool, empty: str) -> None:
        """A modal that asks why (a 👎's, a drop's): recorded once it says something."""

        def on_view(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
            run_id, fingerprint, reason, _ = modal_values(view)
            if not run_id or (needs_finding and not fingerprint):
                ack()  # not our modal's metadata: nothing to attach the reason to
                log.warning("a %s modal came back without what it is about; ignored", callback_id)
                return
            if not reason.strip():
                ack(response_action="errors", errors={REASON_BLOCK: empty})
                return
            key = f"slack:view:{view.get('id')}:{view.get('hash')}"
            inbox.receive(callback_id, key, body, ack, ack)

        app.view(callback_id)(on_view)

    reason_view(VIEWS[0], needs_finding=False, empty="Say what was wrong.")
    reason_view(DROP_REASON, needs_finding=True, empty="Say why it is not a problem.")


Reply = Callable[[str], None]


def _from_a_person(event: dict[str, Any], bot_user: str | None) -> bool:
    """A direct message someone typed: not the app's own (nor another bot's), not an edit, a
    deletion or any other subtype."""
    user = event.get("user")
    return (
        is_direct_message(event)
        and not event.get("subtype")
        and not event.get("bot_id")
        and bool(user)
        and user != bot_user
    )


def _down(ack: Ack, inbox: SlackInbox, key: str, body: dict[str, Any]) -> Callable[[], None]:
    """With the store down: ack, then say so where the delivery came from."""

    def unavailable() -> None:
        ack()
        inbox.store_down(key, body)

    return unavailable


def handlers(service: Service) -> dict[str, Handler]:
    """What each recorded delivery does, by kind: the inbox runs these, live or replayed."""

    def on_command(delivery: Delivery) -> None:
        command = delivery.body
        _handle(
            parse(command.get("text", "")),
            delivery,
            channel=command["channel_id"],
            service=service,
        )

    def on_words(prefix: str, usage_prefix: str) -> Handler:
        """A command in plain words: a mention's (after the mention) or a direct message's."""

        def handle(delivery: Delivery) -> None:
            event = delivery.body["event"]
            text = " ".join(w for w in event.get("text", "").split() if not w.startswith("<@"))
            try:
                parsed = parse(text)
            except CommandError as exc:
                delivery.reply(_usage_error(exc, usage_prefix))
                return
            if isinstance(parsed, Help):
                delivery.reply(f"```{help_text(prefix=prefix)}```")
                return
            _handle(parsed, delivery, channel=event["channel"], service=service)

        return handle

    def on_vote_reason(delivery: Delivery) -> None:
        run_id, fingerprint, reason, correction = modal_values(delivery.body["view"])
        service.feedback.explain(delivery.actor, run_id, fingerprint, reason, correction)

    def on_home_opened(delivery: Delivery) -> None:
        if delivery.body["event"].get("tab") == "home":
            publish_home(delivery.client, service, delivery.actor)

    def on_reaction(added: bool) -> Handler:
        return lambda delivery: _reaction(delivery, service, added=added)

    def on_decision(
        decision: Literal["approve", "reject"], as_pull_request: bool = False
    ) -> Handler:
        return lambda delivery: _decide(decision, delivery, service, as_pull_request)

    return {
        "command": on_command,
        EVENTS[0]: on_words("@chatops ", "/agent "),
        EVENTS[1]: on_reaction(True),
        EVENTS[2]: on_reaction(False),
        EVENTS[3]: on_home_opened,
        DIRECT_MESSAGE: on_words("", ""),
        SESSION_STOPPED: lambda delivery: _stop_session(delivery, service),
        APPROVE: on_decision("approve"),
        APPROVE_AS_PR: on_decision("approve", as_pull_request=True),
        REJECT: on_decision("reject"),
        VOTE_UP: lambda delivery: _vote_click(delivery, service),
        VOTE_DOWN: lambda delivery: _vote_click(delivery, service),
        VOTE_FINDING: lambda delivery: _vote_click(delivery, service),
        REPORT_FEEDBACK: lambda delivery: _vote_click(delivery, service),
        VIEWS[0]: on_vote_reason,
        FULL_REPORT: lambda delivery: _full_report(delivery, service),
        CHECKPOINT_CONTINUE: lambda delivery: _checkpoint_click(delivery, service, go_on=True),
        CHECKPOINT_STOP: lambda delivery: _checkpoint_click(delivery, service, go_on=False),
        CHECKPOINT_DROP: lambda delivery: _drop_click(delivery, service),
        DROP_REASON: lambda delivery: _dropped(delivery, service),
    }


def _checkpoint_click(delivery: Delivery, service: Service, *, go_on: bool) -> None:
    """Continue or Stop at a checkpoint, through the same use cases as `/agent continue RUN`
    and `/agent stop RUN` (the requester or an approver; anyone else is told so, alone)."""
    action = (delivery.body.get("actions") or [{}])[0]
    run_id = str(action.get("value", ""))
    command: Command = Continue(run_id) if go_on else Stop(run_id)
    run = service.carry_out(delivery.actor, command, Asked(delivery.key, via="button"))
    assert isinstance(run, Run)
    # Said to the person who clicked, not by editing the parent: the run is queued already,
    # and the worker's own edits (the next checkpoint, the verdict) must not be overwritten.
    delivery.reply(
        f"Continued: run `{run.id}` goes on with its next agent."
        if go_on
        else f"Stopping run `{run.id}` here: the report of what was let through follows."
    )


def _drop_click(delivery: Delivery, service: Service) -> None:
    """A checkpoint finding's "Not a problem…": the modal asks why (checked first: a
    stranger is refused here, alone)."""
    action = (delivery.body.get("actions") or [{}])[0]
    chosen = (action.get("selected_option") or {}).get("value") or action.get("value", "")
    parsed = parse_drop_value(str(chosen))
    if parsed is None:
        delivery.respond(replace_original=False, text="Not a finding of a checkpoint.")
        return
    run_id, fingerprint = parsed
    _, saved = service.checkpoints.waiting(delivery.actor, run_id)
    finding = saved.find(fingerprint)
    if finding is None:
        raise UserError("That finding is no longer at the checkpoint (dropped already?).")
    label = f"F{saved.findings.index(finding) + 1} ({finding.title})"
    try:
        delivery.client.views_open(
            trigger_id=str(delivery.body.get("trigger_id", "")),
            view=drop_modal(run_id, fingerprint, label),
        )
    except SlackApiError as exc:  # a replayed click's trigger has expired: say how to type it
        log.warning("could not open the drop modal: %s", exc.response.get("error"))
        delivery.respond(
            replace_original=False,
            text=f"Say why with `/agent drop {run_id}/F{saved.findings.index(finding) + 1} "
            "REASON`.",
        )


def _dropped(delivery: Delivery, service: Service) -> None:
    """The drop modal's reason: the finding leaves the checkpoint, the parent shows it so."""
    run_id, fingerprint, reason, _ = modal_values(delivery.body["view"])
    dropped = service.checkpoints.drop(delivery.actor, run_id, fingerprint, reason, via="modal")
    _show_dropped(delivery, service, dropped)


def _show_dropped(delivery: Delivery, service: Service, dropped: Dropped) -> None:
    run = service.messages.run(dropped.run.id)
    saved = saved_of(run) if run is not None else None
    if run is not None and saved is not None and run.place and run.message:
        show_checkpoint(delivery.client, run, saved)


def _full_report(delivery: Delivery, service: Service) -> None:
    """The whole report as a Markdown file in the run's thread, asked for from a delta (by a
    member: reports are never for a Slack Connect guest)."""
    service.require_member(delivery.actor, "Reports are for this workspace's own members.")
    action = (delivery.body.get("actions") or [{}])[0]
    run_id = str(action.get("value", "")).removeprefix("report:")
    run = service.messages.run(run_id)
    report = service.messages.report(run_id) if run is not None else None
    if run is None or report is None or not run.place:
        raise UserError(
            f"There is no report for run `{escape(shown(run_id))}` any more.",
            "Analyze the branch again for a fresh one: `/agent analyze branch NAME`.",
        )
    delivery.client.files_upload_v2(
        channel=run.place,
        thread_ts=thread_of(run),
        # Asked for later: its proposals as they are now (applied, rejected ...).
        content=render_markdown(report, service.proposal_states(run.id)),
        filename=f"chatops-report-{report.run_id}.md",
        title=f"Full report: {report.target.branch} at {report.target.head_sha[:10]}",
    )


def _stop_session(delivery: Delivery, service: Service) -> None:
    """An agent session's Stop button: the runs working in its thread stop as `/agent stop RUN`
    stops them, through the same use case and so by the same rule (the requester or an
    approver). A stranger is told so, alone, and the runs go on (the session still processing);
    else the session leaves processing, which Slack leaves to the app."""
    event = delivery.body["event"]
    channel, thread = str(event.get("channel") or ""), str(event.get("thread_ts") or "")
    if not channel or not thread:
        log.info("%s: a session stop without its thread; ignored", delivery.key)
        return
    said = []
    for run in service.messages.unfinished_in_thread(channel, thread):
        stopped = service.carry_out(delivery.actor, Stop(run.id), Asked(delivery.key, channel))
        assert isinstance(stopped, Run)
        said.append(_run_text(stopped, stopping=True, delivery=delivery))
    end_session(delivery.client, channel, thread)
    delivery.reply("\n".join(said) or "Nothing is running here any more.")


def _vote_click(delivery: Delivery, service: Service) -> None:
    body = delivery.body
    action = (body.get("actions") or [{}])[0]
    respond = delivery.respond
    chosen = (action.get("selected_option") or {}).get("value") or action.get("value", "")
    parsed = parse_vote_value(str(chosen))
    if parsed is None:
        respond(replace_original=False, text="Not a vote.")
        return
    value, run_id, fingerprint = parsed
    voted = service.feedback.vote(delivery.actor, run_id, fingerprint or None, value, via="button")
    if value > 0:
        respond(replace_original=False, text=voted.message)
        return
    try:
        delivery.client.views_open(
            trigger_id=str(body.get("trigger_id", "")),
            view=vote_modal(run_id, fingerprint, voted.item),
        )
    except SlackApiError as exc:  # the vote is kept; the reason can still be typed (and a
        # replayed click's trigger has expired: this is its way to ask)
        log.warning("could not open the vote modal: %s", exc.response.get("error"))
        respond(
            replace_original=False,
            text=f"{voted.message} Say what was wrong with "
            f"`/agent down {f'{run_id}/{voted.item}' if fingerprint else run_id} REASON`.",
        )


def _reaction(delivery: Delivery, service: Service, *, added: bool) -> None:
    """👍 / 👎 on a run's parent or report message is a vote on the report."""
    event = delivery.body["event"]
    value = _REACTION_VOTES.get(str(event.get("reaction", "")).split("::")[0])
    item = event.get("item") or {}
    if value is None or item.get("type") != "message":
        return
    run = service.messages.run_for_message(
        MessageRef(str(item.get("channel", "")), str(item.get("ts", "")))
    )
    if run is None:
        return
    if not added:
        service.feedback.withdraw(delivery.actor, run.id, value)
        return
    # A run still going has nothing to vote on yet: the inbox logs the UserError.
    service.feedback.vote(delivery.actor, run.id, None, value, via="reaction")


def _decide(
    decision: Literal["approve", "reject"],
    delivery: Delivery,
    service: Service,
    as_pull_request: bool = False,
) -> None:
    body = delivery.body
    action = (body.get("actions") or [{}])[0]
    client = delivery.client
    actor = delivery.actor
    ref, _, shown = str(action.get("value", "")).partition(":")
    outcome = service.decide(
        actor,
        ref,
        decision,
        shown_sha=shown or "-",
        event_key=f"slack:action:{actor.user}:{action.get('action_ts')}:{ref}",
        as_pull_request=as_pull_request,
    )
    from_home = (body.get("view") or {}).get("type") == "home"
    earlier = outcome.proposal
    if outcome.repeated and earlier is not None and earlier.decided_by:
        # Replayed after a crash: the decision stands; show it as the first try would have.
        outcome = Outcome(True, outcome.message, earlier)
        actor = Actor(earlier.decided_by, actor.surface, actor.team)
        decision = "reject" if earlier.status == "rejected" else "approve"
    if not outcome.ok:
        if from_home:  # no message to answer in: the home tab shows the state again
            publish_home(client, service, actor)
            return
        delivery.respond(replace_original=False, text=f":no_entry: {escape(outcome.message)}")
        return
    if from_home:
        publish_home(client, service, actor)
        return
    message = body.get("message") or {}
    verb = "Approved" if decision == "approve" else "Rejected"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    note = f"{verb} by <@{actor.user}> at {stamp}" + (
        ": applying…" if decision == "approve" else ""
    )
    try:
        client.chat_update(
            channel=(body.get("channel") or {}).get("id", ""),
            ts=str(message.get("ts", "")),
            text=str(message.get("text", "")),
            blocks=decided_blocks(message.get("blocks") or [], ref, note),
        )
    except SlackApiError as exc:
        log.warning("could not replace the buttons of %s: %s", ref, exc.response.get("error"))


def _usage_error(exc: CommandError, prefix: str = "/agent ") -> str:
    usage = f"\nUsage: `{prefix}{exc.usage}`" if exc.usage else ""
    return f":warning: {escape(exc.message)}{usage}\nType `{prefix}help` for every command."


def _handle(command: Command, delivery: Delivery, *, channel: str, service: Service) -> None:
    """A parsed command from a slash command or a mention, carried out through the core's one
    table, then shown. A UserError goes to the inbox's one handler, which answers it where the
    delivery came from."""
    actor, reply = delivery.actor, delivery.reply
    try:
        result = service.carry_out(actor, command, Asked(event_key=delivery.key, place=channel))
    except SlackApiError as exc:  # the digest is posted while the command is carried out
        if not isinstance(command, Digest):
            raise
        raise UserError(
            f"I could not post the digest here ({exc.response.get('error')}).",
            "Invite me with `/invite @chatops`, then try again.",
        ) from None
    if isinstance(command, AnalyzeBranch | AnalyzePullRequest | AnalyzeTicket | FlagRetire):
        assert isinstance(result, list)
        _post_parents(result, delivery, channel, service)
    elif isinstance(result, Run):
        reply(_run_text(result, stopping=isinstance(command, Stop), delivery=delivery))
        if isinstance(command, Stop):  # stopped in words: its session stops processing too
            leave_if_idle(delivery.client, service.messages, result)
    elif isinstance(command, Status):
        assert isinstance(result, list)
        reply(_runs_text(result[:5]))
    elif isinstance(result, Outcome):
        icon = ":white_check_mark:" if result.ok else ":no_entry:"
        reply(f"{icon} {escape(result.message)}")
    elif isinstance(result, Voted):
        reply(result.message)
    elif isinstance(result, Dropped):
        reply(result.message)
        _show_dropped(delivery, service, result)
    elif isinstance(command, Learnings):
        assert isinstance(result, list)
        reply(_learnings_text(result))
    elif isinstance(result, LearningRow):
        reply(f"Forgot `{result.id}` ({escape(result.text[:200])}). Later runs go without it.")
    elif isinstance(command, Follow | Unfollow):
        reply(escape(follows_text(result)))
    elif isinstance(result, Posted) and result.outcome != "posted":
        reply(f":warning: {escape(result.message)}")


def _post_parents(
    runs: list[Requested], delivery: Delivery, channel: str, service: Service
) -> None:
    """Each run's parent message where it was asked for; asked in a direct conversation, in
    the asking message's thread, the agent session the run then shows its status in."""
    thread = _session_thread(delivery)
    for requested in runs:
        # Handled before (a process that died after starting the run): its message is what
        # may be missing, if the run still waits for one.
        if not requested.created and (
            requested.run.message is not None or requested.run.status != "queued"
        ):
            log.info("delivery %s handled before: run %s exists", delivery.key, requested.run.id)
            continue
        if not _post_parent(
            requested.run,
            delivery.actor,
            channel,
            delivery.reply,
            delivery.client,
            service,
            thread=thread,
        ):
            return
        if thread is not None:
            start_session(delivery.client, channel, thread, requested.run, delivery.actor.user)


def _session_thread(delivery: Delivery) -> str | None:
    """The thread a direct message is in (or starts): an agent session."""
    event = delivery.body.get("event") or {}
    if not is_direct_message(event):
        return None
    return str(event.get("thread_ts") or event["ts"])


def _run_text(run: Run, *, stopping: bool, delivery: Delivery) -> str:
    if stopping:
        if run.status == "cancelled":
            _say_cancelled(delivery.client, run, delivery.actor.user)
            return f"Run `{run.id}` cancelled."
        if run.checkpoint is not None:
            return f"Run `{run.id}` stops at its checkpoint; its report follows in the thread."
        return f"Run `{run.id}` will stop after the current agent."
    error = f": {escape(run.error)}" if run.error else ""
    by = ""
    if run.stop_requested_by:
        who = f"<@{run.stop_requested_by}>"
        by = f" (stop requested by {who})" if run.status == "running" else f" by {who}"
    return f"Run `{run.id}` ({escape(run.target)} in {escape(run.repo)}): {run.status}{by}{error}"


def _runs_text(runs: list[Run]) -> str:
    if not runs:
        return "You have no runs yet. Try `/agent analyze branch NAME`."
    return "\n".join(f"`{r.id}` {r.status} · {escape(r.target)} in {escape(r.repo)}" for r in runs)


def _learnings_text(rows: list[LearningRow]) -> str:
    if not rows:
        return "No learnings yet: votes are curated hourly."
    return "\n".join(
        f"`{row.id}` {row.repo} · {row.agent} · {row.kind}: {escape(row.text[:300])}"
        for row in rows[:40]
    )


def _post_parent(
    run: Run,
    actor: Actor,
    channel: str,
    reply: Reply,
    client: WebClient,
    service: Service,
    *,
    thread: str | None = None,
) -> bool:
    try:
        post_parent(client, service.messages, run, channel, actor.user, thread)
    except SlackApiError as exc:
        error = exc.response.get("error")
        hint = (
            " Invite me to the channel with `/invite @chatops`, then try again."
            if error in ("not_in_channel", "channel_not_found")
            else ""
        )
        service.messages.withdraw(run.id)  # never started anywhere: cancel it, whoever asked
        reply(f":warning: I could not post in this channel ({error}).{hint}")
        return False
    return True


def _say_cancelled(client: WebClient, run: Run, user: str) -> None:
    """A queued run that was cancelled never reaches a worker: its channel message says so here,
    and who did it (else it would read "queued" forever)."""
    if not run.place or not run.message:
        return
    view = ParentView(run.id, run.requester, subject(run), run.repo, f"cancelled by <@{user}>", [])
    edit_parent(client, run, view)  # cosmetic: the run is cancelled either way
