"""Code context for a model: hunks with their enclosing function or class, fenced as data.

Text from a repository is untrusted. It is wrapped in `<untrusted_...>` tags that its own content
cannot close, and zero-width and bidirectional control characters are removed (the heuristics
flag them as a finding, since they can make code read differently from how it runs).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from agents.context.git import FileDiff, Hunk

# Zero-width characters and the bidirectional overrides/isolates of "Trojan Source".
HIDDEN_CHARS = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_FENCE_CLOSE = re.compile(r"</(untrusted_)", re.IGNORECASE)
MAX_SCOPE_LINES = 80
_HEADER = re.compile(
    r"^\s*(def |async def |class |func |fn |function |pub fn |impl |interface |struct |"
    r"(public|private|protected|static|export|async)\b.*[({]\s*$|\w[\w<>,\s]*\s\w+\s*\(.*\)\s*\{\s*$)"
)


def numbered(number: int, added: bool, text: str) -> str:
    """One line as a model sees it: `12+|code` (added or changed) or `12 |code` (context)."""
    return f"{number}{'+' if added else ' '}|{text}"


def strip_hidden(text: str) -> str:
    return HIDDEN_CHARS.sub("", text)


def neutralise(text: str) -> str:
    """Untrusted text, unable to close the fence around it or hide characters from a reader."""
    return _FENCE_CLOSE.sub(r"<\\/\1", strip_hidden(text))


@dataclass(frozen=True)
class Scope:
    name: str
    start: int
    end: int


def python_scopes(text: str) -> list[Scope]:
    """Every function and class, innermost last for a given line."""
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    scopes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            kind = "class" if isinstance(node, ast.ClassDef) else "def"
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            scopes.append(Scope(f"{kind} {node.name}", start, node.end_lineno or node.lineno))
    return scopes


def indentation_scope(lines: list[str], line: int) -> Scope | None:
    """For languages without a parser here: the nearest less-indented line above that looks like
    a function or class header, down to the next line indented no deeper than that header."""
    if not 0 < line <= len(lines):
        return None
    indent = _indent(lines[line - 1])
    for number in range(line - 1, 0, -1):
        text = lines[number - 1]
        if not text.strip() or _indent(text) >= indent:
            continue
        if _HEADER.match(text):
            header_indent = _indent(text)
            end = number
            for after in range(number + 1, len(lines) + 1):
                candidate = lines[after - 1]
                if candidate.strip() and _indent(candidate) <= header_indent:
                    end = after if candidate.strip() in ("}", "};", "end") else after - 1
                    break
                end = after
            return Scope(text.strip()[:80], number, end)
        indent = _indent(text)
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def enclosing_scope(
    path: str, text: str, line: int, scopes: list[Scope] | None = None
) -> Scope | None:
    if path.endswith((".py", ".pyi")):
        found = [
            s
            for s in (scopes if scopes is not None else python_scopes(text))
            if s.start <= line <= s.end
        ]
        return max(found, key=lambda s: s.start) if found else None
    return indentation_scope(text.splitlines(), line)


def _first_changed(hunk: Hunk) -> int:
    number = hunk.new_start
    for tag, _ in hunk.lines:
        if tag == "+":
            return number
        if tag == " ":
            number += 1
    return hunk.new_start


def _render_hunk(hunk: Hunk) -> tuple[str, tuple[int, int]]:
    out = []
    number = hunk.new_start
    for tag, text in hunk.lines:
        if tag == "-":
            out.append(f"-|{text}")
        else:
            out.append(numbered(number, tag == "+", text))
            number += 1
    return "\n".join(out), (hunk.new_start, max(hunk.new_start, number - 1))


def file_context(diff: FileDiff, text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Each hunk of a file rendered with new-side line numbers (`+` added, `-` removed), then the
    enclosing scopes that reach beyond the hunks. Returns the pieces and the line ranges shown."""
    pieces: list[str] = []
    shown: list[tuple[int, int]] = []
    lines = text.splitlines()
    scopes = python_scopes(text) if diff.path.endswith((".py", ".pyi")) else None
    wanted: dict[tuple[int, int], Scope] = {}
    for hunk in diff.hunks:
        body, span = _render_hunk(hunk)
        scope = enclosing_scope(diff.path, text, _first_changed(hunk), scopes)
        where = f' scope="{scope.name} (lines {scope.start}-{scope.end})"' if scope else ""
        pieces.append(f'<hunk lines="{span[0]}-{span[1]}"{where}>\n{body}\n</hunk>')
        shown.append(span)
        if scope and (scope.start < span[0] or scope.end > span[1]):
            wanted[(scope.start, scope.end)] = scope
    for (start, end), scope in sorted(wanted.items()):
        if end - start + 1 > MAX_SCOPE_LINES:
            end = start + MAX_SCOPE_LINES - 1
        body = "\n".join(
            numbered(n, n in diff.added_lines, lines[n - 1])
            for n in range(start, min(end, len(lines)) + 1)
        )
        pieces.append(f'<scope name="{scope.name}" lines="{start}-{end}">\n{body}\n</scope>')
        shown.append((start, end))
    return pieces, shown
