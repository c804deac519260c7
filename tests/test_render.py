"""Rendering: untrusted text cannot restyle the terminal or break out of Markdown."""

from __future__ import annotations

import io

from rich.console import Console

from agents.report import (
    Finding,
    Proposal,
    ProposalKind,
    Report,
    Risk,
    RiskLevel,
    Severity,
    Source,
    Target,
    sha256_hex,
)
from bot.surfaces.render.markdown import render_markdown
from bot.surfaces.render.terminal import print_report

HOSTILE = "[bold red]FAKE[/] <!channel> **pwn** ``` `x`"


def hostile_report() -> Report:
    content = "```\nnot the end of the fence\n````\n"
    return Report(
        run_id="r1",
        target=Target(
            repo="/r", branch="feature/x", base="main", head_sha="a" * 40, base_sha="b" * 40
        ),
        summary="1 finding",
        risk=Risk(level=RiskLevel.high, score=50, reasons=[HOSTILE]),
        findings=[
            Finding(
                fingerprint="f1",
                agent="code_review",
                category="lint",
                severity=Severity.high,
                confidence=0.9,
                file="a.py",
                start_line=3,
                end_line=4,
                title=HOSTILE,
                detail="detail",
                suggestion="fix it",
                source=Source.ruff,
            )
        ],
        proposals=[
            Proposal(
                id="P1",
                kind=ProposalKind.new_file,
                agent="tests",
                title="add test",
                target="tests/test_a.py",
                base_sha="a" * 40,
                content=content,
                content_sha256=sha256_hex(content),
            )
        ],
    )


def test_markdown_escapes_untrusted_text_and_fences_content_safely() -> None:
    text = render_markdown(hostile_report())
    assert "\\[bold red\\]FAKE\\[/\\] \\<\\!channel\\> \\*\\*pwn\\*\\*" in text
    assert "<!channel>" not in text
    # The fence is longer than any backtick run in the content, so the content stays inside.
    assert "`````\n```\nnot the end of the fence\n````\n`````" in text
    assert "`a.py:3-4`" in text
    assert "### High (1)" in text


def test_terminal_prints_markup_literally() -> None:
    out = io.StringIO()
    print_report(Console(file=out, width=200, no_color=True), hostile_report())
    printed = out.getvalue()
    assert "[bold red]FAKE[/]" in printed
    assert "a.py:3-4" in printed
    assert "P1: add test" in printed
