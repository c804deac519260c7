"""Code review: lint, security and secrets on changed lines; ruff's safe fixes as a patch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agents.analyzers.autofix import build_patch
from agents.analyzers.lint import LintResult, run_ruff
from agents.analyzers.secrets_scan import run_secrets
from agents.analyzers.security import run_bandit
from agents.report import Proposal, ProposalKind, sha256_hex
from agents.roles.base import PipelineState


class CodeReviewAgent:
    name = "code_review"
    description = "lint (ruff), security (bandit) and secrets (detect-secrets) on changed lines"

    def run(self, state: PipelineState) -> None:
        # ruff and bandit run in their own processes; secrets are scanned here meanwhile, so the
        # three overlap on a multi-core machine.
        with ThreadPoolExecutor(max_workers=2) as pool:
            lint_job = pool.submit(run_ruff, state.workspace, agent=self.name)
            bandit_job = pool.submit(run_bandit, state.workspace, agent=self.name)
            secrets = run_secrets(state.diff, agent=self.name)
            lint, security = lint_job.result(), bandit_job.result()
        state.findings.extend(lint.findings)
        state.findings.extend(security)
        state.findings.extend(secrets)
        self._propose_fixes(state, lint)

    def _propose_fixes(self, state: PipelineState, lint: LintResult) -> None:
        if not lint.fixes:
            return
        patch, applied = build_patch(state.workspace.texts, lint.fixes)
        if not patch:
            return
        head = state.diff.head_sha
        applies, why = state.diff.repo.apply_check(head, patch)
        if not applies:
            state.notes.append(
                f"ruff's fixes were not offered: they do not apply at the head ({why})."
            )
            return
        files = sorted({fix.file for fix in applied})
        codes = sorted({fix.code for fix in applied})
        state.proposals.append(
            Proposal(
                id=state.next_proposal_id(),
                kind=ProposalKind.patch,
                agent=self.name,
                title=(
                    f"Apply ruff's safe fixes: {len(applied)} fix(es) ({', '.join(codes)}) "
                    f"in {len(files)} file(s)"
                ),
                target=state.diff.branch,
                base_sha=head,
                content=patch,
                content_sha256=sha256_hex(patch),
            )
        )
