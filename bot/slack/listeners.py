"""Bolt listeners: validate, ack, call the use cases. Nothing slow runs before `ack()`."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.commands import (
    AnalyzeBranch,
    AnalyzeTicket,
    Approve,
    Command,
    CommandError,
    Help,
    Reject,
    Status,
    Stop,
    help_text,
    parse,
)
from bot.service import Actor, Service, UserError
from bot.slack.blocks import (
    APPROVE,
    REJECT,
    ParentView,
    decided_blocks,
    escape,
    parent_blocks,
    parent_text,
)
from bot.store.models import Run
from bot.store.runs import RunStore

log = logging.getLogger(__name__)

# What this app handles; manifest.yml declares exactly these (tests/test_slack_manifest.py).
COMMANDS = ("/agent",)
EVENTS = ("app_mention",)
ACTIONS = (APPROVE, REJECT)


def register(app: App, service: Service, store: RunStore) -> None:
    """The whole surface: one slash command and one event. The manifest declares exactly these
    (tests/test_slack_manifest.py keeps the two in step)."""

    @app.command(COMMANDS[0])
    def on_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        try:
            parsed = parse(command.get("text", ""))
        except CommandError as exc:
            ack(response_type="ephemeral", text=_usage_error(exc))
            return
        if isinstance(parsed, Help):
            ack(response_type="ephemeral", text=f"```{help_text()}```")
            return
        ack()
        actor = Actor(user=command["user_id"], surface="slack", team=command.get("team_id"))
        _handle(
            parsed,
            actor,
            channel=command["channel_id"],
            event_key=f"slack:command:{command.get('trigger_id')}",
            respond=respond,
            client=client,
            service=service,
            store=store,
        )

    @app.event(EVENTS[0])
    def on_mention(
        event: dict[str, Any], body: dict[str, Any], say: Any, client: WebClient
    ) -> None:
        text = " ".join(word for word in event.get("text", "").split() if not word.startswith("<@"))
        # The member's own team (a Slack Connect guest's differs from the workspace's), not the
        # team the event arrived in.
        team = event.get("user_team") or event.get("team") or body.get("team_id")
        actor = Actor(user=event.get("user", ""), surface="slack", team=team)

        def reply(text: str, **_: Any) -> None:
            say(text=text, thread_ts=event.get("thread_ts") or event.get("ts"))

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
            event_key=f"slack:event:{body.get('event_id')}",
            respond=reply,
            client=client,
            service=service,
            store=store,
        )

    buttons: tuple[tuple[str, Literal["approve", "reject"]], ...] = (
        (APPROVE, "approve"),
        (REJECT, "reject"),
    )
    for action_id, decision in buttons:
        app.action(action_id)(_button(decision, service))


def _button(decision: Literal["approve", "reject"], service: Service) -> Any:
    def on_click(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        _decide(decision, body, action, respond, client, service)

    return on_click


def _decide(
    decision: Literal["approve", "reject"],
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: WebClient,
    service: Service,
) -> None:
    user = body.get("user") or {}
    actor = Actor(
        user=str(user.get("id", "")),
        surface="slack",
        team=user.get("team_id") or (body.get("team") or {}).get("id"),
    )
    ref, _, shown = str(action.get("value", "")).partition(":")
    outcome = service.decide(
        actor,
        ref,
        decision,
        shown_sha=shown or "-",
        event_key=f"slack:action:{actor.user}:{action.get('action_ts')}:{ref}",
    )
    if not outcome.ok:
        respond(
            response_type="ephemeral",
            replace_original=False,
            text=f":no_entry: {escape(outcome.message)}",
        )
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
    store: RunStore,
) -> None:
    try:
        if isinstance(command, AnalyzeBranch | AnalyzeTicket):
            _analyze(command, actor, channel, event_key, respond, client, service, store)
        elif isinstance(command, Status):
            respond(response_type="ephemeral", text=_status(command, actor, service))
        elif isinstance(command, Stop):
            run = service.cancel_run(actor, command.run_id)
            done = "cancelled" if run.status == "cancelled" else "will stop after the current agent"
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
    except UserError as exc:
        hint = f"\n{escape(exc.hint)}" if exc.hint else ""
        respond(response_type="ephemeral", text=f":warning: {escape(exc.message)}{hint}")


def _analyze(
    command: AnalyzeBranch | AnalyzeTicket,
    actor: Actor,
    channel: str,
    event_key: str,
    respond: Any,
    client: WebClient,
    service: Service,
    store: RunStore,
) -> None:
    if isinstance(command, AnalyzeTicket):
        runs = service.request_ticket(actor, command, event_key=event_key, channel=channel)
    else:
        runs = [service.request_analysis(actor, command, event_key=event_key, channel=channel)]
    for requested in runs:
        if not requested.created:
            log.info("duplicate delivery of %s: run %s exists", event_key, requested.run.id)
            continue
        if not _post_parent(requested.run, actor, channel, respond, client, service, store):
            return


def _post_parent(
    run: Run,
    actor: Actor,
    channel: str,
    respond: Any,
    client: WebClient,
    service: Service,
    store: RunStore,
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
        service.cancel_run(actor, run.id)
        respond(
            response_type="ephemeral",
            text=f":warning: I could not post in this channel ({error}).{hint}",
        )
        return False
    store.set_message(run.id, channel, str(posted["ts"]))
    return True


def _status(command: Status, actor: Actor, service: Service) -> str:
    if command.run_id is not None:
        run = service.status(command.run_id)
        error = f": {escape(run.error)}" if run.error else ""
        return f"Run `{run.id}` ({escape(run.target)} in {escape(run.repo)}): {run.status}{error}"
    runs = service.recent_runs(limit=5, requester=actor.user)
    if not runs:
        return "You have no runs yet. Try `/agent analyze branch NAME`."
    return "\n".join(f"`{r.id}` {r.status} · {escape(r.target)} in {escape(r.repo)}" for r in runs)
