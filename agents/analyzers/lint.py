"""ruff: lint findings on the lines a branch changed, and the safe fixes ruff offers for them.

ruff runs `--isolated` with a fixed, high-signal rule selection, so results do not depend on which
config file happens to be in the branch, and style-only rules never reach a report. The rules the
repository itself turned off (read from the merge-base, `ruff_config.py`) stay off.
"""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ruff.__main__ import find_ruff_bin

from agents.analyzers.processes import own_session
from agents.analyzers.ruff_config import RuffConfig
from agents.context import files as kinds
from agents.context.workspace import Workspace
from agents.report import Finding, Severity, Source, fingerprint

# Pyflakes (real bugs and dead imports), syntax errors, a few pycodestyle correctness rules,
# bugbear (likely bugs), pylint errors, async pitfalls.
RUFF_SELECT = ("F", "E4", "E7", "E9", "B", "PLE", "ASYNC")

SYNTAX = ("invalid-syntax", "syntax-error", "E999")
_HIGH = ("E9", "F821", "F822", "F823", "F7", "F63", "PLE", "syntax", "invalid-syntax")
_MEDIUM = ("B", "F811", "F601", "F602", "E722", "ASYNC", "F50", "F52")
_LOW_CONFIDENCE = ("E7",)
# In a test these are the point: a useless expression that must raise, a bare except around
# what must fail, `assert False`, a comparison whose result is discarded on purpose.
TEST_IDIOMS = frozenset({"B018", "E722", "B011", "B015", "E701", "E731"})
# An import in a package's `__init__.py` is a re-export, the package's public face (most
# libraries write `from .helpers import x` there without `__all__`): not an unused import, and
# ruff's fix for it would delete the package's API.
REEXPORT = "F401"


def ruff_severity(code: str) -> Severity:
    # A bare `raise` in a helper called from an except block is a Python idiom.
    if code in ("B007", "B009", "B010", "B018", "PLE0704"):
        return Severity.low
    if code.startswith(_HIGH):
        return Severity.high
    if code.startswith(_MEDIUM):
        return Severity.medium
    return Severity.low


@dataclass(frozen=True)
class Edit:
    content: str
    start: tuple[int, int]  # (row, column), 1-based, columns in characters
    end: tuple[int, int]


@dataclass(frozen=True)
class SafeFix:
    file: str
    code: str
    message: str
    edits: tuple[Edit, ...]


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    fixes: list[SafeFix] = field(default_factory=list)
    # Why the repository's ruff configuration could not be applied, when it could not.
    config_error: str = ""


