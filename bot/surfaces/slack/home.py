"""The App Home tab: the user's recent runs with links, what waits for their approval, and the
team's acceptance rate. Published on `app_home_opened` and after a decision made from it."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.actor import Actor
from bot.core.service import Service
from bot.surfaces.slack.views import HomeRun, home_view

log = logging.getLogger(__name__)
RECENT_RUNS = 8


def publish_home(client: WebClient, service: Service, actor: Actor) -> None:
    runs = []
    for run in service.recent_runs(limit=RECENT_RUNS, requester=actor.user, actor=actor):
        # The report where it is posted; else the run's parent message ("pending:..." is a
        # report being posted right now, not a message).
        report = run.report_message
        if report and not report.startswith("pending:"):
            runs.append(HomeRun(run, _link(client, run.place, report), "report"))
        else:
            runs.append(HomeRun(run, _link(client, run.place, run.message), "thread"))
    view = home_view(runs, service.waiting_for(actor), service.feedback.team_acceptance(days=30))
    client.views_publish(user_id=actor.user, view=view)


def _link(client: WebClient, channel: str | None, ts: str | None) -> str | None:
    if not channel or not ts:
        return None
    try:
        return str(client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"])
    except SlackApiError as exc:  # a run without a link is still listed
        log.info("no permalink for %s/%s: %s", channel, ts, exc.response.get("error"))
        return None
