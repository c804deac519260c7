"""Tests: new public code that no test mentions; with a model, the missing cases and a new test
file for them, offered only if it parses."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import PurePosixPath

from agents.analyzers.untested import NewDefinition, run_untested, untested_definitions
from agents.budget import Unit
from agents.context import files as kinds
from agents.context.code import neutralise, numbered
from agents.report import Finding, Proposal, ProposalKind, sha256_hex
from agents.roles.answers import TestFile, TestsAnswer
from agents.roles.base import PipelineState
from agents.roles.model import Shown, priority, prompt_for, run_chunks, to_finding, validate

MAX_TEST_FILE_BYTES = 60_000
# Test files are proposals a person reviews one by one: a few good ones beat hundreds.
MAX_DEFINITIONS = 24


class TestsAgent:
    __test__ = False  # not a pytest test class, despite the name
    name = "tests"
    description = "new public functions and classes with no test; with a model, test files"

    def run(self, state: PipelineState) -> None:
        missing = untested_definitions(state.diff, state.workspace)
        state.findings.extend(run_untested(missing, agent=self.name))
        if state.llm is not None and missing:
            self._write_tests(state, missing)

    def _write_tests(self, state: PipelineState, missing: list[NewDefinition]) -> None:
        assert state.llm is not None
        prompt = prompt_for(state, self.name)
        if len(missing) > MAX_DEFINITIONS:
            state.note(
                f"Tests were written for {MAX_DEFINITIONS} of {len(missing)} untested "
                "definitions (sensitive paths first); the rest are listed as findings."
            )
            missing = sorted(missing, key=lambda d: (priority(d.file), d.file, d.line))
            missing = missing[:MAX_DEFINITIONS]
        units: list[Unit] = []
        shown: dict[str, Shown] = {}
        for definition in missing:
            lines = state.workspace.texts[definition.file].splitlines()
            end = min(definition.end_line, definition.line + 120)
            body = "\n".join(
                numbered(n, True, lines[n - 1]) for n in range(definition.line, end + 1)
            )
            units.append(
                Unit(
                    definition.file,
                    priority(definition.file),
                    neutralise(
                        f'<definition file="{definition.file}" name="{definition.name}" '
                        f'lines="{definition.line}-{end}">\n{body}\n</definition>'
                    ),
                )
            )
            ranges = shown.get(definition.file, Shown(())).ranges
            shown[definition.file] = Shown((*ranges, (definition.line, end)))
        existing = _existing_tests(state)

        def message(chunk: Sequence[Unit]) -> str:
            listing = "\n".join(existing[:40]) or "(none yet)"
            defs = "\n".join(unit.text for unit in chunk)
            return (
                f"Existing test files:\n{listing}\n\nNew definitions with no test:\n\n"
                f"<untrusted_diff>\n{defs}\n</untrusted_diff>"
            )

        answers = run_chunks(
            state,
            agent=self.name,
            model=state.llm.settings.model,
            prompt=prompt,
            units=units,
            user_message=message,
            output=TestsAnswer,
        )
        found: list[Finding] = []
        for answer, chunk in answers:
            allowed = {unit.file: shown[unit.file] for unit in chunk}
            found += [
                f
                for item in answer.findings
                if (f := to_finding(state, item, agent=self.name, allowed=allowed)) is not None
            ]
            for test_file in answer.test_files:
                self._offer(state, test_file)
        state.findings.extend(validate(state, found, agent=self.name))

    def _offer(self, state: PipelineState, test_file: TestFile) -> None:
        path = test_file.path.strip().removeprefix("./")
        reason = _refusal(state, path, test_file.content)
        if reason:
            state.note(f"A proposed test file {path!r} was not offered: {reason}.")
            return
        content = (
            test_file.content if test_file.content.endswith("\n") else test_file.content + "\n"
        )
        covers = ", ".join(test_file.covers[:5]) or "new code"
        state.proposals.append(
            Proposal(
                id=state.next_proposal_id(),
                kind=ProposalKind.new_file,
                agent=self.name,
                title=neutralise(f"Add tests for {covers}")[:200],
                target=path,
                base_sha=state.diff.head_sha,
                content=content,
                content_sha256=sha256_hex(content),
            )
        )


def _refusal(state: PipelineState, path: str, content: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or path.startswith(".git/"):
        return "the path is not a plain relative path"
    if not kinds.is_test_path(path):
        return "the path is not a test file"
    if len(content.encode()) > MAX_TEST_FILE_BYTES:
        return "it is too large"
    if state.diff.repo.read_file(state.diff.head_sha, path) is not None:
        return "the file already exists at the branch head"
    if path.endswith(".py"):
        try:
            ast.parse(content)
        except SyntaxError as exc:
            return f"it does not parse (line {exc.lineno}: {exc.msg})"
        except (ValueError, RecursionError, MemoryError):
            return "it does not parse"
    return ""


def _existing_tests(state: PipelineState) -> list[str]:
    return [p for p in state.diff.repo.list_files(state.diff.head_sha) if kinds.is_test_path(p)]
