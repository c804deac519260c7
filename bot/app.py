"""The composition root: settings, policy, database, queue, executor, use cases and surfaces'
adapters, each built once, in order, with everything it needs passed to its constructor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slack_sdk import WebClient
from sqlalchemy import Engine, inspect

from bot.codehost.registry import CodeHosts, has_host
from bot.config import ConfigError, PolicyConfig, RepoConfig, load_policy
from bot.core.approvals import Approvals
from bot.core.budget import Budget, DailyBudget, NoBudget
from bot.core.digests import Digests
from bot.core.feedback import FeedbackService
from bot.core.messages import RunMessages
from bot.core.policy import NO_GROUPS, NO_WORKSPACE
from bot.core.ports import NoDigestSink, ProposalObserver, RunAnnouncer, RunObserver, worker_id
from bot.core.service import Service
from bot.core.tickets import tickets_for
from bot.repos import RepoResolver
from bot.settings import Settings
from bot.store.answers import answer_cache
from bot.store.db import make_engine, upgrade
from bot.store.digests import DigestStore
from bot.store.feedback import FeedbackStore
from bot.store.follows import FollowStore
from bot.store.inbox import InboxStore
from bot.store.proposals import ProposalStore
from bot.store.review_posts import ReviewPostStore
from bot.store.runs import RunStore
from bot.store.stats import Stats
from bot.store.workers import WorkerStore
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.digest import SlackDigestSink
from bot.surfaces.slack.groups import SlackGroups, WorkspaceTeam
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import handlers
from bot.surfaces.slack.notifier import SlackNotifier
from bot.surfaces.slack.sessions import AgentSessions
from bot.worker.executor import RunExecutor
from bot.worker.jobs import Jobs, Shutdown, TaskQueue, make_huey
from bot.worker.reaper import Reaper
from bot.worker.scheduler import Scheduler


@dataclass
class Runtime:
    """Everything one process built: what the command it runs (serve, worker, shell, ...) uses."""

    settings: Settings
    policy: PolicyConfig
    engine: Engine
    store: RunStore
    jobs: Jobs
    reaper: Reaper
    executor: RunExecutor
    service: Service
    scheduler: Scheduler
    inbox: SlackInbox | None  # with a Slack token: where Slack deliveries are kept

    def start_jobs(self) -> None:
        """Run jobs (and the reaper) in this process: the embedded default."""
        self.jobs.start_consumer(self.reaper, in_process=True)

    def run_jobs_forever(self) -> None:
        self.jobs.run_forever(self.reaper)

    def close(self) -> None:
        self.jobs.stop()
        self.engine.dispose()


def build_app(
    settings: Settings,
    *,
    cwd: Path | None = None,
    repo_override: Path | None = None,
    kind: str = "worker",
) -> Runtime:
    """Everything a surface or a worker needs. The embedded SQLite database is migrated here;
    a shared database must have been migrated with `chatops db upgrade`. `kind` names this
    process in `chatops status` (worker, serve, shell)."""
    policy = _policy(settings, cwd, repo_override)
    engine = _engine(settings.db_url)
    store = RunStore(engine)
    proposals = ProposalStore(engine)
    feedback_store = FeedbackStore(engine)
    stats = Stats(engine)
    cap = settings.chatops_daily_budget_usd
    budget: Budget = (
        DailyBudget(stats, cap, policy.digest.timezone) if cap is not None else NoBudget()
    )
    jira = settings.jira()
    tickets = tickets_for(jira)
    slack = (
        web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
        if settings.slack_bot_token is not None
        else None
    )
    run_observers: list[RunObserver] = []
    proposal_observers: list[ProposalObserver] = []
    announcers: list[RunAnnouncer] = []
    if slack is not None:
        notifier = SlackNotifier(
            slack, RunMessages(store), hosted=lambda repo: has_host(policy, repo)
        )
        # The agent sessions after the notifier: a session stops processing once its report is in.
        run_observers += [notifier, AgentSessions(slack, RunMessages(store))]
        proposal_observers.append(notifier)
        announcers.append(notifier)

    code_hosts = CodeHosts(settings)  # the only part given the code hosts' credentials
    approvals = Approvals(
        store,
        proposals,
        policy,
        RepoResolver(settings.chatops_data_dir),
        tickets=tickets,
        observers=proposal_observers,
        groups=SlackGroups(slack) if slack is not None else NO_GROUPS,
        workspace=WorkspaceTeam(slack) if slack is not None else NO_WORKSPACE,
        code_hosts=code_hosts,
        review_posts=ReviewPostStore(engine),
    )
    feedback = FeedbackService(
        store, feedback_store, stats, policy, approvals.is_approver, approvals.same_team
    )
    digests = Digests(
        stats,
        DigestStore(engine),
        policy,
        daily_budget_usd=cap,
        sink=SlackDigestSink(slack) if slack is not None else NoDigestSink(),
    )
    shutdown = Shutdown()
    executor = RunExecutor(
        store,
        policy,
        RepoResolver(settings.chatops_data_dir),
        settings.llm(),
        settings.chatops_lease_s,
        tickets=tickets,
        budget=budget,
        stopping=shutdown,
        observers=run_observers,
        learnings=feedback_store.for_repo,
        save_prompts=feedback_store.save_prompts,
        answers=answer_cache(settings, engine),
        votes=feedback_store.tally,
        code_hosts=code_hosts,
    )
    queue = TaskQueue(make_huey(settings), run=executor, apply=approvals.apply)
    service = Service(
        store,
        policy,
        approvals,
        feedback,
        digests,
        enqueue=queue.enqueue,
        enqueue_apply=queue.enqueue_apply,
        tickets=tickets,
        budget=budget,
        follows=FollowStore(engine),
        repos=RepoResolver(settings.chatops_data_dir),
        announcers=announcers,
        code_hosts=code_hosts,
    )
    scheduler = Scheduler(digests, feedback, service.follows)
    jobs = Jobs(queue, settings, tick=scheduler.tick, shutdown=shutdown)
    process = worker_id()  # this process, as the workers table and the inbox's leases name it
    inbox = _inbox(slack, engine, service, process, settings.chatops_lease_s)
    reaper = Reaper(
        settings,
        store,
        proposals,
        WorkerStore(engine),
        process=process,
        kind=kind,
        enqueue=jobs.enqueue,
        enqueue_apply=jobs.enqueue_apply,
        reconcile_applies=approvals.reconcile_abandoned,
        redeliver_reports=executor.redeliver,
        redeliver_deliveries=inbox.redeliver if inbox is not None else lambda: [],
    )
    return Runtime(
        settings, policy, engine, store, jobs, reaper, executor, service, scheduler, inbox
    )


def _policy(settings: Settings, cwd: Path | None, repo_override: Path | None) -> PolicyConfig:
    if repo_override is None:
        return load_policy(settings.chatops_config, cwd=(cwd or Path.cwd()).resolve())
    path = repo_override.resolve()
    if not path.exists():
        raise ConfigError(f"--repo: {path} does not exist.")
    return PolicyConfig(repos={path.name or "repo": RepoConfig(path=path)}, source="--repo")


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        upgrade(url)
    engine = make_engine(url)
    if not inspect(engine).has_table("runs"):
        engine.dispose()
        raise ConfigError(
            f"The database at {url.split('@')[-1]} has no schema: run `chatops db upgrade`."
        )
    return engine


def _inbox(
    slack: WebClient | None,
    engine: Engine,
    service: Service,
    process: str,
    lease_s: float,
) -> SlackInbox | None:
    if slack is None:
        return None
    return SlackInbox(InboxStore(engine), slack, handlers(service), worker=process, lease_s=lease_s)
