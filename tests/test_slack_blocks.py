"""Block Kit rendering: untrusted text escaped, every limit kept, a large report cut with a note."""

from __future__ import annotations

import json
from typing import Any

from agents.report import (
    Finding,
    Report,
    Risk,
    RiskLevel,
    SeenIn,
    Severity,
    Source,
    Target,
)
from bot.surfaces.slack.blocks import (
    MAX_BLOCKS,
    REPORT_FEEDBACK,
    VOTE_FINDING,
    ParentView,
    delta_blocks,
    escape,
    parent_blocks,
    report_blocks,
)
from tests.support.fakes.slack_api import block_error

HOSTILE = "<!channel> <@U0ADMIN> <https://evil.example|click> & friends"


def report_with(findings: list[Finding]) -> Report:
    return Report(
        run_id="r1",
        target=Target(
            repo="/r", branch="feature/<x>", base="main", head_sha="a" * 40, base_sha="b" * 40
        ),
        summary=HOSTILE,
        risk=Risk(level=RiskLevel.high, score=50, reasons=[HOSTILE]),
        findings=findings,
    )


def finding(n: int, detail: str = "detail") -> Finding:
    return Finding(
        fingerprint=f"f{n}",
        agent="code_review",
        category="lint",
        severity=Severity.high,
        confidence=0.9,
        file=f"a{n}.py",
        start_line=n,
        end_line=n,
        title=f"{HOSTILE} {n}",
        detail=detail,
        suggestion=HOSTILE,
        source=Source.llm,
    )


def test_escape_neutralises_mentions_and_links() -> None:
    assert escape(HOSTILE) == (
        "&lt;!channel&gt; &lt;@U0ADMIN&gt; &lt;https://evil.example|click&gt; &amp; friends"
    )


def test_report_text_from_anyone_cannot_ping_or_link() -> None:
    blocks, cut = report_blocks(report_with([finding(1)]))
    text = json.dumps(blocks)
    assert not cut
    assert "<!channel>" not in text and "<@U0ADMIN>" not in text and "<https://" not in text
    assert "&lt;!channel&gt;" in text
    assert block_error(blocks) is None


def test_a_huge_report_is_cut_to_fit_every_limit() -> None:
    many = [finding(n, detail="x" * 2500) for n in range(1, 200)]
    blocks, cut = report_blocks(report_with(many))
    assert cut
    assert len(blocks) <= MAX_BLOCKS
    assert block_error(blocks) is None  # no block over its limit, and not too long in total
    assert "The full report is in the file below" in json.dumps(blocks)
    assert json.dumps(blocks).count("code_review") < 199


def test_parent_message_mentions_only_a_real_user_id() -> None:
    view = ParentView("r1", "W111", "feature/x", "shop", "queued", [])
    assert "<@W111>" in json.dumps(parent_blocks(view))
    forged = ParentView("r1", "<!channel>", "feature/x", "shop", "queued", [])
    assert "<!channel>" not in json.dumps(parent_blocks(forged))


def test_the_reports_thumbs_are_slacks_feedback_buttons_and_findings_keep_their_menu() -> None:
    report = report_with([finding(1), finding(2)])
    full, _ = report_blocks(report)
    delta = delta_blocks(
        report.model_copy(update={"previous": SeenIn(run_id="r0", head_sha="c" * 40)}), {}
    )
    for blocks in (full, delta):
        [votes] = [b for b in blocks if b["type"] == "context_actions"]
        assert votes["elements"] == [
            {
                "type": "feedback_buttons",
                "action_id": REPORT_FEEDBACK,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "👍", "emoji": True},
                    "accessibility_label": "Useful report",
                    "value": "up:r1",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎", "emoji": True},
                    "accessibility_label": "Not a useful report",
                    "value": "down:r1",
                },
            }
        ]
        plain: list[dict[str, Any]] = json.loads(json.dumps(blocks))
        menus = [b["accessory"]["action_id"] for b in plain if "accessory" in b]
        assert menus == [VOTE_FINDING, VOTE_FINDING]  # 👍 / 👎 on each finding, as before
        assert block_error(blocks) is None
    assert '"report_vote_up"' not in json.dumps(full)  # no second pair of thumbs


def test_the_fake_refuses_context_actions_slack_would_refuse() -> None:
    button = {"type": "button", "text": {"type": "plain_text", "text": "x"}, "action_id": "x"}
    assert block_error([{"type": "context_actions", "elements": [button]}]) == "invalid_blocks"
    assert block_error([{"type": "context_actions", "elements": []}]) == "invalid_blocks"


def _actions(blocks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [
        b["elements"]
        for b in blocks
        if b.get("type") == "actions" and str(b.get("block_id", "")).startswith("proposal:")
    ]


def test_a_change_can_be_approved_as_a_pull_request_only_where_there_is_a_code_host() -> None:
    from agents.report import Proposal, ProposalKind, sha256_hex

    diff = "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-A = 1\n+A = 2\n"
    patch = Proposal(
        id="P1",
        kind=ProposalKind.patch,
        agent="code_review",
        title="fix",
        target="release/2.0",
        base_sha="a" * 40,
        content=diff,
        content_sha256=sha256_hex(diff),
    )
    report = report_with([finding(1)]).model_copy(update={"proposals": [patch]})
    hosted, _ = report_blocks(report, hosted=True)
    plain, _ = report_blocks(report)
    assert block_error(hosted) is None and block_error(plain) is None
    [buttons] = _actions(hosted)
    assert [b["action_id"] for b in buttons] == [
        "proposal_approve",
        "proposal_approve_pr",
        "proposal_reject",
    ]
    assert "as a pull request, if that branch is protected" in buttons[0]["confirm"]["text"]["text"]
    assert "pull request from it waits for review" in buttons[1]["confirm"]["text"]["text"]
    assert buttons[0]["value"] == buttons[1]["value"] == f"r1/P1:{patch.content_sha256[:16]}"
    [without] = _actions(plain)
    assert [b["action_id"] for b in without] == ["proposal_approve", "proposal_reject"]


def test_a_review_proposal_shows_its_comments_and_says_it_only_comments() -> None:
    from bot.codehost.port import FileLines, PullRequest
    from bot.codehost.pulls import with_pull
    from bot.codehost.review import review_proposal

    pull = PullRequest(
        "org/shop", 7, "t", "https://github.example/org/shop/pull/7", "open", "a" * 40,
        "feature/pr", "main", "b" * 40, ("a1.py",), "refs/pull/7/head",
        {"a1.py": FileLines(right=frozenset({1}))},
    )  # fmt: skip
    report = with_pull(report_with([finding(1), finding(2)]), pull)
    review = review_proposal(report, pull, "P1")
    blocks, _ = report_blocks(report.model_copy(update={"proposals": [review]}), hosted=True)
    assert block_error(blocks) is None
    text = json.dumps(blocks)
    assert "Review on #7: 1 inline comment(s), 1 finding(s) in the summary" in text
    assert "a1.py:1" in text and '"fingerprint"' not in text  # read as comments, not JSON
    [buttons] = _actions(blocks)
    assert [b["action_id"] for b in buttons] == ["proposal_approve", "proposal_reject"]
    said = buttons[0]["confirm"]["text"]["text"]
    assert "posted on pull request #7 as comments; it never approves" in said
