"""Block Kit rendering: untrusted text escaped, every limit kept, a large report cut with a note."""

from __future__ import annotations

import json

from agents.report import (
    Finding,
    Report,
    Risk,
    RiskLevel,
    Severity,
    Source,
    Target,
)
from bot.surfaces.slack.blocks import MAX_BLOCKS, ParentView, escape, parent_blocks, report_blocks
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
