"""Bolt listeners: validate, record, ack, then call the use cases from the record (the inbox).
Nothing slow runs before `ack()`: one insert."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import OperationalError

from bot.core.actor import Actor, UserError
from bot.core.commands import (
    AnalyzeBranch,
    AnalyzeTicket,
    Approve,
    Command,
    CommandError,
    Digest,
    Forget,
    Help,
    Learnings,
    Reject,
    Status,
    Stop,
    Vote,
    help_text,
    parse,
)
from bot.core.service import Service
from bot.store.models import Run
from bot.surfaces.slack.blocks import (
    APPROVE,
    REJECT,
    VOTE_DOWN,
    VOTE_FINDING,
    VOTE_UP,
    ParentView,
    decided_blocks,
    escape,
    parent_blocks,
    parent_text,
    parse_vote_value,
)
from bot.surfaces.slack.home import publish_home
from bot.surfaces.slack.inbox import Delivery, Handler, SlackInbox
from bot.surfaces.slack.views import REASON_BLOCK, VOTE_REASON, modal_values, vote_modal

log = logging.getLogger(__name__)

# What this app handles; manifest.yml declares exactly these (tests/test_slack_manifest.py).
COMMANDS = ("/agent",)
EVENTS = ("app_mention", "reaction_added", "reaction_removed", "app_home_opened")
ACTIONS = (APPROVE, REJECT, VOTE_UP, VOTE_DOWN, VOTE_FINDING)
VIEWS = (VOTE_REASON,)
# Reactions that are votes on a report (skin tones are stripped first).
_REACTION_VOTES = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}


def register(app: App, inbox: SlackInbox) -> None:
    """The whole surface: one slash command, its buttons, a modal and four events. The manifest
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
            lambda: ack(response_type="ephemeral", text=_STORE_DOWN),
        )

    def on_event(ack: Ack, body: dict[str, Any]) -> None:
        kind = str((body.get("event") or {}).get("type", ""))
        inbox.receive(kind, f"slack:event:{body.get('event_id')}", body, ack, ack)

    for name in EVENTS:
        app.event(name)(on_event)

    def on_action(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id")
        key = f"slack:action:{user}:{action.get('action_ts')}:{action.get('action_id')}"
        inbox.receive(str(action.get("action_id")), key, body, ack, ack)

    for action_id in ACTIONS:
        app.action(action_id)(on_action)

    @app.view(VIEWS[0])
    def on_vote_reason(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        run_id, _, reason, _ = modal_values(view)
        if not run_id:  # not our modal's metadata: nothing to attach the reason to
            ack()
            log.warning("a vote modal came back without its run; ignored")
            return
        if not reason.strip():
            ack(response_action="errors", errors={REASON_BLOCK: "Say what was wrong."})
            return
        inbox.receive(VIEWS[0], f"slack:view:{view.get('id')}:{view.get('hash')}", body, ack, ack)


_STORE_DOWN = (
    ":warning: My database is unavailable right now, so nothing was started. Try again in a minute."
)


def handlers(service: Service) -> dict[str, Handler]:
    """What each recorded delivery does, by kind: the inbox runs these, live or replayed."""

    def on_command(delivery: Delivery) -> None:
        command = delivery.body
        actor = Actor(user=command["user_id"], surface="slack", team=command.get("team_id"))
        _handle(
            parse(command.get("text", "")),
            actor,
            channel=command["channel_id"],
            event_key=delivery.key,
            respond=delivery.respond,
            client=delivery.client,
            service=service,
        )

    def on_mention(delivery: Delivery) -> None:
        body = delivery.body
        event = body["event"]
        text = " ".join(word for word in event.get("text", "").split() if not word.startswith("<@"))
        # The member's own team (a Slack Connect guest's differs from the workspace's), not the
        # team the event arrived in.
        team = event.get("user_team") or event.get("team") or body.get("team_id")
        actor = Actor(user=event.get("user", ""), surface="slack", team=team)

        def reply(text: str, **_: Any) -> None:
            delivery.client.chat_postMessage(
                channel=event["channel"], text=text, thread_ts=event.get("thread_ts") or event["ts"]
            )

        try:
            parsed = parse(text)
        except CommandError as exc:
            reply(_usage_error(exc))
            return
        if isinstance(parsed, Help):
            reply(f"```{help_text(prefix='@chatops ')}```")
            return
        _handle(
            parsed,
            actor,
            channel=event["channel"],
            event_key=delivery.key,
            respond=reply,
            client=delivery.client,
            service=service,
        )

    def on_vote_reason(delivery: Delivery) -> None:
        run_id, fingerprint, reason, correction = modal_values(delivery.body["view"])
        try:
            service.feedback.explain(
                _clicker(delivery.body), run_id, fingerprint, reason, correction
            )
        except UserError as exc:
            log.info("vote reason for %s not kept: %s", run_id, exc.message)

    def on_home_opened(delivery: Delivery) -> None:
        event = delivery.body["event"]
        if event.get("tab") != "home":
            return
        team = delivery.body.get("team_id")
        actor = Actor(user=str(event.get("user", "")), surface="slack", team=team)
        publish_home(delivery.client, service, actor)

    def on_reaction(added: bool) -> Handler:
        return lambda delivery: _reaction(
            delivery.body["event"], service, delivery.client, added=added
        )

    def on_decision(decision: Literal["approve", "reject"]) -> Handler:
        return lambda delivery: _decide(decision, delivery, service)

    return {
        "command": on_command,
        EVENTS[0]: on_mention,
        EVENTS[1]: on_reaction(True),
        EVENTS[2]: on_reaction(False),
        EVENTS[3]: on_home_opened,
        APPROVE: on_decision("approve"),
        REJECT: on_decision("reject"),
        VOTE_UP: lambda delivery: _vote_click(delivery, service),
        VOTE_DOWN: lambda delivery: _vote_click(delivery, service),
        VOTE_FINDING: lambda delivery: _vote_click(delivery, service),
        VIEWS[0]: on_vote_reason,
    }


def _clicker(body: dict[str, Any]) -> Actor:
    """Who clicked: the member's own team (a Slack Connect guest's differs)."""
    user = body.get("user") or {}
    return Actor(
        user=str(user.get("id", "")),
        surface="slack",
        team=user.get("team_id") or (body.get("team") or {}).get("id"),
    )


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
    try:
        voted = service.feedback.vote(
            _clicker(body), run_id, fingerprint or None, value, via="button"
        )
    except UserError as exc:
        respond(replace_original=False, text=f":warning: {escape(exc.message)}")
        return
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


def _reaction(event: dict[str, Any], service: Service, client: WebClient, *, added: bool) -> None:
    """👍 / 👎 on a run's parent or report message is a vote on the report."""
    value = _REACTION_VOTES.get(str(event.get("reaction", "")).split("::")[0])
    item = event.get("item") or {}
    if value is None or item.get("type") != "message":
        return
    run = service.messages.run_for_message(str(item.get("channel", "")), str(item.get("ts", "")))
    if run is None:
        return
    user = str(event.get("user", ""))
    # A reaction event does not say the member's own team (a Slack Connect guest's differs).
    actor = Actor(user=user, surface="slack", team=event.get("user_team") or _team_of(client, user))
    if not added:
        service.feedback.withdraw(actor, run.id, value)
        return
    try:
        service.feedback.vote(actor, run.id, None, value, via="reaction")
    except UserError as exc:  # a reaction on a run still going: nothing to vote on yet
        log.info("reaction on run %s not counted: %s", run.id, exc.message)


def _team_of(client: WebClient, user: str) -> str | None:
    try:
        return str(client.users_info(user=user)["user"]["team_id"])
    except (SlackApiError, KeyError, TypeError) as exc:
        log.info("could not read the team of %s: %s", user, exc)
        return None


def _decide(decision: Literal["approve", "reject"], delivery: Delivery, service: Service) -> None:
    body = delivery.body
    action = (body.get("actions") or [{}])[0]
    client = delivery.client
    actor = _clicker(body)
    ref, _, shown = str(action.get("value", "")).partition(":")
    outcome = service.decide(
        actor,
        ref,
        decision,
        shown_sha=shown or "-",
        event_key=f"slack:action:{actor.user}:{action.get('action_ts')}:{ref}",
    )
    from_home = (body.get("view") or {}).get("type") == "home"
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


def _usage_error(exc: CommandError) -> str:
    usage = f"\nUsage: `/agent {exc.usage}`" if exc.usage else ""
    return f":warning: {escape(exc.message)}{usage}\nType `/agent help` for every command."


def _handle(
    command: Command,
    actor: Actor,
    *,
    channel: str,
    event_key: str,
    respond: Any,
    client: WebClient,
    service: Service,
) -> None:
    try:
        if isinstance(command, AnalyzeBranch | AnalyzeTicket):
            _analyze(command, actor, channel, event_key, respond, client, service)
        elif isinstance(command, Status):
            respond(response_type="ephemeral", text=_status(command, actor, service))
        elif isinstance(command, Stop):
            run = service.cancel_run(actor, command.run_id)
            done = "cancelled" if run.status == "cancelled" else "will stop after the current agent"
            if run.status == "cancelled":
                _say_cancelled(client, run, actor.user)
            respond(response_type="ephemeral", text=f"Run `{run.id}` {done}.")
        elif isinstance(command, Approve | Reject):
            decision: Literal["approve", "reject"] = (
                "approve" if isinstance(command, Approve) else "reject"
            )
            reason = command.reason if isinstance(command, Reject) else ""
            outcome = service.decide(
                actor, command.proposal, decision, reason, event_key=f"{event_key}:decide"
            )
            icon = ":white_check_mark:" if outcome.ok else ":no_entry:"
            respond(response_type="ephemeral", text=f"{icon} {escape(outcome.message)}")
        else:
            _feedback_command(command, actor, channel, respond, service)
    except UserError as exc:
        hint = f"\n{escape(exc.hint)}" if exc.hint else ""
        respond(response_type="ephemeral", text=f":warning: {escape(exc.message)}{hint}")
    except OperationalError:
        log.exception("the store is unavailable; %s not handled", event_key)
        respond(response_type="ephemeral", text=_STORE_DOWN)


def _feedback_command(
    command: Command, actor: Actor, channel: str, respond: Any, service: Service
) -> None:
    feedback = service.feedback
    # Learnings quote the team's reasons and paths; the digest, repositories and cost.
    service.require_member(actor, "Only members of this workspace can use this command.")
    if isinstance(command, Vote):
        if command.run_id is None:
            raise UserError(
                "Say which run: the report's footer shows its id.",
                "e.g. `/agent up 3f2a9c1b7d4e/F2` or `/agent down 3f2a9c1b7d4e too noisy`",
            )
        voted = feedback.vote(
            actor,
            command.run_id,
            command.item,
            command.value,
            via="command",
            reason=command.reason or None,
        )
        respond(response_type="ephemeral", text=voted.message)
    elif isinstance(command, Learnings):
        rows = feedback.learnings(command.repo)
        if not rows:
            respond(response_type="ephemeral", text="No learnings yet: votes are curated hourly.")
            return
        lines = [
            f"`{row.id}` {row.repo} · {row.agent} · {row.kind}: {escape(row.text[:300])}"
            for row in rows[:40]
        ]
        respond(response_type="ephemeral", text="\n".join(lines))
    elif isinstance(command, Forget):
        row = feedback.forget(actor, command.learning_id)
        respond(
            response_type="ephemeral",
            text=f"Forgot `{row.id}` ({escape(row.text[:200])}). Later runs go without it.",
        )
    elif isinstance(command, Digest):
        try:
            posted = service.digests.post_now(channel)
        except SlackApiError as exc:
            raise UserError(
                f"I could not post the digest here ({exc.response.get('error')}).",
                "Invite me with `/invite @chatops`, then try again.",
            ) from None
        if posted.outcome != "posted":
            respond(response_type="ephemeral", text=f":warning: {escape(posted.message)}")


def _analyze(
    command: AnalyzeBranch | AnalyzeTicket,
    actor: Actor,
    channel: str,
    event_key: str,
    respond: Any,
    client: WebClient,
    service: Service,
) -> None:
    if isinstance(command, AnalyzeTicket):
        runs = service.request_ticket(actor, command, event_key=event_key, channel=channel)
    else:
        runs = [service.request_analysis(actor, command, event_key=event_key, channel=channel)]
    for requested in runs:
        # Handled before (a process that died after starting the run): its message is what
        # may be missing, if the run still waits for one.
        if not requested.created and (
            requested.run.thread_ts is not None or requested.run.status != "queued"
        ):
            log.info("delivery %s handled before: run %s exists", event_key, requested.run.id)
            continue
        if not _post_parent(requested.run, actor, channel, respond, client, service):
            return


def _post_parent(
    run: Run,
    actor: Actor,
    channel: str,
    respond: Any,
    client: WebClient,
    service: Service,
) -> bool:
    view = ParentView(run.id, actor.user, run.target, run.repo, "queued", [])
    try:
        posted = client.chat_postMessage(
            channel=channel, text=parent_text(view), blocks=parent_blocks(view)
        )
    except SlackApiError as exc:
        error = exc.response.get("error")
        hint = (
            " Invite me to the channel with `/invite @chatops`, then try again."
            if error in ("not_in_channel", "channel_not_found")
            else ""
        )
        service.messages.withdraw(run.id)  # never started anywhere: cancel it, whoever asked
        respond(
            response_type="ephemeral",
            text=f":warning: I could not post in this channel ({error}).{hint}",
        )
        return False
    service.messages.set_message(run.id, channel, str(posted["ts"]))
    return True


def _say_cancelled(client: WebClient, run: Run, user: str) -> None:
    """A queued run that was cancelled never reaches a worker: its channel message says so here,
    and who did it (else it would read "queued" forever)."""
    if not run.channel or not run.thread_ts:
        return
    view = ParentView(run.id, run.requester, run.target, run.repo, f"cancelled by <@{user}>", [])
    try:
        client.chat_update(
            channel=run.channel,
            ts=run.thread_ts,
            text=parent_text(view),
            blocks=parent_blocks(view),
        )
    except SlackApiError as exc:  # cosmetic: the run is cancelled either way
        log.warning("run %s: could not mark the message cancelled: %s", run.id, exc)


def _status(command: Status, actor: Actor, service: Service) -> str:
    if command.run_id is not None:
        run = service.status(command.run_id, actor)
        error = f": {escape(run.error)}" if run.error else ""
        by = f" by <@{run.stop_requested_by}>" if run.stop_requested_by else ""
        return (
            f"Run `{run.id}` ({escape(run.target)} in {escape(run.repo)}): {run.status}{by}{error}"
        )
    runs = service.recent_runs(limit=5, requester=actor.user, actor=actor)
    if not runs:
        return "You have no runs yet. Try `/agent analyze branch NAME`."
    return "\n".join(f"`{r.id}` {r.status} · {escape(r.target)} in {escape(r.repo)}" for r in runs)
