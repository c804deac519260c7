"""Deciding on proposals, and applying approved ones: the use cases behind Approve and Reject.

Every decision, granted or denied, leaves an audit row. At apply time every check runs again;
any error denies."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Literal

from agents.context.git import GitRepo
from agents.errors import AnalysisInputError, GitFailure, shown
from agents.report import sha256_hex
from bot.codehost.port import CodeHost, CodeHostError
from bot.codehost.pulls import number_of
from bot.codehost.registry import CodeHosts, host_of
from bot.codehost.review import ReviewDraft, addendum_marker, review_marker
from bot.config import ConfigError, PolicyConfig, RepoConfig
from bot.core.actor import Actor
from bot.core.policy import (
    NO_GROUPS,
    NO_WORKSPACE,
    Decision,
    GroupMembers,
    Workspace,
    can_approve,
    can_write,
    is_protected,
    not_expired,
)
from bot.core.ports import ProposalObserver
from bot.core.tickets import NO_TICKETS, Tickets
from bot.repos import RepoResolver
from bot.store.models import ProposalRow, Run
from bot.store.proposals import ProposalStore
from bot.store.review_posts import ReviewPostStore
from bot.store.runs import RunStore
from bot.store.types import utcnow
from bot.writes.git import WriteRequest, WriteResult, apply_proposal, landed, remote_head
from bot.writes.jira import marker
from bot.writes.pull_request import bot_branch, description, open_as_pull_request, pull_request_for
from bot.writes.review import ReviewWriter

log = logging.getLogger(__name__)
_REF = re.compile(r"([0-9a-f]{6,32})/(P\d{1,4})")
_SHOWN = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    proposal: ProposalRow | None = None
    repeated: bool = False  # the same delivery was acted on before: nothing done this time


class Approvals:
    def __init__(
        self,
        runs: RunStore,
        proposals: ProposalStore,
        policy: PolicyConfig,
        repos: RepoResolver,
        *,
        tickets: Tickets = NO_TICKETS,
        observers: Sequence[ProposalObserver] = (),
        groups: GroupMembers = NO_GROUPS,
        workspace: Workspace = NO_WORKSPACE,
        code_hosts: CodeHosts | None = None,
        review_posts: ReviewPostStore | None = None,
    ) -> None:
        """`groups` and `workspace` are Slack's facts (without Slack: `NoGroups`, no group
        approvers, and `NoWorkspace`, every actor is the workspace's); `tickets` where an
        approved comment goes (`NoTickets`: nowhere, and approving one is denied);
        `code_hosts` where reviews and pull requests go (none: approving one is denied), and
        `review_posts` the record of what the bot posted there."""
        self.runs = runs
        self.proposals = proposals
        self.policy = policy
        self.repos = repos
        self.tickets = tickets
        self.observers = list(observers)
        self.groups = groups
        self.workspace = workspace
        self.code_hosts = code_hosts
        self.review_posts = review_posts or ReviewPostStore(runs.engine)

    # -- deciding ------------------------------------------------------------------------------

    def decide(
        self,
        actor: Actor,
        ref: str,
        decision: Literal["approve", "reject"],
        reason: str = "",
        *,
        shown_sha: str | None = None,
        event_key: str | None = None,
        as_pull_request: bool = False,
    ) -> Outcome:
        """Record a click (or a typed command) on a proposal. `shown_sha` is the content hash
        the button carried; it must match what is stored. `as_pull_request`: the approver
        chose to have the change opened as a pull request instead of committed."""
        match = _REF.fullmatch(ref.strip())
        action = f"{decision}_proposal"
        if match is None:
            return self._deny(
                actor,
                action,
                None,
                None,
                f"{shown(ref)!r} is not a proposal id; use RUN/P1 as the report shows",
            )
        run_id, pid = match.groups()
        # The delivery's key is kept with what it did (the decision, or the denial's audit row)
        # in one transaction: a click handled again after a crash finds it only if that landed.
        if event_key is not None and self.proposals.seen(event_key):
            self.proposals.audit(
                actor=actor.user,
                action=action,
                outcome="ignored",
                detail=f"duplicate delivery {event_key}",
                run_id=run_id,
            )
            return self._handled_before(run_id, pid)
        deny = partial(self._deny, actor, action, run_id, event_key=event_key)
        proposal = self.proposals.find(run_id, pid)
        run = self.runs.get(run_id)
        if proposal is None or run is None:
            return deny(None, f"there is no proposal {ref}")
        if shown_sha is not None and not (
            _SHOWN.fullmatch(shown_sha) and proposal.content_sha256[:16] == shown_sha
        ):
            return deny(proposal, "the button does not match the proposal's content; nothing done")
        if proposal.status != "proposed":
            who = f" by {proposal.decided_by}" if proposal.decided_by else ""
            return deny(proposal, f"{ref} is already {proposal.status}{who}")
        expiry = not_expired(proposal.created_at, self.policy.approvals.ttl_seconds, utcnow())
        if not expiry.allowed:
            self.proposals.transition(proposal.id or 0, "proposed", "expired")
            return deny(proposal, expiry.reason)
        checks, via = self._checks(actor, run, proposal, decision, as_pull_request)
        if not checks.allowed:
            return deny(proposal, checks.reason)
        verb = "approved" if decision == "approve" else "rejected"
        # The decision, its approval row, its audit row and the delivery's key: one transaction.
        decided = self.proposals.decide(
            proposal.id or 0,
            decision,
            actor.user,
            reason or None,
            event_key=event_key,
            audit_detail=f"{ref} {verb}: {checks.reason}" + (f" ({reason})" if reason else ""),
            via=via if decision == "approve" else None,
        )
        if decided is None:
            return self._handled_before(run_id, pid)
        if not decided:
            return deny(proposal, f"{ref} was decided by someone else a moment ago")
        if decision == "approve":  # the caller enqueues the apply
            doing = (
                "opening it as a pull request now"
                if via == "pull_request"
                else "posting it now"
                if proposal.kind == "pr_review"
                else "applying it now"
            )
            return Outcome(True, f"{ref} approved by {actor.user}; {doing}.", proposal)
        return Outcome(True, f"{ref} rejected by {actor.user}.", proposal)

    def _handled_before(self, run_id: str, pid: str) -> Outcome:
        """A delivery already acted on (a process that died after deciding, replayed): say
        what became of the proposal, and do nothing more."""
        proposal = self.proposals.find(run_id, pid)
        state = ""
        if proposal is not None and proposal.status != "proposed":
            who = f" by {proposal.decided_by}" if proposal.decided_by else ""
            state = f": {run_id}/{pid} is {proposal.status}{who}"
        return Outcome(False, f"This click was already handled{state}.", proposal, repeated=True)

    def _checks(
        self,
        actor: Actor,
        run: Run,
        proposal: ProposalRow,
        decision: str,
        as_pull_request: bool = False,
    ) -> tuple[Decision, str | None]:
        """May `actor` decide it, and how an approved git write lands ("branch" or
        "pull_request"; None for other kinds)."""
        try:
            name, repo = self.policy.repo(run.repo)
        except ConfigError as exc:
            return Decision.deny(str(exc)), None
        if decision == "reject":
            if actor.user == run.requester:
                return Decision.allow("the requester withdrew it"), None
            return self._approver(actor, run, four_eyes=False), None
        allowed = self._approver(actor, run, four_eyes=self.policy.approvals.four_eyes)
        if not allowed.allowed:
            return allowed, None
        if proposal.kind == "jira_comment":
            if repo.mode != "feature_branches":
                return Decision.deny(f"this repository is {repo.mode}: nothing is written"), None
            if not run.ticket or proposal.target != run.ticket:
                return Decision.deny("a comment may only go on the ticket the run analyzed"), None
            if not self.tickets.configured:
                return Decision.deny("Jira is not configured (JIRA_URL)"), None
            return allowed, None
        if proposal.kind == "pr_review":
            reviewable = self._reviewable(name, repo, run, proposal)
            return (reviewable if not reviewable.allowed else allowed), None
        writable, via = self._route(name, repo, run, proposal, as_pull_request)
        return (writable if not writable.allowed else allowed), via

    def _reviewable(self, name: str, repo: RepoConfig, run: Run, proposal: ProposalRow) -> Decision:
        if repo.mode != "feature_branches":
            return Decision.deny(f"this repository is {repo.mode}: nothing is posted")
        if run.kind != "pr" or proposal.target != run.target:
            return Decision.deny("a review may only go on the pull request the run analyzed")
        if host_of(repo) is None or self.code_hosts is None:
            return Decision.deny(f"{name} has no code host configured (github in [repos.{name}])")
        return Decision.allow()

    def _route(
        self, name: str, repo: RepoConfig, run: Run, proposal: ProposalRow, as_pull_request: bool
    ) -> tuple[Decision, str]:
        """A git write lands on its branch, or, when the approver asks or its branch is
        protected and the repository has a code host, as a pull request into that branch."""
        branch = target_branch(run, proposal)
        try:
            defaults = self._default_branches(name, repo)
        except (GitFailure, AnalysisInputError) as exc:
            return Decision.deny(
                f"could not read the repository's default branch ({exc})"
            ), "branch"
        hosted = host_of(repo) is not None and self.code_hosts is not None
        protected = is_protected(branch, default_branches=defaults, configured=repo.protected)
        if run.kind == "pr" and proposal.kind != "branch_patch":
            # The pull request's branch is someone's: a change for it is a pull request into it.
            as_pull_request = True
        if not as_pull_request and not (protected and hosted):
            direct = can_write(
                branch,
                mode=repo.mode,
                writable=repo.writable,
                protected=repo.protected,
                default_branches=defaults,
            )
            return direct, "branch"
        if not hosted:
            return (
                Decision.deny(
                    f'a pull request needs a code host: add github = "org/repo" to '
                    f"[repos.{name}] and GITHUB_TOKEN to the bot's environment"
                ),
                "pull_request",
            )
        if repo.mode != "feature_branches":
            return Decision.deny(
                f"this repository is {repo.mode}: proposals are shown, never applied"
            ), "pull_request"
        head = bot_branch(run.id, proposal.pid)
        if is_protected(head, default_branches=defaults, configured=repo.protected):
            return Decision.deny(
                f"the bot's own branch {head!r} would be protected"
            ), "pull_request"
        try:
            base = self._pull_base(run, proposal, name, repo)
        except (AnalysisInputError, GitFailure) as exc:  # CodeHostError is one
            return Decision.deny(
                str(exc.message if isinstance(exc, AnalysisInputError) else exc).rstrip(".")
            ), "pull_request"
        return Decision.allow(f"as a pull request from {head} into {base}"), "pull_request"

    def _pull_base(self, run: Run, proposal: ProposalRow, name: str, repo: RepoConfig) -> str:
        """What the pull request asks to merge into: the branch the proposal was for; for a
        change on a new branch (a flag's retirement), the run's base; for one made in a pull
        request's run, that pull request's branch (never written directly: it is not the
        bot's)."""
        if run.kind == "pr" and proposal.kind != "branch_patch":
            host, project = self._host(name, repo)
            pull = host.pull_request(project, number_of(run.target))
            if pull.head_repo.lower() != project.lower():
                where = pull.head_repo or "a fork that was deleted"
                raise CodeHostError(
                    f"pull request #{pull.number}'s branch is in another repository "
                    f"({where}), where the bot opens nothing.",
                    "Apply the change there by hand.",
                    problem="refused",
                )
            return pull.head_ref
        if proposal.kind != "branch_patch":
            return target_branch(run, proposal)
        if run.base or repo.base:
            return str(run.base or repo.base)
        path = repo.path if repo.path is not None else self.repos.clone_path(name)
        # `origin/main` where the clone has origin/HEAD: the host knows the branch as `main`.
        return GitRepo.open(path).default_branch().removeprefix("origin/")

    def actionable(self, actor: Actor, limit: int = 10) -> list[tuple[ProposalRow, Run]]:
        """Open, unexpired proposals `actor` may decide (App Home lists them)."""
        since = utcnow() - timedelta(seconds=self.policy.approvals.ttl_seconds)
        mine = []
        for proposal, run in self.proposals.open_since(since):
            four_eyes = self.policy.approvals.four_eyes
            if self._approver(actor, run, four_eyes=four_eyes).allowed:
                mine.append((proposal, run))
            if len(mine) >= limit:
                break
        return mine

    def same_team(self, actor: Actor) -> bool:
        """Is a Slack actor a member of this workspace (not a Slack Connect guest)?"""
        if actor.surface != "slack" or not self.workspace.checked:
            return True
        workspace = self.workspace.team()
        return workspace is not None and actor.team == workspace

    def is_approver(self, actor: Actor) -> Decision:
        """May `actor` act as an approver at all (forget a learning, say)?"""
        return self._approver(actor, None, four_eyes=False)

    def _approver(self, actor: Actor, run: Run | None, *, four_eyes: bool) -> Decision:
        workspace = (
            self.workspace.team() if self.workspace.checked and actor.surface == "slack" else None
        )
        if actor.surface == "slack" and self.workspace.checked and workspace is None:
            return Decision.deny("could not confirm this workspace's team; denied")
        return can_approve(
            user=actor.user,
            requester=run.requester if run is not None else "",
            approvers=self.policy.approvals.approvers,
            four_eyes=four_eyes,
            groups=self.groups,
            user_team=actor.team,
            workspace_team=workspace,
        )

    def _default_branches(self, name: str, repo: RepoConfig) -> list[str]:
        path = repo.path if repo.path is not None else self.repos.clone_path(name)
        found = GitRepo.open(path).default_branch_names()
        return [*found, *([repo.base] if repo.base else [])]

    def _deny(
        self,
        actor: Actor,
        action: str,
        run_id: str | None,
        proposal: ProposalRow | None,
        reason: str,
        *,
        event_key: str | None = None,
    ) -> Outcome:
        self.proposals.audit(
            actor=actor.user,
            action=action,
            outcome="denied",
            detail=reason,
            run_id=run_id,
            proposal_id=proposal.id if proposal else None,
            event_key=event_key,
        )
        return Outcome(False, f"Not done: {reason}.", proposal)

    # -- applying ------------------------------------------------------------------------------

    def apply(self, proposal_id: int) -> WriteResult | None:
        """The apply job. Runs at most once per proposal, whatever the queue redelivers."""
        if not self.proposals.transition(
            proposal_id, "approved", "applying", apply_started_at=utcnow()
        ):
            return None
        proposal = self.proposals.get(proposal_id)
        assert proposal is not None
        run = self.runs.get(proposal.run_id)
        approval = self.proposals.approval(proposal_id)
        try:
            result = self._apply(proposal, run, approval.user if approval else None)
        except CodeHostError as exc:
            result = WriteResult("failed", f"{exc.message} {exc.hint}".strip())
        except Exception as exc:  # the proposal must not stay "applying", whatever broke
            log.exception("applying proposal %s failed", proposal_id)
            result = WriteResult("failed", f"internal error: {type(exc).__name__}: {exc}")
        self._finish(proposal, run, result)
        return result

    def reconcile_abandoned(self, older_than_s: float) -> list[int]:
        """Proposals a dead worker left `applying`: applied if their branch has the commit the
        worker recorded before moving it, else failed; audited with their run, and the thread
        is told either way. Never applied again."""
        done = []
        for proposal in self.proposals.abandoned(older_than_s):
            run = self.runs.get(proposal.run_id)
            try:
                result = self._recovered(proposal, run)
            except Exception as exc:  # a check that broke still ends the wait, visibly
                log.exception("checking abandoned proposal %s failed", proposal.id)
                result = WriteResult(
                    "failed",
                    f"the worker stopped while applying it, and checking broke ({exc}); look "
                    f"on the target for what {proposal.run_id}/{proposal.pid} would have written",
                    unsure=True,
                )
            if self._finish(proposal, run, result):
                log.warning("proposal %s was left applying: %s", proposal.id, result.detail)
                done.append(proposal.id or 0)
        return done

    def _recovered(self, proposal: ProposalRow, run: Run | None) -> WriteResult:
        ref = f"{proposal.run_id}/{proposal.pid}"
        if proposal.kind == "jira_comment":
            if not self.tickets.configured:
                return WriteResult(
                    "failed",
                    f"the worker stopped while posting it; look on {proposal.target} for a "
                    f"comment marked {marker(ref)}",
                    unsure=True,
                )
            posted = self.tickets.find_comment(proposal.target, ref)
            if posted is not None:
                return WriteResult(
                    "applied", f"comment {posted} is on {proposal.target} (checked)", posted
                )
            return WriteResult("failed", "the worker stopped before posting it; nothing posted")
        if run is None:
            return WriteResult("failed", "the worker stopped while applying it; its run is gone")
        if proposal.kind == "pr_review" or proposal.via == "pull_request":
            return self._recovered_on_host(proposal, run, ref)
        branch = target_branch(run, proposal)
        commit = proposal.intended_commit
        if commit is None:  # it died before it made the commit: the branch never moved
            return WriteResult(
                "failed", f"the worker stopped before committing; {branch} was not written"
            )
        try:
            name, repo = self.policy.repo(run.repo)
            path = self.repos.prepare(name, repo)  # a remote's mirror is fetched first
        except (ConfigError, GitFailure) as exc:
            return WriteResult(
                "failed",
                f"the worker stopped while applying it, and {branch} could not be checked "
                f"({exc}); look for commit {commit[:10]} (Chatops-Run: {run.id}) there",
                unsure=True,
            )
        if landed(path, branch, commit):
            return WriteResult(
                "applied", f"committed {commit[:10]} to {branch} (checked on the branch)", commit
            )
        return WriteResult(
            "failed",
            f"the worker stopped while applying it; {branch} does not have {commit[:10]}, "
            "so nothing was written",
        )

    def _recovered_on_host(self, proposal: ProposalRow, run: Run, ref: str) -> WriteResult:
        """A review, or a pull request, a dead worker was writing: the host says what landed.
        A pushed branch without its pull request gets it now (the approval covered both)."""
        try:
            name, repo = self.policy.repo(run.repo)
            host, project = self._host(name, repo)
            if proposal.kind == "pr_review":
                number = number_of(proposal.target)
                summary = host.reviews_marked(project, number, review_marker(ref))
                addendum = host.reviews_marked(project, number, addendum_marker(ref))
                ReviewWriter(self.review_posts).adopt(
                    host, project, number, [*summary, *addendum], run.id
                )
                if summary:
                    return WriteResult(
                        "applied", f"the review is on pull request #{number} (checked)"
                    )
                if addendum:
                    return WriteResult(
                        "failed",
                        f"the worker stopped while posting it: its new comments are on pull "
                        f"request #{number}, the summary and the edits of earlier comments are "
                        "not; approve the next run's review to finish them",
                        unsure=True,
                    )
                return WriteResult(
                    "failed",
                    f"the worker stopped while posting it; no review of {ref} is on pull request "
                    f"#{number}, though some of the bot's comments may have been edited; "
                    "approve a new run's review to bring them up to date",
                    unsure=True,
                )
            head = bot_branch(run.id, proposal.pid)
            commit = proposal.intended_commit
            if commit is None:
                return WriteResult(
                    "failed", f"the worker stopped before committing; {head} was not pushed"
                )
            path = self.repos.prepare(name, repo)
            if remote_head(path, head) != commit:
                return WriteResult(
                    "failed",
                    f"the worker stopped before pushing; {head} is not on the remote, so "
                    "nothing was written",
                )
            body = description(
                self.runs.report(run.id),
                ref=ref,
                title=proposal.title,
                agent=proposal.agent,
                requester=run.requester,
                approver=proposal.decided_by or "?",
                content_sha256=proposal.content_sha256,
            )
            base = self._pull_base(run, proposal, name, repo)
            return pull_request_for(host, project, head, base, proposal.title, body, commit)
        except (CodeHostError, ConfigError, GitFailure) as exc:
            return WriteResult(
                "failed",
                f"the worker stopped while applying it, and the code host could not be checked "
                f"({exc}); look on it for {ref}",
                unsure=True,
            )

    def _finish(self, proposal: ProposalRow, run: Run | None, result: WriteResult) -> bool:
        """applying → the outcome, once: the audit row (with the run) and the observers follow.
        A live apply that landed after recovery had given up on it corrects the record."""
        proposal_id = proposal.id or 0
        moved = self.proposals.transition(
            proposal_id, "applying", result.outcome, result=result.detail
        )
        if not moved and result.outcome == "applied":
            moved = self.proposals.transition(
                proposal_id, "failed", "applied", result=result.detail
            )
        if not moved:
            return False
        self.proposals.audit(
            actor="chatops",
            action="apply_proposal",
            outcome="ok" if result.outcome == "applied" else result.outcome,
            detail=f"{proposal.run_id}/{proposal.pid}: {result.detail}",
            run_id=proposal.run_id,
            proposal_id=proposal_id,
        )
        if run is not None:
            updated = self.proposals.get(proposal_id) or proposal
            for observer in self.observers:
                try:
                    observer.proposal_done(updated, run, result)
                except Exception:
                    log.exception("a proposal observer failed; the write is unaffected")
        return True

    def _apply(self, proposal: ProposalRow, run: Run | None, approver: str | None) -> WriteResult:
        if run is None or approver is None:
            return WriteResult("failed", "the run or its approval is missing")
        expiry = not_expired(proposal.created_at, self.policy.approvals.ttl_seconds, utcnow())
        if not expiry.allowed:
            return WriteResult("failed", expiry.reason)
        path: Path | None = None
        if proposal.kind not in ("jira_comment", "pr_review"):
            try:  # fetch first, so the checks see the repository as it is now
                name, repo = self.policy.repo(run.repo)
                path = self.repos.prepare(name, repo)
            except (ConfigError, GitFailure) as exc:
                return WriteResult("failed", str(exc))
        # The whole policy again, as of now: the approver may have left the group since.
        actor = Actor(user=approver, surface="apply")
        checks, via = self._checks(
            actor, run, proposal, "approve", as_pull_request=proposal.via == "pull_request"
        )
        if not checks.allowed:
            return WriteResult("failed", f"denied at apply time: {checks.reason}")
        if proposal.via == "branch" and via == "pull_request":
            return WriteResult(
                "failed",
                "denied at apply time: it was approved to be committed to its branch, which "
                "only takes a pull request now; approve a new run's proposal",
            )
        if sha256_hex(proposal.content) != proposal.content_sha256:
            return WriteResult("failed", "the proposal's content changed after it was shown")
        ref = f"{run.id}/{proposal.pid}"
        if proposal.kind == "jira_comment":
            return self.tickets.comment(proposal.target, proposal.content, ref)
        name, repo = self.policy.repo(run.repo)
        if proposal.kind == "pr_review":
            host, project = self._host(name, repo)
            try:
                draft = ReviewDraft.model_validate_json(proposal.content)
            except ValueError:
                return WriteResult("failed", "the review's stored content cannot be read")
            if (draft.project, draft.number) != (project, number_of(run.target)):
                return WriteResult(
                    "failed",
                    f"denied at apply time: the review is for {draft.project}#{draft.number}, "
                    f"and {name} is {project} now; analyze the pull request again there",
                )
            return ReviewWriter(self.review_posts).post(host, draft, ref, approver)
        assert path is not None
        patch = proposal.kind in ("patch", "branch_patch")
        kind: Literal["patch", "new_file"] = "patch" if patch else "new_file"
        request = WriteRequest(
            repo=path,
            branch=target_branch(run, proposal),
            kind=kind,
            target=proposal.target,
            base_sha=proposal.base_sha,
            content=proposal.content,
            content_sha256=proposal.content_sha256,
            title=proposal.title,
            approved_by=approver,
            requested_by=run.requester,
            run_id=run.id,
            remote=repo.url is not None,
            create=proposal.kind == "branch_patch",
            record_intent=lambda commit: self.proposals.record_intent(proposal.id or 0, commit),
        )
        if via != "pull_request":
            return apply_proposal(request)
        host, project = self._host(name, repo)
        body = description(
            self.runs.report(run.id),
            ref=ref,
            title=proposal.title,
            agent=proposal.agent,
            requester=run.requester,
            approver=approver,
            content_sha256=proposal.content_sha256,
        )
        request = replace(request, branch=bot_branch(run.id, proposal.pid))
        return open_as_pull_request(
            host, project, request, self._pull_base(run, proposal, name, repo), body
        )

    def _host(self, name: str, repo: RepoConfig) -> tuple[CodeHost, str]:
        if self.code_hosts is None:
            raise CodeHostError(
                "No code host is available here.", "See docs/github.md.", problem="config"
            )
        return self.code_hosts.for_repo(name, repo)


def target_branch(run: Run, proposal: ProposalRow) -> str:
    """The branch a proposal writes: its target for a patch, the run's branch for a new file."""
    if proposal.kind in ("patch", "branch_patch"):
        return proposal.target
    return run.target
