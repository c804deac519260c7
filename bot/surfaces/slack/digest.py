"""The digest in Slack: one message of sections, and the chart uploaded to the channel."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.digest import DigestData
from bot.surfaces.slack.views import digest_blocks

log = logging.getLogger(__name__)


class SlackDigestSink:
    configured = True

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post_digest(self, channel: str, data: DigestData, chart: bytes) -> str:
        posted = self.client.chat_postMessage(
            channel=channel,
            text=f"chatops digest: {data.total_runs} run(s), ${data.usage.cost_usd:.2f}",
            blocks=digest_blocks(data),
            unfurl_links=False,
        )
        ts = str(posted["ts"])
        try:
            self.client.files_upload_v2(
                channel=channel,
                file=chart,
                filename=f"chatops-digest-{data.period.key}.png",
                title="Daily runs and acceptance rate",
            )
        except SlackApiError as exc:  # the digest itself is posted: never post it twice for
            log.warning("digest chart upload failed: %s", exc.response.get("error"))
        except Exception:  # a chart; a missing one is logged
            log.exception("digest chart upload failed")
        return ts
