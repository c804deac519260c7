"""Which lines of a file a review comment may be on, read from the file's patch (the unified
diff hunks a code host shows for it): every line inside a hunk, on the side it exists on."""

from __future__ import annotations

import re

from bot.codehost.port import FileLines

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def lines_of_patch(patch: str | None) -> FileLines:
    """RIGHT: added and context lines (the head's numbers); LEFT: removed and context lines
    (the base's). No patch (a binary or too large a file): no lines at all."""
    if not patch:
        return FileLines()
    right: set[int] = set()
    left: set[int] = set()
    old = new = 0
    in_hunk = False
    for text in patch.split("\n"):
        header = _HUNK.match(text)
        if header is not None:
            old, new = int(header.group(1)), int(header.group(3))
            in_hunk = True
            continue
        if not in_hunk or text.startswith("\\"):  # "\ No newline at end of file"
            continue
        if text.startswith("+"):
            right.add(new)
            new += 1
        elif text.startswith("-"):
            left.add(old)
            old += 1
        elif text.startswith(" "):
            right.add(new)
            left.add(old)
            new += 1
            old += 1
    return FileLines(right=frozenset(right), left=frozenset(left))