def run_ruff(workspace: Workspace, *, agent: str, config: RuffConfig | None = None) -> LintResult:
    files = workspace.python_files()
    result = LintResult()
    if not files:
        return result
    by_path = {f.path: f for f in files}

    def ruff(extra: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                find_ruff_bin(),
                "check",
                "--isolated",
                "--no-cache",
                "--exit-zero",
                "--output-format=json",
                f"--select={','.join(RUFF_SELECT)}",
                *extra,
                "--",
                *by_path,
            ],
            cwd=workspace.root,
            capture_output=True,
            check=False,
            # In the shell, a session of its own: the prompt's Ctrl-C must not fail the run.
            start_new_session=own_session(),
        )

    done = ruff(config.arguments() if config is not None else ())
    if done.returncode != 0 and config is not None:
        # A code this ruff does not know (a flake8-only code, a newer rule) in the
        # repository's ignores: lint without them rather than not at all, and say so.
        result.config_error = done.stderr.decode("utf-8", "replace").strip()[:300]
        done = ruff(())
    if done.returncode != 0:
        raise RuntimeError(f"ruff failed: {done.stderr.decode('utf-8', 'replace').strip()}")
    root = str(workspace.root.resolve())
    broken: set[str] = set()
    annotations: dict[str, _Annotations] = {}
    for item in json.loads(done.stdout or b"[]"):
        path = _relative(item["filename"], root)
        diff = by_path.get(path)
        if diff is None:
            continue
        start = int(item["location"]["row"])
        end = int(item["end_location"]["row"])
        code = item.get("code") or "invalid-syntax"
        syntax = code in SYNTAX
        if syntax:
            # One per file: after the first, a parser's errors are mostly echoes of it.
            if path in broken:
                continue
            broken.add(path)
            # A syntax error is often reported where the parser gave up (the next unchanged
            # def, or past the last line); the branch broke the file either way.
            last = max(1, len(workspace.texts[path].splitlines()))
            start, end = min(start, last), min(end, last)
        elif not diff.changed_in(start, end) or _idiom(code, path):
            continue
        line_text = diff.added_lines.get(start) or _line(workspace.texts[path], start)
        severity, why = ruff_severity(code), ""
        if severity is Severity.high and not syntax:
            if path not in annotations:  # parsed once per file, and only when needed
                annotations[path] = _annotations(workspace.texts[path])
            column = int(item["location"]["column"])
            why = _never_run(path, annotations[path], code, start, column)
            if why:
                severity = Severity.medium
        fix = item.get("fix") or None
        suggestion = ""
        if fix:
            suggestion = fix.get("message") or "ruff can fix this automatically."
            if fix.get("applicability") == "safe" and fix.get("edits"):
                result.fixes.append(
                    SafeFix(
                        file=path,
                        code=code,
                        message=suggestion,
                        edits=tuple(_edit(e) for e in fix["edits"]),
                    )
                )
        result.findings.append(
            Finding(
                fingerprint=fingerprint(source=Source.ruff, rule=code, file=path, anchor=line_text),
                agent=agent,
                category="lint",
                rule=code,
                severity=severity,
                confidence=0.6 if code.startswith(_LOW_CONFIDENCE) else 0.9,
                file=path,
                start_line=start,
                end_line=max(start, end),
                title=f"{code}: {item.get('message', '').strip()}",
                detail=f"ruff rule {item.get('name') or code}"
                + (f" ({item['url']})" if item.get("url") else "")
                + (f". Rated medium: {why}." if why else ""),
                suggestion=suggestion,
                source=Source.ruff,
            )
        )
    return result


def _idiom(code: str, path: str) -> bool:
    """Not a problem where it is: a test's idioms in a test, a re-export in `__init__.py`."""
    if code in TEST_IDIOMS and kinds.is_test_path(path):
        return True
    return code == REEXPORT and path.rsplit("/", 1)[-1] == "__init__.py"


@dataclass(frozen=True)
class _Annotations:
    spans: list[tuple[tuple[int, int], tuple[int, int], bool]]  # (start, end, is a string)
    deferred: bool  # `from __future__ import annotations`


def _never_run(path: str, annotations: _Annotations, code: str, row: int, column: int) -> str:
    """Why a would-be crash cannot happen at run time, or "": a stub is read by type
    checkers only, and a name in a deferred annotation (`from __future__ import annotations`,
    or a string) is never evaluated by Python itself."""
    if path.endswith(".pyi"):
        return "in a stub, read by type checkers and never run"
    if code != "F821":
        return ""
    if kinds.is_test_path(path):
        # A test that raised NameError would fail the suite: one that survives is a name
        # resolved at run time (a mapping's forward reference, a fixture), not a crash.
        return "in a test, where a NameError would fail the suite"
    at = (row, column - 1)
    around = [string for start, end, string in annotations.spans if start <= at <= end]
    if around and (annotations.deferred or any(around)):
        return "the name is in an annotation Python never evaluates"
    return ""


def _annotations(text: str) -> _Annotations:
    """Every annotation in a module, and whether the module defers them."""
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _Annotations([], False)
    deferred = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    spans = [
        (
            (a.lineno, a.col_offset),
            (a.end_lineno or a.lineno, a.end_col_offset or a.col_offset),
            isinstance(a, ast.Constant),
        )
        for a in found
    ]
    return _Annotations(spans, deferred)


def _edit(raw: dict[str, Any]) -> Edit:
    return Edit(
        content=raw["content"],
        start=(int(raw["location"]["row"]), int(raw["location"]["column"])),
        end=(int(raw["end_location"]["row"]), int(raw["end_location"]["column"])),
    )


def _relative(filename: str, root: str) -> str:
    return filename[len(root) + 1 :] if filename.startswith(root + "/") else filename


def _line(text: str, number: int) -> str:
    lines = text.split("\n")  # git counts "\n" only
    return lines[number - 1] if 0 < number <= len(lines) else ""
