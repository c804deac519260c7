"""Retire a feature flag: the patch that removes its definition and the dead side of every
`if` on it that can be rewritten safely, and the places that could not be.

Rewritten: an `if` statement whose whole test is the flag read, `not` the read, or the read
compared (`==`, `!=`) with "on", "off", True or False (a Split treatment). The kept side
replaces the statement, dedented to its place; an emptied block gets `pass`. Anything else that
reads the flag (an assignment, an argument, an `elif`, a condition combined with others, a
comparison with another value such as a variant `== "v2"`, a kept side written on the `if` or
`else` line) is listed, never guessed at. The result is parsed again: a rewritten place that
still reads the flag is not counted as rewritten, it is left as it was and listed.

Searched: the Python files that name the key (more than MAX_FILES: no patch, and the report
says why); the other files that name it are listed, nobody rewrites them.

Checked before it is offered, without running the repository's code: every touched Python file
must still `compile()`, and a test module must define the same tests as before except those
in the removed side. (Running `pytest --collect-only` would import the branch's conftest.py and
modules, that is run code from the repository inside the bot: agents are read-only and never
execute what they analyze.) The definition file must parse again, with the flag gone and every
other entry equal.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field

from agents.analyzers.autofix import unified_diff
from agents.analyzers.flags import (
    DefinitionError,
    FlagSettings,
    format_of,
    guard_read,
    imports_of,
    might_read_flags,
    parse_definitions,
    read_of,
    scan,
)
from agents.context.git import GitRepo

KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")
MAX_FILES = 100


@dataclass(frozen=True)
class Manual:
    file: str
    line: int | None
    why: str


@dataclass
class Retirement:
    key: str
    keep: bool
    patch: str = ""
    files: list[str] = field(default_factory=list)
    rewritten: int = 0
    manual: list[Manual] = field(default_factory=list)
    problem: str = ""  # why nothing can be proposed
    notes: list[str] = field(default_factory=list)  # said in the report's summary


def _holds_when_on(test: ast.expr) -> bool | None:
    """Whether an `if` test on a flag read is true when the flag is on, or None when the test
    is not about on or off: the bare read, `not` it, or `==` / `!=` with "on", "off", True or
    False. A comparison with any other value (`== "v2"`) is a variant, not a side to keep."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _holds_when_on(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.Call):
        return True
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq | ast.NotEq)
        and isinstance(test.comparators[0], ast.Constant)
    ):
        value = test.comparators[0].value
        if isinstance(value, bool):
            means_on = value
        elif isinstance(value, str) and value in ("on", "off"):
            means_on = value == "on"
        else:
            return None
        return means_on == isinstance(test.ops[0], ast.Eq)
    return None


def _starts_its_line(lines: list[str], node: ast.stmt) -> bool:
    """Whether nothing but indentation comes before `node` on its first line (a block written
    on its `if` or `else` line does not)."""
    first: ast.stmt | ast.expr = node
    for decorator in getattr(node, "decorator_list", []):
        if decorator.lineno < first.lineno:
            first = decorator
    line = lines[first.lineno - 1].encode("utf-8")  # col_offset counts UTF-8 bytes
    before = line[: first.col_offset].decode("utf-8", "replace")
    return not before.strip() or (first is not node and before.strip() == "@")


