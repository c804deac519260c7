"""Code review: lint, security and secrets on changed lines; ruff's safe fixes as a patch; with a
model, the review linters cannot do, grounded by those findings, and small patches."""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import TypeVar

from agents.analyzers import ruff_config
from agents.analyzers.ast_checks import run_ast_checks
from agents.analyzers.autofix import build_patch
from agents.analyzers.hardening import run_hardening
from agents.analyzers.lint import SYNTAX, LintResult, run_ruff
from agents.analyzers.merge import merge_same_problem
from agents.analyzers.secrets_scan import redact, run_secrets
from agents.analyzers.security import run_bandit
from agents.budget import Unit
from agents.context.code import neutralise
from agents.report import Finding, Proposal, ProposalKind, sha256_hex
from agents.reuse import code_version, key_of, recall, remember
from agents.roles.answers import ModelPatch, ReviewAnswer
from agents.roles.base import PipelineState
from agents.roles.model import file_units, prompt_for, run_chunks, to_finding, validate

T = TypeVar("T")
log = logging.getLogger(__name__)


class CodeReviewAgent:
    name = "code_review"
    description = (
        "lint (ruff), security (bandit) and secrets (detect-secrets); with a model, review"
    )

    def run(self, state: PipelineState) -> None:
        # The repository's own ruff ignores, from the merge-base: a branch cannot turn a check
        # off for its own change.
        config = ruff_config.load(state.diff.repo, state.diff.base_sha)
        config_used = config is not None and bool(state.workspace.python_files())
        # ruff and bandit run in their own processes; secrets are scanned here meanwhile, so the
        # three overlap on a multi-core machine.
        with ThreadPoolExecutor(max_workers=2) as pool:
            lint_job = pool.submit(
                copy_context().run, run_ruff, state.workspace, agent=self.name, config=config
            )
            unread: list[str] = []
            secrets = state.secret_values  # every value a tool took for a secret, to mask
            bandit_job = pool.submit(
                copy_context().run,
                run_bandit,
                state.workspace,
                agent=self.name,
                unread=unread,
                values=secrets,
                kept=state.kept,
            )
            texts = state.workspace.texts
            # Each analyzer fails alone: the others' findings stay, and the report says which
            # did not run (the CLI then exits 3).
            unscanned: list[str] = []
            found = _attempt(
                state,
                "detect-secrets",
                lambda: run_secrets(
                    state.diff,
                    agent=self.name,
                    texts=texts,
                    values=secrets,
                    kept=state.kept,
                    failed=unscanned,
                ),
                _no_findings,
            )
            if unscanned:
                shown = ", ".join(unscanned[:5]) + (
                    f" and {len(unscanned) - 5} more" if len(unscanned) > 5 else ""
                )
                state.did_not_run(f"detect-secrets on {shown}", "its scan of them failed")
            found += _attempt(
                state,
                "the hardening rules",
                lambda: run_hardening(state.diff, agent=self.name, texts=texts),
                _no_findings,
            )
            found += _attempt(
                state,
                "the AST checks",
                lambda: run_ast_checks(state.workspace, agent=self.name),
                _no_findings,
            )
            lint = _attempt(state, "ruff", lambda: lint_job.result(), LintResult)
            security = _attempt(state, "bandit", lambda: bandit_job.result(), _no_findings)
        if config is not None and config_used:
            if lint.config_error:
                state.note(
                    f"ruff could not apply the repository's {config.file} ignores and ran "
                    f"without them: {lint.config_error}"
                )
            else:
                state.note(config.describe())
        if unread:
            shown = ", ".join(unread[:5]) + (
                f" and {len(unread) - 5} more" if len(unread) > 5 else ""
            )
            state.note(f"bandit could not parse {shown}; its security checks did not run there.")
        found = [*self._branch_syntax_errors(state, lint.findings), *security, *found]
        start = len(state.findings)
        state.findings.extend(merge_same_problem(found, self._line_text(state)))
        try:
            self._propose_fixes(state, lint)
            if state.llm is not None:
                self._review_with_model(state)
        finally:  # whatever the model did, no finding shows a secret
            secrets.discard("")
            state.findings[start:] = [redact(f, secrets) for f in state.findings[start:]]

    @staticmethod
    def _branch_syntax_errors(state: PipelineState, findings: list[Finding]) -> list[Finding]:
        """Drop syntax errors of a file that did not parse at the base either (Python 2 code,
        a template with a .py name): the branch did not break it, and every line would be
        flagged."""
        paths = {f.file for f in findings if f.rule in SYNTAX and f.file}
        if not paths:
            return findings
        old = {
            path: file.old_blob
            for path in paths
            if (file := state.diff.file(path)) is not None and file.old_blob
        }
        blobs = state.diff.repo.read_objects(old.values())
        already: set[str] = set()
        for path, blob in old.items():
            try:
                ast.parse((blobs.get(blob) or b"").decode("utf-8", "replace"))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                already.add(path)
                state.note(
                    f"{path} does not parse as Python 3 at the base either: its syntax errors "
                    "are not reported as the branch's."
                )
        return [f for f in findings if not (f.rule in SYNTAX and f.file in already)]

    @staticmethod
    def _line_text(state: PipelineState) -> Callable[[str, int], str]:
        def line_text(path: str, number: int) -> str:
            file = state.diff.file(path)
            if file is not None and number in file.added_lines:
                return file.added_lines[number]
            lines = state.workspace.texts.get(path, "").split("\n")
            return lines[number - 1] if 0 < number <= len(lines) else ""

        return line_text

    def _propose_fixes(self, state: PipelineState, lint: LintResult) -> None:
        if not lint.fixes:
            return
        patch, applied = build_patch(state.workspace.texts, lint.fixes)
        if not patch:
            return
        files = sorted({fix.file for fix in applied})
        codes = sorted({fix.code for fix in applied})
        self._offer_patch(
            state,
            patch,
            f"Apply ruff's safe fixes: {len(applied)} fix(es) ({', '.join(codes)}) "
            f"in {len(files)} file(s)",
            source="ruff's fixes",
        )

    def _offer_patch(self, state: PipelineState, patch: str, title: str, source: str) -> bool:
        """Offer a patch only if it only edits files the branch changes, and applies cleanly at
        the branch head."""
        head = state.diff.head_sha
        if any(len(value) >= 4 and value in patch for value in state.secret_values):
            state.note(f"{source} were not offered: the change would show a secret.")
            return False
        problem, applies, why = _checked(state, head, patch)
        if problem is not None:
            state.note(f"{source} were not offered: {problem}.")
            return False
        if not applies:
            state.note(f"{source} were not offered: they do not apply at the head ({why[:200]}).")
            return False
        state.proposals.append(
            Proposal(
                id=state.next_proposal_id(),
                kind=ProposalKind.patch,
                agent=self.name,
                title=title,
                target=state.diff.branch,
                base_sha=head,
                content=patch,
                content_sha256=sha256_hex(patch),
            )
        )
        return True

    def _review_with_model(self, state: PipelineState) -> None:
        assert state.llm is not None
        prompt = prompt_for(state, self.name)
        units, shown = file_units(state)
        answers = run_chunks(
            state,
            agent=self.name,
            model=state.llm.settings.model,
            prompt=prompt,
            units=units,
            user_message=_review_message,
            output=ReviewAnswer,
            per_unit=_about,
        )
        found: list[Finding] = []
        patches: list[ModelPatch] = []
        for answer, chunk in answers:
            files = {unit.file for unit in chunk}
            allowed = {path: shown[path] for path in files}
            for item in answer.findings:
                finding = to_finding(state, item, agent=self.name, allowed=allowed)
                if finding is not None:
                    found.append(finding)
            patches.extend(p for p in answer.patches if p.file in files)
        state.findings.extend(validate(state, found, agent=self.name))
        for patch in patches:
            text = _normalise_patch(patch)
            if not touches_only(text, patch.file):
                state.note(f"A model patch for {patch.file} touched other files; not offered.")
                continue
            self._offer_patch(
                state,
                text,
                neutralise(patch.title)[:200] or f"Fix in {patch.file}",
                source=f"The model's patch for {patch.file}",
            )


