"""Turn ruff's safe fixes into one exact unified diff that `git apply` accepts."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable

from agents.analyzers.lint import Edit, SafeFix

_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(match.end() for match in _LINE_BREAK.finditer(text))
    return starts


def _offset(starts: list[int], text: str, row: int, column: int) -> int:
    if row - 1 >= len(starts):
        return len(text)
    # ruff's columns count characters after a byte-order mark, not the mark itself.
    bom = 1 if row == 1 and text.startswith("\ufeff") else 0
    return min(starts[row - 1] + column - 1 + bom, len(text))


def apply_edits(text: str, fixes: Iterable[SafeFix]) -> tuple[str, list[SafeFix]]:
    """Apply whole fixes, skipping any fix that overlaps one already taken. Returns the new text
    and the fixes that were applied."""
    starts = _line_starts(text)
    taken: list[tuple[int, int]] = []
    applied: list[SafeFix] = []
    spans: list[tuple[int, int, Edit]] = []
    for fix in fixes:
        fix_spans = [
            (_offset(starts, text, *e.start), _offset(starts, text, *e.end), e) for e in fix.edits
        ]
        if any(s < te and ts < e or s == ts for s, e, _ in fix_spans for ts, te in taken):
            continue
        taken.extend((s, e) for s, e, _ in fix_spans)
        spans.extend(fix_spans)
        applied.append(fix)
    for start, end, edit in sorted(spans, key=lambda span: span[0], reverse=True):
        text = text[:start] + edit.content + text[end:]
    return text, applied


def _lines(text: str) -> list[str]:
    """Lines as git counts them: split at "\\n" only (str.splitlines also splits at form
    feeds and U+2028, which would make a patch git rejects)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def unified_diff(path: str, before: str, after: str) -> str:
    """A git-style unified diff of one file, with correct "no newline at end" markers."""
    old, new = _lines(before), _lines(after)
    out: list[str] = []
    for line in difflib.unified_diff(old, new, fromfile=f"a/{path}", tofile=f"b/{path}", n=3):
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    if not out:
        return ""
    return f"diff --git a/{path} b/{path}\n" + "".join(out)


def build_patch(texts: dict[str, str], fixes: list[SafeFix]) -> tuple[str, list[SafeFix]]:
    """One patch for every file with fixes; returns (patch, fixes applied)."""
    by_file: dict[str, list[SafeFix]] = defaultdict(list)
    for fix in fixes:
        by_file[fix.file].append(fix)
    parts: list[str] = []
    applied: list[SafeFix] = []
    for path in sorted(by_file):
        before = texts[path]
        after, used = apply_edits(before, by_file[path])
        diff = unified_diff(path, before, after)
        if diff:
            parts.append(diff)
            applied.extend(used)
    return "".join(parts), applied
