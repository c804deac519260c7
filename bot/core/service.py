"""The door: the use cases, one method each, surface-independent. Slack, the shell and the CLI
call these (and the feedback and digest use cases it carries) and nothing below them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from agents.context.git import GitRepo, resolve_range, validate_base_name, validate_ref_name
from agents.context.jira import validate_key
from agents.errors import AnalysisInputError, shown
from agents.report import Report
from bot.codehost.port import CodeHostError
from bot.codehost.pulls import target_of
from bot.codehost.registry import CodeHosts
from bot.config import ConfigError, PolicyConfig
from bot.core.actor import Actor, UserError
from bot.core.approvals import Approvals, Outcome
from bot.core.budget import Budget
from bot.core.chat_errors import for_chat
from bot.core.checkpoints import Checkpoints
from bot.core.commands import (
    AnalyzeBranch,
    AnalyzePullRequest,
    AnalyzeTicket,
    Approve,
    Command,
    Continue,
    Digest,
    Drop,
    FlagRetire,
    Follow,
    Forget,
    Learnings,
    Reject,
    Status,
    Stop,
    Unfollow,
    Vote,
)
from bot.core.digest import DigestData
from bot.core.digests import Digests, Posted
from bot.core.feedback import FeedbackService
from bot.core.follows import Follows
from bot.core.messages import RunMessages
from bot.core.ports import RunAnnouncer
from bot.core.proposal_state import ProposalState, states_of
from bot.core.tickets import Tickets, branches_for
from bot.repos import RepoResolver
from bot.store.follows import FollowStore
from bot.store.models import FINAL, AuditEvent, ProposalRow, Run
from bot.store.runs import NewRun, RunStore
from bot.store.types import utcnow


@dataclass(frozen=True)
class Requested:
    run: Run
    created: bool  # False: a retried request found the run it already started


@dataclass(frozen=True)
class Asked:
    """Where a chat command was asked, as far as its use case cares."""

    event_key: str | None = None  # the delivery's key: a retried delivery starts nothing twice
    place: str | None = None  # where runs report and an on-demand digest is posted
    last_run: str | None = None  # the run whose report was shown last (`approve P1`, `up F2`)
    via: str = "command"  # how a vote arrived (the interaction log keeps it)


Digested = Posted | DigestData  # a digest posted to the asking channel, or its data to show


# Learnings quote the team's reasons and paths; the digest, repositories and cost.
_MEMBERS_ONLY = "Only members of this workspace can use this command."


class Service:
    def __init__(
        self,
        store: RunStore,
        policy: PolicyConfig,
        approvals: Approvals,
        feedback: FeedbackService,
        digests: Digests,
        *,
        enqueue: Callable[[str], None],
        enqueue_apply: Callable[[int], None],
        tickets: Tickets,
        budget: Budget,
        follows: FollowStore,
        repos: RepoResolver,
        announcers: Sequence[RunAnnouncer] = (),
        code_hosts: CodeHosts | None = None,
    ) -> None:
        self.store = store
        # The code hosts' adapters (they alone hold the credentials); none: no pull requests.
        self.code_hosts = code_hosts if code_hosts is not None else CodeHosts(None)
        self.messages = RunMessages(store)
        self.policy = policy
        self.approvals = approvals
        self.feedback = feedback
        self.digests = digests
        self.enqueue = enqueue
        self.enqueue_apply = enqueue_apply
        self.tickets = tickets
        self.budget = budget
        self.follows = Follows(follows, policy, repos, self._request_followed, announcers)
        self.checkpoints = Checkpoints(store, feedback, enqueue=enqueue, may_steer=self._may_steer)
        # The one table from a chat command to the use case that carries it out.
        self._use_cases: dict[type[Command], Callable[[Actor, Any, Asked], object]] = {
            AnalyzeBranch: self._analyze_branch,
            AnalyzePullRequest: self._analyze_pull_request,
            AnalyzeTicket: self._analyze_ticket,
            Status: self._status,
            Stop: lambda actor, command, _: self.cancel_run(actor, command.run_id),
            Continue: lambda actor, command, _: self.checkpoints.go_on(actor, command.run_id),
            Drop: lambda actor, command, asked: self.checkpoints.drop(
                actor, command.run_id, command.item, command.reason, via=asked.via
            ),
            Approve: self._decide,
            Reject: self._decide,
            Vote: self._vote,
            Learnings: self._learnings,
            Forget: self._forget,
            Digest: self._digest,
            Follow: self._follow,
            FlagRetire: self._flag_retire,
            Unfollow: lambda actor, command, asked: self.follows.unfollow(
                actor, command, asked.place or actor.surface
            ),
        }

    def carry_out(self, actor: Actor, command: Command, asked: Asked | None = None) -> object:
        """A parsed chat command (Slack's and the shell's), through the table: what the use
        case returns (`list[Requested]`, a `Run` or runs, an `Outcome`, `Voted`, learnings, a
        `Digested`) is for the surface to show. `Help` is the surface's own."""
        use_case = self._use_cases.get(type(command))
        if use_case is None:
            raise UserError(f"`{type(command).__name__.lower()}` is answered by the surface.")
        return use_case(actor, command, asked or Asked())

    def _analyze_branch(self, actor: Actor, command: AnalyzeBranch, asked: Asked) -> object:
        return [self.request_analysis(actor, command, event_key=asked.event_key, place=asked.place)]

    def _analyze_pull_request(
        self, actor: Actor, command: AnalyzePullRequest, asked: Asked
    ) -> object:
        return [
            self.request_pull_request(actor, command, event_key=asked.event_key, place=asked.place)
        ]

    def request_pull_request(
        self,
        actor: Actor,
        command: AnalyzePullRequest,
        *,
        event_key: str | None = None,
        place: str | None = None,
    ) -> Requested:
        """Check the pull request on its host (it exists, the bot may read it), then queue a
        run of kind `pr`, target `pr/N`: the worker reads its head and base again and fetches
        them. Reads the code host: call it after a Slack ack, never before."""
        self._members_only(actor)
        self.check_budget(actor)
        try:
            name, repo = self.policy.repo(command.repo)
        except ConfigError as exc:
            raise UserError(str(exc), "Name a configured repository with `in REPO`.") from None
        try:
            host, project = self.code_hosts.for_repo(name, repo)
            pull = host.pull_request(project, command.number)
        except CodeHostError as exc:
            raise UserError(exc.message, exc.hint) from None
        if pull.state != "open":
            raise UserError(
                f"Pull request #{pull.number} of {project} is {pull.state}.",
                "Ask for an open pull request, or analyze its branch.",
            )
        run, created = self.store.create(
            NewRun(
                requester=actor.user,
                surface=actor.surface,
                repo=name,
                target=target_of(pull.number),
                kind="pr",
                place=place,
            ),
            event_key=event_key,
        )
        if created:
            self.enqueue(run.id)
        return Requested(run=run, created=created)

    def _analyze_ticket(self, actor: Actor, command: AnalyzeTicket, asked: Asked) -> object:
        return self.request_ticket(actor, command, event_key=asked.event_key, place=asked.place)

    def _flag_retire(self, actor: Actor, command: FlagRetire, asked: Asked) -> object:
        """Queue the run that proposes retiring a flag (its report carries the patch, for the
        approval gate like every other write)."""
        requested = self.request_retirement(
            actor, command, event_key=asked.event_key, place=asked.place
        )
        return [requested]

    def request_retirement(
        self,
        actor: Actor,
        command: FlagRetire,
        *,
        event_key: str | None = None,
        place: str | None = None,
    ) -> Requested:
        """A run of kind `flag_retire`: its target is the key (with `=on`/`=off` when the side
        to keep was said), its base the repository's base branch, where the new branch starts."""
        self._members_only(actor)
        try:
            name, repo = self.policy.repo(command.repo)
        except ConfigError as exc:
            raise UserError(str(exc), "Name a configured repository with `in REPO`.") from None
        if repo.mode != "feature_branches":
            raise UserError(
                f"{name} is {repo.mode}: a retirement patch could never be applied there.",
                "Ask in a repository whose mode is feature_branches.",
            )
        keep = "" if command.keep is None else ("=on" if command.keep else "=off")
        run, created = self.store.create(
            NewRun(
                requester=actor.user,
                surface=actor.surface,
                repo=name,
                target=f"{command.key}{keep}",
                kind="flag_retire",
                base=repo.base,
                place=place,
            ),
            event_key=event_key,
        )
        if created:
            self.enqueue(run.id)
        return Requested(run=run, created=created)

    def _follow(self, actor: Actor, command: Follow, asked: Asked) -> object:
        """A message saying what is followed now, or the follows of this place."""
        place = asked.place or actor.surface  # the shell's runs report in the shell
        self._members_only(actor)
        if command.branch is None:
            return self.follows.listed(place)
        return self.follows.follow(actor, command, place)

    def _request_followed(
        self, actor: Actor, command: AnalyzeBranch, event_key: str, place: str
    ) -> str | None:
        """A followed branch's new head: queued as its follower's request (whose membership
        was checked when they followed it). The run's id if it was created now."""
        requested = self.request_analysis(
            actor, command, event_key=event_key, place=place, followed=True
        )
        return requested.run.id if requested.created else None

    def _status(self, actor: Actor, command: Status, asked: Asked) -> object:
        if command.run_id is not None:
            return self.status(command.run_id, actor)
        return self.recent_runs(limit=10, requester=actor.user, actor=actor)

    def _decide(self, actor: Actor, command: Approve | Reject, asked: Asked) -> object:
        ref = command.proposal
        if "/" not in ref and asked.last_run:
            ref = f"{asked.last_run}/{ref}"  # `approve P1` after a report means its P1
        decision: Literal["approve", "reject"] = (
            "approve" if isinstance(command, Approve) else "reject"
        )
        reason = command.reason if isinstance(command, Reject) else ""
        key = f"{asked.event_key}:decide" if asked.event_key else None
        as_pull_request = isinstance(command, Approve) and command.as_pull_request
        return self.decide(
            actor, ref, decision, reason, event_key=key, as_pull_request=as_pull_request
        )

    def _vote(self, actor: Actor, command: Vote, asked: Asked) -> object:
        self.require_member(actor, _MEMBERS_ONLY)
        run_id = command.run_id or asked.last_run
        if run_id is None:
            raise UserError(
                "Say which run: the report's footer shows its id.",
                "e.g. `up 3f2a9c1b7d4e/F2` or `down 3f2a9c1b7d4e too noisy`",
            )
        return self.feedback.vote(
            actor, run_id, command.item, command.value, via=asked.via, reason=command.reason or None
        )

    def _learnings(self, actor: Actor, command: Learnings, asked: Asked) -> object:
        self.require_member(actor, _MEMBERS_ONLY)
        return self.feedback.learnings(command.repo)

    def _forget(self, actor: Actor, command: Forget, asked: Asked) -> object:
        self.require_member(actor, _MEMBERS_ONLY)
        return self.feedback.forget(actor, command.learning_id)

    def _digest(self, actor: Actor, command: Digest, asked: Asked) -> Digested:
        self.require_member(actor, _MEMBERS_ONLY)
        if asked.place is not None:
            return self.digests.post_now(asked.place)
        return self.digests.build(self.digests.recent_period())

    def check_budget(self, actor: Actor, *, audited: bool = True) -> None:
        """Refuse a new run once today's model budget is spent (and keep a row of it: the
        digest says how often a person was refused). A followed branch asks again at every
        check until the budget allows it: that is logged, not audited each time."""
        refusal = self.budget.refusal()
        if refusal is None:
            return
        if audited:
            self.approvals.proposals.audit(
                actor=actor.user, action="budget_refused", outcome="denied", detail=refusal
            )
        raise UserError(refusal, "An admin can raise CHATOPS_DAILY_BUDGET_USD.")

    def request_analysis(
        self,
        actor: Actor,
        command: AnalyzeBranch,
        *,
        event_key: str | None = None,
        place: str | None = None,
        message: str | None = None,
        followed: bool = False,
    ) -> Requested:
        """Check the request, record a queued run, and hand it to the queue. Returns at once.
        `followed`: a followed branch's new head (its follower was checked when following)."""
        if not followed:
            self._members_only(actor)
        self.check_budget(actor, audited=not followed)
        try:
            name, repo = self.policy.repo(command.repo)
        except ConfigError as exc:
            raise UserError(str(exc), "Name a configured repository with `in REPO`.") from None
        try:
            validate_ref_name(command.branch)
            if command.base is not None:
                validate_base_name(command.base)
            if repo.path is not None:  # a local clone: say now if there is nothing to analyze
                local = GitRepo.open(repo.path)
                if followed:  # its head moved: only its name is checked again
                    local.resolve(command.branch)
                else:
                    resolve_range(local, command.branch, command.base or repo.base)
        except AnalysisInputError as exc:
            raise UserError(*for_chat(exc, name, repo.path)) from None
        run, created = self.store.create(
            NewRun(
                requester=actor.user,
                surface=actor.surface,
                repo=name,
                target=command.branch,
                base=command.base,
                place=place,
                message=message,
                step=command.step or repo.step,
            ),
            event_key=event_key,
        )
        if created:
            self.enqueue(run.id)
        return Requested(run=run, created=created)

    def request_ticket(
        self,
        actor: Actor,
        command: AnalyzeTicket,
        *,
        event_key: str | None = None,
        place: str | None = None,
    ) -> list[Requested]:
        """Read the ticket, find the branches that implement it, and queue one run for each.
        Reads Jira: call it after a Slack ack, never before."""
        self._members_only(actor)
        if not self.tickets.configured:
            self.tickets.fetch(command.key)  # says how to configure one
        self.check_budget(actor)
        try:
            validate_key(command.key)
            ticket = self.tickets.fetch(command.key)
        except AnalysisInputError as exc:
            raise UserError(exc.message, exc.hint) from None
        try:
            repos = (
                [self.policy.repo(command.repo)]
                if command.repo
                else sorted(self.policy.repos.items())
            )
        except ConfigError as exc:  # an unknown repository: said with its name clipped
            raise UserError(str(exc), "Name a configured repository with `in REPO`.") from None
        found: list[tuple[str, str]] = []
        for name, repo in repos:
            if repo.path is None:
                continue
            names = GitRepo.open(repo.path).branch_names()
            if command.branch is not None:
                if command.branch in names or f"origin/{command.branch}" in names:
                    found.append((name, command.branch))
                continue
            linked = ticket.branches_named_in_links()
            found += [(name, b) for b in branches_for(command.key, names, linked)]
        if not found:
            where = f" in {command.repo}" if command.repo else ""
            raise UserError(
                f"No branch{where} mentions {command.key}"
                + (f" or is named {shown(command.branch)}" if command.branch else "")
                + ".",
                f"Name one: `analyze ticket {command.key} branch NAME`.",
            )
        requested = []
        for name, branch in found:
            validate_ref_name(branch)
            run, created = self.store.create(
                NewRun(
                    requester=actor.user,
                    surface=actor.surface,
                    repo=name,
                    target=branch,
                    kind="ticket",
                    ticket=command.key,
                    place=place,
                ),
                event_key=f"{event_key}:{name}:{branch}" if event_key else None,
            )
            if created:
                self.enqueue(run.id)
            requested.append(Requested(run=run, created=created))
        return requested

    def cancel_run(self, actor: Actor, run_id: str) -> Run:
        """Stop a run: its requester or an approver may; a guest never. A run waiting at a
        checkpoint is queued to write the report of what it found so far."""
        run = self._for_members(actor, run_id)
        self._may_steer(actor, run, "stop")
        if run.status in FINAL:
            raise UserError(f"Run {run_id} is already {run.status}.")
        stopped = self.store.request_stop(run_id, by=actor.user)
        assert stopped is not None
        if run.status == "waiting" and stopped.status == "queued":
            self.enqueue(run.id)  # a waiting run has no task in the queue
        return stopped

    def _may_steer(self, actor: Actor, run: Run, verb: str) -> None:
        """Stop a run, or continue it at a checkpoint: its requester or an approver, members
        of the workspace only."""
        self._members_only(actor)
        if actor.user != run.requester and not self._approver(actor):
            raise UserError(
                f"Only {run.requester} (who asked for it) or an approver may {verb} run {run.id}.",
                f"Ask them, or an approver, to {verb} it.",
            )

    def status(self, run_id: str, actor: Actor | None = None) -> Run:
        """One run, for the workspace's own members (a Slack Connect guest reads none)."""
        return self._for_members(actor, run_id) if actor is not None else self._known(run_id)

    def _for_members(self, actor: Actor, run_id: str) -> Run:
        self._members_only(actor)
        return self._known(run_id)

    def _members_only(self, actor: Actor) -> None:
        if not self.approvals.same_team(actor):
            raise UserError(
                "Runs and reports are for this workspace's own members.",
                "Ask a member of the workspace.",
            )

    def require_member(self, actor: Actor, why: str) -> None:
        """Raise `why` unless `actor` is one of the workspace's own members."""
        if not self.approvals.same_team(actor):
            raise UserError(why)

    def waiting_for(self, actor: Actor, limit: int = 10) -> list[tuple[ProposalRow, Run]]:
        """Open proposals `actor` may decide (the Home tab lists them)."""
        return self.approvals.actionable(actor, limit)

    def _approver(self, actor: Actor) -> bool:
        return self.approvals.is_approver(actor).allowed

    def recent_runs(
        self, limit: int = 10, requester: str | None = None, actor: Actor | None = None
    ) -> list[Run]:
        """Recent runs; none for a guest (runs are for the workspace's own members)."""
        if actor is not None and not self.approvals.same_team(actor):
            return []
        return self.store.recent(limit=limit, requester=requester)

    def report(self, run_id: str) -> Report | None:
        return self.store.report(self._known(run_id).id)

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
        """Approve or reject a proposal (`RUN/P1`). Denials are outcomes, not exceptions: the
        clicker gets the reason and the audit trail a row. An approval enqueues the apply."""
        outcome = self.approvals.decide(
            actor,
            ref,
            decision,
            reason,
            shown_sha=shown_sha,
            event_key=event_key,
            as_pull_request=as_pull_request,
        )
        if outcome.ok and decision == "approve" and outcome.proposal is not None:
            self.enqueue_apply(outcome.proposal.id or 0)
        return outcome

    def proposals(self, run_id: str) -> list[ProposalRow]:
        return self.approvals.proposals.for_run(run_id)

    def proposal_states(self, run_id: str) -> dict[str, ProposalState]:
        """What became of a run's proposals (by P1, P2 ...), for its report shown again."""
        return states_of(
            self.proposals(run_id), ttl_s=self.policy.approvals.ttl_seconds, now=utcnow()
        )

    def audit(self, run_id: str | None = None, since: datetime | None = None) -> list[AuditEvent]:
        return self.approvals.proposals.audit_rows(run_id=run_id, since=since)

    def _known(self, run_id: str) -> Run:
        run = self.store.get(run_id)
        if run is None:
            raise UserError(f"No run {shown(run_id)!r}.", "`status` lists your recent runs.")
        return run
