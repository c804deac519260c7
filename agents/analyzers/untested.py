"""New public functions and classes that no test mentions."""

from __future__ import annotations

import ast
from dataclasses import dataclass

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


def new_public_definitions(workspace: Workspace) -> list[NewDefinition]:
    """Module-level public functions and classes whose `def`/`class` line the branch added."""
    found: list[NewDefinition] = []
    for diff in workspace.python_files():
        if kinds.is_test_path(diff.path) or diff.path.endswith(".pyi"):
            continue
        try:
            tree = ast.parse(workspace.texts[diff.path].removeprefix("\ufeff"))
        except (SyntaxError, ValueError):
            continue  # ruff reports the syntax error
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
    definitions = new_public_definitions(workspace)
    if not definitions:
        return []
    mentioned = diff.repo.grep_words(
        diff.head_sha, (d.name for d in definitions), kinds.TEST_PATHSPECS
    )
    return [d for d in definitions if d.name not in mentioned]


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