def _tests(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            prefix = "Test" if isinstance(node, ast.ClassDef) else "test"
            if node.name.startswith(prefix):
                names.add(node.name)
    return names


def _lines(text: str) -> list[str]:
    """The lines of Python source as `ast` numbers them, with their ends: only "\\n", "\\r\\n"
    and "\\r" end a line, not the form feed or the other breaks `str.splitlines` knows."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z", text)


def _block(lines: list[str], body: list[ast.stmt], indent: str) -> list[str]:
    start = body[0].lineno
    decorators = getattr(body[0], "decorator_list", [])
    if decorators:  # a decorated definition starts at its first decorator
        start = min(start, *(d.lineno for d in decorators))
    end = body[-1].end_lineno or body[-1].lineno
    text = textwrap.dedent("".join(lines[start - 1 : end]))
    return [indent + line if line.strip() else line for line in _lines(text)]


def rewrite_python(
    text: str, path: str, key: str, keep: bool, settings: FlagSettings
) -> tuple[str, int, list[Manual]]:
    """The file with every safe guard on `key` resolved to the kept side: the new text, the
    number of guards rewritten, and the places left as they are. No read of `key` is left in
    a place counted as rewritten (the result is parsed again to make sure)."""
    tree = ast.parse(text)
    imports = imports_of(tree)
    lines = _lines(text)
    manual: list[Manual] = []
    edits: list[tuple[int, int, list[str]]] = []  # (first line, last line, replacement)
    handled: set[int] = set()  # ids of the read calls a rewrite removes
    elifs: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            for inner in node.orelse:
                if isinstance(inner, ast.If) and len(node.orelse) == 1:
                    elifs.add(id(inner))
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        read = guard_read(node.test, path, imports, settings.calls)
        if read is None or read.key != key:
            continue
        calls = [c for c in ast.walk(node.test) if isinstance(c, ast.Call)]
        handled |= {id(c) for c in calls}
        if id(node) in elifs:
            manual.append(Manual(path, node.lineno, "an `elif` on the flag"))
            continue
        when_on = _holds_when_on(node.test)
        if when_on is None:
            manual.append(
                Manual(
                    path,
                    node.lineno,
                    f"`{ast.unparse(node.test)[:120]}` compares the flag with a value that "
                    "is not on or off",
                )
            )
            continue
        taken = node.body if when_on == keep else node.orelse
        if taken and id(taken[0]) in elifs:
            manual.append(Manual(path, node.lineno, "the side to keep is an `elif`"))
            continue
        if taken and not _starts_its_line(lines, taken[0]):
            manual.append(
                Manual(path, node.lineno, "the side to keep is written on the `if`/`else` line")
            )
            continue
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)  # type: ignore[union-attr]
        replacement = _block(lines, taken, indent) if taken else []
        edits.append((node.lineno, node.end_lineno or node.lineno, replacement))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and id(node) not in handled:
            read = read_of(node, path, imports, settings.calls)
            if read is not None and read.key == key:
                manual.append(Manual(path, node.lineno, f"`{read.call}` outside a plain `if`"))
    # Nested guards: keep only the outermost edit of overlapping ones.
    edits.sort(key=lambda e: (e[0], -e[1]))
    chosen: list[tuple[int, int, list[str]]] = []
    for edit in edits:
        if chosen and edit[0] <= chosen[-1][1]:
            manual.append(Manual(path, edit[0], "a guard inside another guard on the flag"))
            continue
        chosen.append(edit)
    # Checked: a rewritten place that still reads the key is not one; it is left as it was.
    while True:
        new, where = _apply(lines, chosen)
        left = _edits_still_reading(new, path, key, settings, where)
        if not left:
            break
        for index in sorted(left):
            manual.append(Manual(path, chosen[index][0], "the side to keep reads the flag again"))
        chosen = [edit for index, edit in enumerate(chosen) if index not in left]
    return new, len(chosen), manual


def _apply(
    lines: list[str], edits: list[tuple[int, int, list[str]]]
) -> tuple[str, list[int | None]]:
    """The text with `edits` (sorted, not overlapping) made, and for each of its lines the
    index of the edit it came from (None: an unchanged line)."""
    out = list(lines)
    where: list[int | None] = [None] * len(lines)
    for index in reversed(range(len(edits))):
        start, end, replacement = edits[index]
        out[start - 1 : end] = replacement
        where[start - 1 : end] = [index] * len(replacement)
    return _fill_empty_blocks(out, where), where


def _edits_still_reading(
    text: str, path: str, key: str, settings: FlagSettings, where: list[int | None]
) -> set[int]:
    """The edits whose lines of `text` still read `key`."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return set()  # not offered anyway: `_still_good` says it does not compile
    imports = imports_of(tree)
    left: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            read = read_of(node, path, imports, settings.calls)
            if read is None or read.key != key:
                continue
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                index = where[line - 1] if line - 1 < len(where) else None
                if index is not None:
                    left.add(index)
    return left


def _fill_empty_blocks(lines: list[str], where: list[int | None]) -> str:
    """A block left with no statement gets `pass`, indented one level deeper (`where`, one
    entry a line, gets an unchanged line's None for it)."""
    text = "".join(lines)
    for _ in range(20):
        try:
            ast.parse(text)
            return text
        except IndentationError as exc:
            if exc.lineno is None:
                return text
            lines = _lines(text)
            at = exc.lineno - 1
            # The line that opens the empty block is the last non-blank line before `at`.
            opener = at - 1
            while opener >= 0 and not lines[opener].strip():
                opener -= 1
            if opener < 0:
                return text
            indent = re.match(r"\s*", lines[opener]).group(0)  # type: ignore[union-attr]
            lines.insert(opener + 1, f"{indent}    pass\n")
            where.insert(opener + 1, None)
            text = "".join(lines)
        except SyntaxError:
            return text
    return text


def remove_definition(text: str, path: str, key: str, settings: FlagSettings) -> str | None:
    """The definition file without `key`, every other entry equal; None if that cannot be
    done by removing lines."""
    fmt = format_of(path, settings.format)
    lines = text.splitlines(keepends=True)
    quoted = (key, f'"{key}"', f"'{key}'")
    start = None
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        if fmt == "toml" and stripped.startswith(("[", "[[")):
            header = stripped.strip().strip("[]").strip()
            if header.rsplit(".", 1)[-1].strip('"') == key:
                start = number
                break
        if any(stripped.startswith(q + sep) for q in quoted for sep in (":", " :", " =", "=")):
            start = number
            break
    if start is None:
        return None
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if not line.strip():
            end += 1
            continue
        depth = len(line) - len(line.lstrip())
        if fmt == "toml":
            if line.lstrip().startswith("[") or not lines[start].lstrip().startswith("["):
                break
        elif depth <= indent:
            break
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    new_lines = lines[:start] + lines[end:]
    if fmt == "json":
        # The entry before may now end in a comma that closes nothing.
        joined = "".join(new_lines)
        joined = re.sub(r",(\s*[}\]])", r"\1", joined)
        new = joined
    else:
        new = "".join(new_lines)
    try:
        before = parse_definitions(text, path, settings.format)
        after = parse_definitions(new, path, settings.format)
    except DefinitionError:
        return None
    expected = {k: v for k, v in before.items() if k != key}
    if key in after or {k: v.raw for k, v in after.items()} != {
        k: v.raw for k, v in expected.items()
    }:
        return None
    return new


def plan_retirement(
    repo: GitRepo, commit: str, key: str, keep: bool | None, settings: FlagSettings
) -> Retirement:
    """The retirement of `key` at `commit`: a patch (maybe empty) and what it could not do.
    `keep` None: the definition's default, when it is on or off."""
    plan = Retirement(key=key, keep=bool(keep))
    contents: dict[str, str] = {}
    defined_in = None
    for path in settings.files:
        blob = repo.read_file(commit, path)
        if blob is None:
            continue
        text = blob.decode("utf-8", "replace")
        try:
            found = parse_definitions(text, path, settings.format)
        except DefinitionError as exc:
            plan.manual.append(Manual(path, None, f"the definition file cannot be read: {exc}"))
            continue
        if key in found:
            defined_in = path
            if keep is None:
                default = found[key].default
                if not isinstance(default, bool):
                    plan.problem = (
                        f"{key}'s default is not on or off; say which side to keep: "
                        f"`flag retire {key} keep on` (or off)."
                    )
                    return plan
                plan.keep = default
            new = remove_definition(text, path, key, settings)
            if new is None:
                plan.manual.append(Manual(path, None, "its definition could not be removed alone"))
            else:
                contents[path] = new
    if keep is None and defined_in is None:
        plan.problem = (
            f"No flag definition file defines {key}, so which side to keep is not known: "
            f"say it, `flag retire {key} keep on` (or off)."
        )
        return plan
    # One more than the limit is asked for: a patch that rewrites only some of the files that
    # read the flag would leave the others reading a flag that is no longer defined.
    python = repo.files_with_words(commit, [key], ["*.py"], MAX_FILES + 1)
    if len(python) > MAX_FILES:
        plan.problem = (
            f"more than {MAX_FILES} files read the flag; only the first {MAX_FILES} could be "
            "rewritten, so no patch is offered (retire it by hand, or in parts)."
        )
        return plan
    # Other files that name the key (templates, JavaScript, docs, config): nobody rewrites
    # them, so they are places to do by hand.
    elsewhere = [
        path
        for path in repo.files_with_words(commit, [key], [], MAX_FILES + 1)
        if not path.endswith(".py") and path not in settings.files
    ]
    plan.manual += [
        Manual(path, None, "a file that is not Python names the flag")
        for path in elsewhere[:MAX_FILES]
    ]
    if len(elsewhere) > MAX_FILES:
        plan.notes.append(
            f"More than {MAX_FILES} files that are not Python name {key}; only the first "
            f"{MAX_FILES} are listed."
        )
    before: dict[str, str] = {}
    for path in python:
        blob = repo.read_file(commit, path)
        if blob is None:
            continue
        text = blob.decode("utf-8", "replace")
        if not might_read_flags(text, settings):
            continue
        scanned = scan(text, path, settings)
        if scanned is None:
            plan.manual.append(Manual(path, None, "the file does not parse"))
            continue
        if not any(r.key == key for r in scanned.reads):
            continue
        new, count, manual = rewrite_python(text, path, key, plan.keep, settings)
        plan.manual += manual
        if not count:
            continue
        problem = _still_good(text, new, path)
        if problem:
            plan.manual.append(Manual(path, None, f"not rewritten: {problem}"))
            continue
        before[path] = text
        contents[path] = new
        plan.rewritten += count
    patch = ""
    for path in sorted(contents):
        old = before.get(path)
        if old is None:
            blob = repo.read_file(commit, path)
            old = blob.decode("utf-8", "replace") if blob is not None else ""
        if old != contents[path]:
            patch += unified_diff(path, old, contents[path])
            plan.files.append(path)
    plan.patch = patch
    if not patch and not plan.problem:
        plan.problem = f"Nothing to change: no definition or `if` on {key} could be rewritten."
    return plan


def _still_good(old: str, new: str, path: str) -> str:
    """Why the rewritten file must not be offered, or "": it compiles, and a test module keeps
    every test not in the removed side."""
    try:
        compile(new, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"it would not compile ({exc.msg}, line {exc.lineno})"
    # Only a dead side is removed, so a test may go only with it; a new one would be a bug.
    if _tests(ast.parse(new)) - _tests(ast.parse(old)):
        return "it would define tests it did not define before"
    return ""


def retire_branch(key: str) -> str:
    """The new branch a retirement is proposed on (a `chore/*` branch: writable by default,
    never a protected one)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-").lower()[:60] or "flag"
    return f"chore/retire-flag-{slug}"
