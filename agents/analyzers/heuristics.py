"""Diff heuristics: what the shape of a change says about its risk, without reading its meaning."""

from __future__ import annotations

import re

from agents.context import files as kinds
from agents.context.code import HIDDEN_CHARS
from agents.context.git import DiffContext, FileDiff
from agents.report import Finding, Severity, Source, fingerprint

LARGE_CHANGE_LINES = 500
LARGE_CHANGE_FILES = 25
HUGE_CHANGE_LINES = 2000

_SENSITIVE = {
    "ci": (
        Severity.medium,
        "CI configuration changed",
        "Check who can trigger it and what "
        "secrets it can read; CI runs with the repository's credentials.",
    ),
    "migration": (
        Severity.medium,
        "Database migration changed",
        "Check it is reversible, "
        "safe on a live table (locks, backfills) and ordered after the code it needs.",
    ),
    "infra": (
        Severity.low,
        "Infrastructure definition changed",
        "Check the blast radius: network exposure, permissions, and what changes on apply.",
    ),
    "auth": (
        Severity.medium,
        "Security-sensitive code changed",
        "Review authentication, "
        "authorization and secret handling with extra care; add tests for denial paths.",
    ),
}
_TEST_DEF = re.compile(
    r"^\s*(async\s+)?def\s+(test_\w+)|^\s*func\s+(Test\w+)|\b(it|test)\(\s*['\"]"
)


def _finding(
    rule: str,
    severity: Severity,
    title: str,
    detail: str,
    suggestion: str,
    file: str | None = None,
    line: int | None = None,
    confidence: float = 0.8,
) -> Finding:
    return Finding(
        fingerprint=fingerprint(source=Source.heuristic, rule=rule, file=file, anchor=title),
        agent="risk",
        category="risk",
        rule=rule,
        severity=severity,
        confidence=confidence,
        file=file,
        start_line=line,
        end_line=line,
        title=title,
        detail=detail,
        suggestion=suggestion,
        source=Source.heuristic,
    )


def change_size(diff: DiffContext) -> tuple[int, int]:
    added = sum(len(f.added_lines) for f in diff.files)
    removed = sum(len(f.removed_lines) for f in diff.files)
    return added, removed


def run_heuristics(diff: DiffContext) -> list[Finding]:
    findings: list[Finding] = []
    added, removed = change_size(diff)
    changed = added + removed
    if changed >= LARGE_CHANGE_LINES or len(diff.files) >= LARGE_CHANGE_FILES:
        findings.append(
            _finding(
                "size",
                Severity.medium if changed >= HUGE_CHANGE_LINES else Severity.low,
                f"Large change: {len(diff.files)} files, +{added} -{removed} lines",
                "Large changes are reviewed less carefully and are harder to roll back.",
                "Split it into smaller branches that can be reviewed and reverted on their own.",
            )
        )
    for file in diff.files:
        findings.extend(_sensitive(file))
        findings.extend(_removed_tests(file))
        findings.extend(_hidden_characters(file))
    findings.extend(_no_test_changes(diff))
    return findings


def _sensitive(file: FileDiff) -> list[Finding]:
    kind = kinds.sensitive_kind(file.path)
    if kind is None or file.status == "deleted":
        return []
    severity, title, suggestion = _SENSITIVE[kind]
    return [
        _finding(
            f"sensitive-path:{kind}",
            severity,
            f"{title}: {file.path}",
            f"The branch changes {file.path} (+{len(file.added_lines)} "
            f"-{len(file.removed_lines)} lines).",
            suggestion,
            file=file.path,
            line=min(file.added_lines) if file.added_lines else None,
            confidence=0.7,
        )
    ]


def _hidden_characters(file: FileDiff) -> list[Finding]:
    """Zero-width and bidirectional control characters make code read differently from how it
    runs ("Trojan Source"), and can hide instructions from a human reviewer."""
    lines = [
        n
        for n, text in sorted(file.added_lines.items())
        # A byte-order mark at the very start of a file is an encoding marker, not a trick.
        if HIDDEN_CHARS.search(text[1:] if n == 1 and text.startswith("\ufeff") else text)
    ]
    if not lines:
        return []
    shown = ", ".join(str(n) for n in lines[:10])
    return [
        _finding(
            "hidden-unicode",
            Severity.high,
            f"Hidden Unicode control characters in {file.path}",
            f"Added lines {shown} contain zero-width or bidirectional control characters.",
            "Remove them; if a string needs one, write it as an escape sequence.",
            file=file.path,
            line=lines[0],
            confidence=0.9,
        )
    ]


def _removed_tests(file: FileDiff) -> list[Finding]:
    if not kinds.is_test_path(file.old_path or file.path):
        return []
    if file.status == "deleted":
        return [
            _finding(
                "deleted-test",
                Severity.medium,
                f"Test file deleted: {file.path}",
                "Deleting tests removes the checks that guard existing behaviour.",
                "Say in the branch why these tests are no longer needed, or move them.",
                file=file.path,
                confidence=0.9,
            )
        ]
    removed = {_test_name(line) for line in file.removed_lines} - {None}
    added = {_test_name(line) for line in file.added_lines.values()} - {None}
    gone = sorted(name for name in removed - added if name)
    if not gone:
        return []
    return [
        _finding(
            "deleted-test",
            Severity.medium,
            f"{len(gone)} test(s) removed from {file.path}",
            "Removed: " + ", ".join(gone[:10]) + (" ..." if len(gone) > 10 else ""),
            "Make sure the behaviour they checked is still tested elsewhere.",
            file=file.path,
            confidence=0.8,
        )
    ]


def _test_name(line: str) -> str | None:
    match = _TEST_DEF.search(line)
    if not match:
        return None
    return match.group(2) or match.group(3) or line.strip()[:80]


def _no_test_changes(diff: DiffContext) -> list[Finding]:
    """Code added while no test file changed at all. Python is left to the tests agent, which
    checks each new function precisely; this covers every other language."""
    source_added = sum(
        len(f.added_lines)
        for f in diff.files
        if not kinds.is_test_path(f.path)
        and not kinds.is_python(f.path)
        and kinds.sensitive_kind(f.path) not in ("ci", "infra")
        and _is_code(f.path)
    )
    tests_touched = any(kinds.is_test_path(f.path) for f in diff.files)
    if source_added < 20 or tests_touched:
        return []
    return [
        _finding(
            "no-test-changes",
            Severity.low,
            f"{source_added} lines of code added and no test changed",
            "No file under a test folder or named like a test was touched by this branch.",
            "Add tests for the new behaviour, or say why none are needed.",
            confidence=0.6,
        )
    ]


_CODE_SUFFIXES = (
    ".py",
    ".js",
    ".jsx",
    ".ts",
    ".tsx",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".rb",
    ".php",
    ".cs",
    ".c",
    ".cc",
    ".cpp",
    ".h",
    ".hpp",
    ".swift",
    ".scala",
)


def _is_code(path: str) -> bool:
    return path.endswith(_CODE_SUFFIXES) and not kinds.is_generated_name(path)
