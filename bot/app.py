"""Wiring: settings, policy, database, queue, executor and use cases, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect

from bot.config import ConfigError, PolicyConfig, RepoConfig, load_policy
from bot.core.approvals import Approvals
from bot.core.budget import DailyBudget
from bot.core.digests import Digests
from bot.core.feedback import FeedbackService
from bot.core.service import Service
from bot.repos import RepoResolver
from bot.settings import Settings
from bot.store.db import make_engine, upgrade
from bot.store.digests import DigestStore
from bot.store.feedback import FeedbackStore
from bot.store.inbox import InboxStore
from bot.store.proposals import ProposalStore
from bot.store.runs import RunStore
from bot.store.stats import Stats
from bot.store.workers import WorkerStore
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.digest import SlackDigestSink
from bot.surfaces.slack.groups import SlackGroups, WorkspaceTeam
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import handlers
from bot.surfaces.slack.notifier import SlackNotifier
from bot.worker.executor import RunExecutor
from bot.worker.jobs import Jobs, make_huey
from bot.worker.scheduler import Scheduler


@dataclass
class App:
    settings: Settings
    policy: PolicyConfig
    engine: Engine
    store: RunStore
    jobs: Jobs
    executor: RunExecutor
    service: Service
    feedback: FeedbackService
    digests: Digests
    scheduler: Scheduler
    inbox: SlackInbox | None  # with a Slack token: where Slack deliveries are kept

    def close(self) -> None:
        self.jobs.stop()
        self.engine.dispose()


def build_app(
    settings: Settings, *, cwd: Path | None = None, repo_override: Path | None = None
) -> App:
    """Everything a surface or a worker needs. The embedded SQLite database is migrated here;
    a shared database must have been migrated with `chatops db upgrade`."""
    here = (cwd or Path.cwd()).resolve()
    if repo_override is not None:
        path = repo_override.resolve()
        if not path.exists():
            raise ConfigError(f"--repo: {path} does not exist.")
        policy = PolicyConfig(repos={path.name or "repo": RepoConfig(path=path)}, source="--repo")
    else:
        policy = load_policy(settings.chatops_config, cwd=here)
    url = settings.db_url
    if url.startswith("sqlite"):
        upgrade(url)
    engine = make_engine(url)
    if not inspect(engine).has_table("runs"):
        engine.dispose()
        raise ConfigError(
            f"The database at {url.split('@')[-1]} has no schema: run `chatops db upgrade`."
        )
    store = RunStore(engine)
    feedback_store = FeedbackStore(engine)
    stats = Stats(engine)
    cap = settings.chatops_daily_budget_usd
    budget = DailyBudget(stats, cap, policy.digest.timezone) if cap is not None else None
    executor = RunExecutor(
        store,
        policy,
        RepoResolver(settings.chatops_data_dir),
        settings.llm(),
        settings.chatops_lease_s,
        jira=settings.jira(),
        learnings=feedback_store.for_repo,
        budget=budget.left if budget is not None else None,
        save_prompts=feedback_store.save_prompts,
    )
    slack_client = None
    if settings.slack_bot_token is not None:
        slack_client = web_client(
            settings.slack_bot_token.get_secret_value(), settings.slack_api_url
        )
        executor.observers.append(SlackNotifier(slack_client, store))
    jobs = Jobs(make_huey(settings), store, executor, settings)
    jobs.hand_back = executor.hand_back_all
    executor.stopping = jobs.stopping
    jobs.redeliver = executor.redeliver
    jobs.workers = WorkerStore(engine)
    service = Service(store, jobs.enqueue, policy)
    service.budget = budget
    approvals = Approvals(
        store,
        ProposalStore(engine),
        policy,
        RepoResolver(settings.chatops_data_dir),
        jobs.enqueue_apply,
    )
    if slack_client is not None:
        approvals.groups = SlackGroups(slack_client)
        approvals.workspace_team = WorkspaceTeam(slack_client)
        approvals.observers.append(SlackNotifier(slack_client, store))
    jobs.register_apply(approvals.apply, approvals.proposals, approvals.reconcile_abandoned)
    approvals.jira = settings.jira()
    service.approvals = approvals
    service.jira = settings.jira()
    feedback = FeedbackService(
        store, feedback_store, stats, policy, approvals.is_approver, approvals.same_team
    )
    service.feedback = feedback
    digests = Digests(
        stats,
        DigestStore(engine),
        policy,
        daily_budget_usd=cap,
        sink=SlackDigestSink(slack_client) if slack_client is not None else None,
    )
    service.digests = digests
    scheduler = Scheduler(digests, feedback)
    jobs.register_tick(scheduler.tick)
    inbox = None
    if slack_client is not None:
        inbox = SlackInbox(
            InboxStore(engine),
            slack_client,
            handlers(service, store),
            worker=jobs.process,
            lease_s=settings.chatops_lease_s,
        )
        jobs.redeliver_inbox = inbox.redeliver
    return App(
        settings,
        policy,
        engine,
        store,
        jobs,
        executor,
        service,
        feedback,
        digests,
        scheduler,
        inbox,
    )