def _checked(state: PipelineState, head: str, patch: str) -> tuple[str | None, bool, str]:
    """Whether a patch touches only the branch's files and applies at the head (git, twice):
    kept by head and patch, so a re-run at the same head does not ask git again."""
    files = sorted(state.workspace.texts)
    key = key_of("patch-check", code_version(), head, sha256_hex(patch), *files)
    stored = recall(state.kept, key)
    if stored is not None:
        problem, applies, why = json.loads(stored)
        return problem, bool(applies), str(why)
    problem = state.diff.repo.patch_problem(head, patch, set(files))
    applies, why = (False, "") if problem is not None else state.diff.repo.apply_check(head, patch)
    remember(state.kept, key, "patch-check", json.dumps([problem, applies, why]))
    return problem, applies, why


def _no_findings() -> list[Finding]:
    return []


def _attempt(state: PipelineState, part: str, run: Callable[[], T], empty: Callable[[], T]) -> T:
    try:
        return run()
    except Exception as exc:  # any failure of one analyzer: recorded, never silent
        log.warning("%s failed: %s", part, exc)
        state.did_not_run(part, f"{type(exc).__name__}: {exc}".strip()[:300])
        return empty()


def _about(answer: ReviewAnswer, unit: Unit) -> ReviewAnswer:
    """The part of a review answer about one file."""
    return ReviewAnswer(
        findings=[f for f in answer.findings if f.file == unit.file],
        patches=[p for p in answer.patches if p.file == unit.file],
    )


def _review_message(chunk: Sequence[Unit]) -> str:
    files = "\n".join(unit.text for unit in chunk)
    return (
        "Review the changes below. Line numbers are the branch head's; `+` marks lines the "
        "branch added or changed.\n\n"
        f"<untrusted_diff>\n{files}\n</untrusted_diff>"
    )


def touches_only(patch: str, path: str) -> bool:
    """True when every file header in `patch` names `path` (or /dev/null for a new file)."""
    names = [
        line[4:].strip()
        for line in patch.splitlines()
        if line.startswith(("--- ", "+++ ")) and line[4:].strip() != "/dev/null"
    ]
    return bool(names) and all(name in (f"a/{path}", f"b/{path}") for name in names)


def _normalise_patch(patch: ModelPatch) -> str:
    text = patch.unified_diff.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    if not text.startswith("diff --git "):
        text = f"diff --git a/{patch.file} b/{patch.file}\n" + text
    return text
