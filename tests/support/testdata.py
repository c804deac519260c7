"""Where ../shared/testdata is: beside the checkout (as in CI), or named by CHATOPS_TESTDATA."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def testdata_dir() -> Path:
    named = os.environ.get("CHATOPS_TESTDATA")
    if named:
        return Path(named)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "testdata"
        if candidate.is_dir():
            return candidate
    pytest.skip(
        "../shared/testdata not found beside the checkout; set CHATOPS_TESTDATA",
        allow_module_level=True,
    )


def slack_testdata(*parts: str) -> Path:
    return testdata_dir().joinpath("slack", *parts)


def button_click(
    action_id: str,
    value: str,
    *,
    response_url: str,
    user: str = "W111",
    team: str = "T111",
    channel: str = "C111",
    action_ts: str = "9.9",
) -> dict[str, Any]:
    """Slack's real body for a button clicked on a message in a thread, made to name this
    click: who, where, which button and its value, and where the answer goes."""
    click: dict[str, Any] = json.loads(
        slack_testdata("payloads", "block_actions_button_in_thread.json").read_text()
    )
    click.update(user={"id": user, "team_id": team}, channel={"id": channel})
    click["response_url"] = response_url
    click["actions"] = [
        {"action_id": action_id, "value": value, "type": "button", "action_ts": action_ts}
    ]
    return click
