"""What a worker does with a run id: claim it, analyze under a lease, store the one report."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from agents.context.git import DiffContext, GitRepo, diff_of, resolve_range
from agents.context.jira import TicketContext
from agents.errors import AnalysisInputError, GitFailure
from agents.learnings import Learnings
from agents.lifecycle import compare, with_votes
from agents.llm import LLMSession, LLMSettings
from agents.pipeline import Paused, Progress, Saved, analyze_branch, default_agents, run_step
from agents.report import Report
from bot.codehost.pulls import PreparedPull, number_of, prepare, with_pull, with_review
from bot.codehost.registry import CodeHosts
from bot.config import ConfigError, PolicyConfig, RepoConfig
from bot.core.budget import Budget
from bot.core.chat_errors import for_chat
from bot.core.ports import RunObserver, worker_id
from bot.core.tickets import Tickets
from bot.logs import run_context
from bot.repos import RepoResolver
from bot.store.answers import AnswerCache
from bot.store.db import through_restart
from bot.store.models import Run
from bot.store.runs import RunStore
from bot.store.types import utcnow

log = logging.getLogger(__name__)


class RunExecutor:
    def __init__(
        self,
        store: RunStore,
        policy: PolicyConfig,
        repos: RepoResolver,
        llm: LLMSettings | None,
        lease_s: float,
        *,
        tickets: Tickets,
        budget: Budget,
        stopping: Callable[[], bool],
        learnings: Callable[[str], Learnings],
        save_prompts: Callable[[dict[tuple[str, str], str]], None],
        answers: AnswerCache,
        votes: Callable[[str, list[str]], dict[str, tuple[int, int]]],
        observers: Sequence[RunObserver] = (),
        code_hosts: CodeHosts | None = None,
    ) -> None:
        """`stopping`: is this process shutting down (then a run interrupted by the signal is
        handed back, not failed). `answers`: the model's answers and the analyzers' answers
        per file, kept for reuse and shared by every worker (pruned after each run)."""
        self.answers = answers
        # Where a pull request's head and base are read (`kind` "pr"); none: no pull requests.
        self.code_hosts = code_hosts if code_hosts is not None else CodeHosts(None)
        # The team's votes on findings in earlier runs, by repository and fingerprint.
        self.votes = votes
        self.tickets = tickets
        # The repository's curated learnings; today's budget (shared by concurrent runs); where
        # each prompt's text is kept for the interaction log.
        self.learnings = learnings
        self.budget = budget
        self.save_prompts = save_prompts
        self.store = store
        self.policy = policy
        self.repos = repos
        self.llm = llm
        self.lease_s = lease_s
        self.observers: list[RunObserver] = list(observers)
        self._active: dict[str, str] = {}  # run id -> the claim's worker id, while it runs
        self._active_lock = threading.Lock()
        self.stopping = stopping
        self.handed_back: list[str] = []  # handed back by _fail during a shutdown

    def hand_back_all(self) -> list[str]:
        """Shutting down: give every run this process still works on back to the queue."""
        with self._active_lock:
            held = list(self._active.items())
            handed, self.handed_back = list(self.handed_back), []
        for run_id, worker in held:
            try:
                if self.store.hand_back(run_id, worker):
                    handed.append(run_id)
                    log.warning("run %s: handed back to the queue (this worker stops)", run_id)
            except Exception:  # the store is away: the lease runs out and the reaper takes it
                log.exception("run %s: could not hand it back", run_id)
        return handed

    def redeliver(self, older_than_s: float) -> list[str]:
        """Post the reports a dead worker stored but never posted. The observers claim each
        post, so several reapers post each report once."""
        if not self.observers:
            return []
        runs = self.store.unposted(older_than_s)
        for run_id in runs:
            report = self.store.report(run_id)
            if report is not None:
                log.warning("run %s: its report was not posted; posting it now", run_id)
                self._tell(lambda o, r=report, i=run_id: o.finished(i, r))  # type: ignore[misc]
        return runs

    def _tell(self, call: Callable[[RunObserver], None]) -> None:
        for observer in self.observers:
            try:
                call(observer)
            except Exception:
                log.exception("an observer failed; the run is unaffected")

    def __call__(self, run_id: str) -> None:
        with run_context(run_id):  # every log line of this job carries its run id
            self._claim_and_execute(run_id)

    def _claim_and_execute(self, run_id: str) -> None:
        worker = worker_id()
        run = self.store.claim(run_id, worker, self.lease_s)
        if run is None:
            log.info("run %s: not claimable (finished, cancelled or held); nothing to do", run_id)
            return
        log.info("run %s: claimed by %s (attempt %d)", run_id, worker, run.attempts)
        with self._active_lock:
            self._active[run_id] = worker
        try:
            self._execute(run_id, run, worker)
        finally:
            with self._active_lock:
                self._active.pop(run_id, None)

    def _execute(self, run_id: str, run: Run, worker: str) -> None:
        keep_alive = _Heartbeat(
            self.store,
            run_id,
            worker,
            self.lease_s,
            lambda progress: self._tell(lambda o: o.progress(run_id, progress)),
        )
        keep_alive.start()
        path: Path | None = None
        pulled: PreparedPull | None = None
        try:
            name, config = self.policy.repo(run.repo)
            path = self.repos.prepare(name, config)
            ticket = None
            if run.kind == "ticket" and run.ticket:
                ticket = self.tickets.fetch(run.ticket)
            session = self._session(run_id)
            if run.kind == "flag_retire":  # `flag retire KEY`: a proposal, no analysis
                from agents.roles.feature_flags import retire_report

                key, _, keep = run.target.partition("=")
                report = retire_report(
                    path,
                    key,
                    None if not keep else keep == "on",
                    run.base or config.base,
                    run_id=run_id,
                    settings=self.policy.flags.settings(),
                )
            elif run.kind == "pr":  # `analyze pr N`: its head and base from the host, fetched
                host, project = self.code_hosts.for_repo(name, config)
                prepared = prepare(host, project, number_of(run.target), path)
                report = analyze_branch(
                    path,
                    prepared.branch,
                    prepared.base,
                    checkpoint=lambda progress: keep_alive.checkpoint(progress),
                    run_id=run_id,
                    llm=session,
                    learnings=self.learnings(name),
                    kept=self.answers,
                    flags=self.policy.flags.settings(),
                )
                report = with_pull(report, prepared.pull)
                pulled = prepared
            elif run.step:
                result = self._step(run, worker, name, config, path, keep_alive, session, ticket)
                if isinstance(result, Paused):  # waiting at a checkpoint (or the run was lost)
                    self._prune_answers()
                    return
                report = result
            else:
                report = analyze_branch(
                    path,
                    run.target,
                    run.base or config.base,
                    checkpoint=lambda progress: keep_alive.checkpoint(progress),
                    run_id=run_id,
                    llm=session,
                    ticket=ticket,
                    learnings=self.learnings(name),
                    kept=self.answers,
                    flags=self.policy.flags.settings(),
                )
            self._prune_answers()
            previous = self.store.previous_report(run)
            if previous is not None:
                report = compare(report, previous)
            voted = self.votes(name, [f.fingerprint for f in report.findings])
            if voted:
                report = with_votes(report, voted)
            if pulled is not None:
                report = with_review(report, pulled)
        except AnalysisInputError as exc:  # the request's fault, never a signal's
            message, hint = for_chat(exc, run.repo, path)
            self._fail(run_id, worker, f"{message} {hint}".strip(), interruptible=False)
            return
        except ConfigError as exc:
            self._fail(run_id, worker, str(exc), interruptible=False)
            return
        except GitFailure as exc:
            self._fail(run_id, worker, f"git failed: {exc}")
            return
        except Exception as exc:  # the run must end visibly, whatever broke
            log.exception("run %s failed", run_id)
            self._fail(run_id, worker, f"internal error: {type(exc).__name__}: {exc}")
            return
        finally:
            keep_alive.stop()
        if not self._finish(run_id, worker, report):
            log.warning("run %s: lease lost before finishing; another worker owns it", run_id)
            return
        if session is not None:
            try:
                self.save_prompts(session.prompts)
            except Exception:  # the log loses a prompt text; the run and its report are kept
                log.exception("run %s: could not keep the prompt texts", run_id)
        self._tell(lambda o: o.finished(run_id, report))

    def _step(
        self,
        run: Run,
        worker: str,
        name: str,
        config: RepoConfig,
        path: Path,
        keep_alive: _Heartbeat,
        session: LLMSession | None,
        ticket: TicketContext | None,
    ) -> Report | Paused:
        """One leg of a stepped run: the next agent from the state the row keeps (the first
        from the branch), then a pause at the checkpoint, or the report after the last agent
        (or when a human, or the deadline, stopped it at the checkpoint). The pause ends this
        job: the wait is the row, not a thread."""
        repo = GitRepo.open(path)
        saved = Saved.model_validate_json(run.checkpoint) if run.checkpoint else None
        if saved is None:
            diff = diff_of(resolve_range(repo, run.target, run.base or config.base))
        else:  # the same commits as the first leg, whatever the branch did since
            pinned = DiffContext(repo, saved.branch, saved.base, saved.head_sha, saved.base_sha, [])
            diff = diff_of(pinned)

        def leg(saved: Saved | None, stop: str | None) -> Report | Paused:
            return run_step(
                diff,
                saved=saved,
                run_id=run.id,
                stop=stop,
                checkpoint=lambda progress: keep_alive.checkpoint(progress),
                agents=default_agents(ticket, self.policy.flags.settings()),
                llm=session,
                ticket=ticket,
                learnings=self.learnings(name),
                kept=self.answers,
            )

        stop = self._stop_note(run, saved) if run.stop_requested and saved else None
        result = leg(saved, stop)
        if isinstance(result, Paused) and not self._pause(run.id, worker, result):
            now = self.store.get(run.id)
            if now is not None and now.worker == worker and now.stop_requested:
                # Stopped while its agent ran: the report of what it found, as a stop does.
                result = leg(result.saved, self._stop_note(now, result.saved))
        return result

    def _pause(self, run_id: str, worker: str, paused: Paused) -> bool:
        """Keep the checkpoint in the row (waiting, no worker, a deadline) and show it."""
        wait_s = self.policy.approvals.checkpoint_timeout_seconds
        progress = json.dumps([asdict(agent) for agent in paused.progress.agents])
        kept = self.store.pause(
            run_id,
            worker,
            paused.saved.model_dump_json(),
            utcnow() + timedelta(seconds=wait_s),
            progress,
        )
        if kept:
            log.info("run %s: waiting at the checkpoint after %s", run_id, paused.saved.after)
            self._tell(lambda o: o.waiting(run_id, paused.saved))
        return kept

    def _stop_note(self, run: Run, saved: Saved) -> str:
        after = saved.after or "the first agent"
        if run.stop_requested_by:
            return f"Stopped at the checkpoint after {after} by {run.stop_requested_by}."
        return (
            f"Nobody continued it within {self.policy.approvals.checkpoint_timeout} of the "
            f"checkpoint after {after}, so it stopped there."
        )

    def _finish(self, run_id: str, worker: str, report: Report) -> bool:
        """Store the report, riding out a database restart: the work is done, keep it. If
        that still fails, the lease runs out and the reaper gives the run to another worker."""

        def attempt(number: int) -> bool:
            if self.store.finish(run_id, worker, report, calls_recorded=self.llm is not None):
                return True
            # An earlier attempt may have committed and lost its answer: then it is ours.
            run = self.store.get(run_id)
            return bool(
                number
                and run is not None
                and run.worker == worker
                and run.status in ("done", "cancelled")
                and self.store.reports_count(run_id) == 1
            )

        return through_restart(attempt, f"run {run_id}: storing the report")

    def _session(self, run_id: str) -> LLMSession | None:
        """A model session that records each call as it ends and checks today's budget (if
        any) before each call, so runs going at once share it."""
        if self.llm is None:
            return None
        return LLMSession(
            self.llm,
            on_call=lambda call: self.store.record_call(run_id, call),
            budget_left=self.budget.left,
            answers=self.answers,
        )

    def _prune_answers(self) -> None:
        try:
            gone = self.answers.prune()
        except Exception:  # the bound is kept on the next run; this one's report stands
            log.warning("could not prune the kept model answers", exc_info=True)
            return
        if gone:
            log.info("pruned %d kept model answer(s) past the cache's bounds", gone)

    def _fail(self, run_id: str, worker: str, error: str, *, interruptible: bool = True) -> None:
        # The stop signal may have reached our git, ruff or bandit processes too (a process
        # group, a container): that is not the run's failure. Hand it back.
        if interruptible and self._shutting_down() and self.store.hand_back(run_id, worker):
            log.warning("run %s: interrupted by the shutdown; handed back", run_id)
            with self._active_lock:
                self.handed_back.append(run_id)
            return
        if self.store.fail(run_id, worker, error):
            self._tell(lambda o: o.failed(run_id, error))

    def _shutting_down(self) -> bool:
        """Is this process stopping? The consumer's stop flag trails the signal by up to a
        tenth of a second, so look twice."""
        if self.stopping():
            return True
        time.sleep(0.3)
        return self.stopping()


class _Heartbeat:
    """Extends the lease while the run works, between checkpoints too (a model call can take
    longer than a lease), and carries progress and stop requests through checkpoints."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        worker: str,
        lease_s: float,
        on_progress: Callable[[Progress], None],
    ) -> None:
        self.on_progress = on_progress
        self.store = store
        self.run_id = run_id
        self.worker = worker
        self.lease_s = lease_s
        self._done = threading.Event()
        self._keep_going = True
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{run_id}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No more beats; the thread is gone when this returns (a job that ends at a
        checkpoint leaves no thread behind), unless a beat is stuck on the database."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._done.wait(self.lease_s / 3):
            try:
                if not self.store.heartbeat(self.run_id, self.worker, self.lease_s):
                    self._keep_going = False
            except Exception:  # the database is away (a restart): try again at the next beat;
                # if it stays away past the lease, the reaper hands the run to another worker
                log.warning("run %s: heartbeat failed; retrying", self.run_id, exc_info=True)

    def checkpoint(self, progress: Progress) -> bool:
        state = json.dumps([asdict(agent) for agent in progress.agents])
        try:
            if not self.store.heartbeat(self.run_id, self.worker, self.lease_s, progress=state):
                self._keep_going = False
        except Exception:  # progress is shown, not kept: a database blip must not end the run
            log.warning("run %s: could not save progress; going on", self.run_id, exc_info=True)
        self.on_progress(progress)
        return self._keep_going
