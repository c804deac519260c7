"""New public functions and classes that no test mentions."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import PurePosixPath

from agents.context import files as kinds
from agents.context.git import DiffContext
from agents.context.workspace import Workspace
from agents.report import Finding, Severity, Source, fingerprint


@dataclass(frozen=True)
class NewDefinition:
    file: str
    name: str
    kind: str  # "function" or "class"
    line: int
    end_line: int


def is_private_module(path: str) -> bool:
    """`_module.py`, a module in a `_package/`, or an entry point: reached through a public
    API or run, not imported by tests by name."""
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).name in ("__main__.py", "conftest.py", "setup.py", "noxfile.py"):
        return True
    return any(p.startswith("_") and p != "__init__.py" for p in parts)


def module_names(path: str) -> list[str]:
    """How tests would import the module at `path`: `pkg.mod` (with and without a leading
    `src/` or `lib/`), and `from pkg import mod`."""
    pure = PurePosixPath(path)
    parts = list(pure.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    names: list[str] = []
    while parts:
        names.append(".".join(parts))
        if len(parts) > 1:
            names.append(f"from {'.'.join(parts[:-1])} import {parts[-1]}")
        # `src/pkg/mod.py` is imported as `pkg.mod`; a package really called `lib` keeps it.
        if parts[0] not in ("src", "lib", "python"):
            break
        parts.pop(0)
    return names


def new_public_definitions(workspace: Workspace) -> list[NewDefinition]:
    """Module-level public functions and classes whose `def`/`class` line the branch added."""
    found: list[NewDefinition] = []
    for diff in workspace.python_files():
        if kinds.is_test_path(diff.path) or diff.path.endswith(".pyi"):
            continue
        if is_private_module(diff.path) or kinds.illustrative_kind(diff.path) is not None:
            continue
        try:
            tree = ast.parse(workspace.texts[diff.path].removeprefix("\ufeff"))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # ruff reports the syntax error; a too-deep file is not walked
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if node.name.startswith("_") or node.lineno not in diff.added_lines:
                continue
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            end = node.end_lineno or node.lineno
            found.append(NewDefinition(diff.path, node.name, kind, node.lineno, end))
    return found


def untested_definitions(diff: DiffContext, workspace: Workspace) -> list[NewDefinition]:
    """New public definitions no test at the head mentions by name, in modules no test imports
    (a test that imports the module exercises it through its API)."""
    definitions = new_public_definitions(workspace)
    if not definitions:
        return []
    modules = {d.file: module_names(d.file) for d in definitions}
    words = {d.name for d in definitions} | {m for names in modules.values() for m in names}
    mentioned = diff.repo.grep_words(diff.head_sha, words, kinds.TEST_PATHSPECS)
    return [
        d
        for d in definitions
        if d.name not in mentioned and not any(m in mentioned for m in modules[d.file])
    ]


def run_untested(definitions: list[NewDefinition], *, agent: str) -> list[Finding]:
    by_file: dict[str, list[NewDefinition]] = {}
    for definition in definitions:
        by_file.setdefault(definition.file, []).append(definition)
    findings = []
    for path, missing in by_file.items():
        names = ", ".join(f"{d.name} ({d.kind}, line {d.line})" for d in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        first = missing[0]
        findings.append(
            Finding(
                fingerprint=fingerprint(
                    source=Source.heuristic,
                    rule="untested-code",
                    file=path,
                    anchor=",".join(sorted(d.name for d in missing)),
                ),
                agent=agent,
                category="tests",
                rule="untested-code",
                severity=Severity.low,
                confidence=0.7,
                file=path,
                start_line=first.line,
                end_line=first.line,
                title=(
                    f"New public {first.kind} {first.name} has no test"
                    if len(missing) == 1
                    else f"{len(missing)} new public functions or classes have no test"
                ),
                detail=f"No test file at the branch head mentions: {names}{more}.",
                suggestion="Add tests that call them, including an error or edge case.",
                source=Source.heuristic,
            )
        )
    return findings
