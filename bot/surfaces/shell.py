"""`chatops shell`: the bot in a terminal. The same commands as Slack's `/agent`, live progress,
the report, and each button of a report as a typed command."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agents.analyzers.processes import detach_from_terminal
from agents.context.git import GitRepo, last_commits
from agents.errors import AnalysisInputError
from agents.pipeline import AgentProgress, Progress, Saved
from bot.core.actor import Actor, UserError
from bot.core.approvals import Outcome
from bot.core.checkpoints import Dropped, saved_of
from bot.core.commands import (
    AnalyzeBranch,
    AnalyzePullRequest,
    AnalyzeTicket,
    Approve,
    Command,
    CommandError,
    Continue,
    FlagRetire,
    Follow,
    Help,
    Learnings,
    Status,
    Stop,
    Unfollow,
    Vote,
    help_text,
    parse,
)
from bot.core.digest import DigestData
from bot.core.digest import text as digest_text
from bot.core.feedback import Voted
from bot.core.follows import follows_text
from bot.core.messages import subject
from bot.core.proposal_state import WAITING
from bot.core.service import Asked, Service
from bot.logs import HeldBack, held_back
from bot.store.models import FINAL, LearningRow, Run
from bot.surfaces.render.terminal import print_report, progress_view

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession

    from bot.surfaces.repl import Sources

POLL_S = 0.2
EXIT = ("exit", "quit", "/exit")
SHELL_WORDS = ("exit", "quit", "clear")  # what the shell answers itself, beside the grammar


class Shell:
    def __init__(
        self,
        service: Service,
        user: str,
        console: Console | None = None,
        history: Path | None = None,
    ) -> None:
        self.service = service
        self.actor = Actor(user=user, surface="shell")
        self.console = console or Console()
        self.last_run: str | None = None
        self.logs = HeldBack()
        self.history = history  # the typed lines' file, when a person types at a terminal
        self.interactive = False  # lines come from the line editor: Ctrl-C ends a command only

    def say(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(text, style=style or ""), soft_wrap=True)

    def banner(self) -> None:
        names = ", ".join(sorted(self.service.policy.repos))
        self.say(f"chatops shell: acting as {self.actor.user}; repositories: {names}.", "bold")
        for name, repo in sorted(self.service.policy.repos.items()):
            if repo.path is None:
                continue
            try:
                git = GitRepo.open(repo.path)
                branches = git.branch_names()
            except AnalysisInputError as exc:
                self.say(f"  {name}: {exc.message}", "red")
                continue
            shown = ", ".join(branches[:8]) + (" ..." if len(branches) > 8 else "")
            self.say(f"  {name} ({repo.path}): branches {shown or '(none)'}")
            self._offer(name, git, branches)
        self.say("Type `/agent help` for the commands, Tab to complete; `exit` to leave.", "dim")

    def _offer(self, name: str, repo: GitRepo, branches: list[str]) -> None:
        """When every branch is the default branch (a fresh clone), there is nothing to analyze
        by name alone: say so, and what works instead."""
        defaults = repo.default_branch_names()
        if not defaults or not branches:
            return
        if any(b.removeprefix("origin/") not in defaults for b in branches):
            return
        main = defaults[0]
        self.say(
            f"  Nothing to analyze in {name} yet: {main} is its default branch, and there is "
            "no other. What works:",
            "yellow",
        )
        offers: list[tuple[str, str]] = []
        back = last_commits(repo, main)
        if back:
            commits = "commit" if back == 1 else f"{back} commits"
            offers.append((f"analyze branch {main} against {main}~{back}", f"its last {commits}"))
        offers += [
            (
                "analyze branch NAME against BASE",
                "a branch of your own (`git switch -c NAME`, commit), against where it started",
            ),
            ("chatops demo", "in another terminal: a repository with a risky branch, analyzed"),
        ]
        width = max(len(command) for command, _ in offers)
        for command, what in offers:
            self.say(f"    {command:<{width}}   {what}")

    def lines(self) -> Iterator[str]:
        """What is typed: through the line editor at a terminal, else stdin's lines as they
        come (piped commands, each echoed)."""
        if sys.stdin.isatty() and sys.stdout.isatty():
            from bot.surfaces.repl import prompt_session

            yield from self.typed(prompt_session(self.sources(), self.history))
            return
        interactive = sys.stdin.isatty()  # typed, with the answers going elsewhere (a pipe)
        while True:
            try:
                line = input("chatops> ") if interactive else sys.stdin.readline()
            except EOFError:
                return
            if not interactive:
                if not line:
                    return
                line = line.rstrip("\n")
                if line.strip():
                    self.say(f"> {line}", "dim")
            yield line

    def typed(self, session: PromptSession[str]) -> Iterator[str]:
        """The lines a person enters at `session`'s prompt (Ctrl-C: the line dropped)."""
        from bot.surfaces.repl import prompted

        self.interactive = True
        yield from prompted(session)

    def sources(self) -> Sources:
        """What Tab completes besides the grammar's words: read from git and the store then."""
        from bot.surfaces.repl import Sources

        policy = self.service.policy

        def branches(repo: str | None) -> list[str]:
            names: list[str] = []
            for name, config in sorted(policy.repos.items()):
                if config.path is not None and repo in (None, name):
                    names += GitRepo.open(config.path).branch_names()
            return names

        def runs() -> list[str]:
            return [run.id for run in self.service.recent_runs(limit=20, actor=self.actor)]

        def proposals() -> list[str]:
            if self.last_run is None:
                return []
            rows = self.service.proposals(self.last_run)
            return [f"{row.run_id}/{row.pid}" for row in rows if row.status == "proposed"]

        return Sources(
            branches=branches,
            repos=lambda: sorted(policy.repos),
            runs=runs,
            proposals=proposals,
            shell_words=SHELL_WORDS,
        )

    def run(self, lines: Iterable[str] | None = None) -> int:
        # Ctrl-C at the prompt leaves runs alone: the analyzers must not receive it either.
        before = detach_from_terminal()
        # Worker threads log while a person types: their lines wait for the next command.
        try:
            with held_back(self.logs):
                return self._run(lines)
        finally:
            detach_from_terminal(before)
            self._release_logs()

    def _release_logs(self) -> None:
        self.logs.show_pending(lambda line: self.say(line, "dim"))

    def _run(self, lines: Iterable[str] | None) -> int:
        self.banner()
        try:
            for line in lines if lines is not None else self.lines():
                self._release_logs()  # what was logged while the prompt was up
                text = line.strip()
                if not text:
                    continue
                if text in EXIT:
                    break
                if text == "clear":
                    self.console.clear()
                    continue
                try:
                    self.handle(text)
                except KeyboardInterrupt:
                    if not self.interactive:
                        raise
                    self.say("Interrupted.", "dim")  # back to the prompt; a run goes on
                self._release_logs()
        except KeyboardInterrupt:
            self.say("")
        return 0

    def handle(self, text: str) -> None:
        try:
            self._dispatch(parse(text, also=SHELL_WORDS))
        except CommandError as exc:
            self.say(f"error: {exc.message}", "bold red")
            if exc.usage:
                self.say(f"  usage: {exc.usage}")
        except UserError as exc:
            self.say(f"error: {exc.message}", "bold red")
            if exc.hint:
                self.say(f"  {exc.hint}")

    def _dispatch(self, command: Command) -> None:
        """Carried out through the core's one table, then shown (and waited on)."""
        if isinstance(command, Help):
            self.say(help_text())
            self.say("  clear             clear the screen")
            self.say("  exit              leave the shell (runs keep going; Ctrl-D too)")
            return
        asked = Asked(last_run=self.last_run, via="shell")
        result = self.service.carry_out(self.actor, command, asked)
        if isinstance(command, AnalyzeBranch | AnalyzePullRequest | AnalyzeTicket | FlagRetire):
            assert isinstance(result, list)
            for requested in result:
                self._queued(requested.run)
        elif isinstance(command, Status):
            if isinstance(result, Run):
                self._show(result)
            else:
                assert isinstance(result, list)
                self._list(result)
        elif isinstance(command, Continue):
            assert isinstance(result, Run)
            self.say(f"Run {result.id} goes on.")
            self.wait(result.id)
        elif isinstance(result, Dropped):
            self.say(result.message, "green")
            self._checkpoint(result.run, result.saved)
        elif isinstance(command, Stop):
            assert isinstance(result, Run)
            if result.checkpoint is not None and result.status == "queued":
                self.say(f"Run {result.id} stops at its checkpoint: the report of what it found.")
                self.wait(result.id)
            elif result.status == "cancelled":
                self.say(f"Run {result.id} cancelled before it started.")
            else:
                self.say(f"Stop requested: run {result.id} ends after the agent now running.")
        elif isinstance(result, Outcome):
            self._decided(result, command)
        elif isinstance(result, Voted):
            self._voted(result, command)
        elif isinstance(command, Learnings):
            assert isinstance(result, list)
            self._learnings(result)
        elif isinstance(result, LearningRow):
            self.say(f"Forgot {result.id}: {result.text}. Later runs go without it.", "green")
        elif isinstance(result, DigestData):
            self.say(digest_text(result))
        elif isinstance(command, Follow | Unfollow):
            self.say(follows_text(result))

    def _queued(self, run: Run) -> None:
        self.last_run = run.id
        if run.ticket:
            self.say(
                f"Run {run.id} queued: analyzing {run.target} in {run.repo} for "
                f"{run.ticket}, requested by {run.requester}."
            )
        else:
            where = f" against {run.base}" if run.base and run.kind == "branch" else ""
            self.say(
                f"Run {run.id} queued: analyzing {subject(run)}{where} in {run.repo}, "
                f"requested by {run.requester}."
            )
        self.wait(run.id)

    def _voted(self, voted: Voted, command: Command) -> None:
        assert isinstance(command, Vote)
        self.say(voted.message, "green")
        if command.value < 0 and not command.reason:
            run_id = command.run_id or self.last_run
            target = f"{run_id}/{command.item}" if command.item else run_id
            self.say(
                f'  Say what was wrong: down {target} "REASON" '
                "(curation turns reasons into learnings).",
                "dim",
            )

    def _learnings(self, rows: list[LearningRow]) -> None:
        if not rows:
            self.say("No learnings yet: `chatops feedback curate` turns votes into learnings.")
            return
        table = Table("id", "repo", "agent", "kind", "learning")
        for row in rows:
            table.add_row(row.id, row.repo, row.agent, row.kind, Text(row.text))
        self.console.print(table)

    def _decided(self, outcome: Outcome, command: Command) -> None:
        """The decision; an approval is followed until its apply ends (or two minutes)."""
        self.say(outcome.message, "green" if outcome.ok else "bold red")
        if not outcome.ok or not isinstance(command, Approve) or outcome.proposal is None:
            return
        proposal = outcome.proposal
        ref = f"{proposal.run_id}/{proposal.pid}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = next(
                (p for p in self.service.proposals(proposal.run_id) if p.id == proposal.id),
                None,
            )
            if current is not None and current.status in ("applied", "stale", "failed"):
                style = "green" if current.status == "applied" else "bold red"
                self.say(f"{ref}: {current.status}: {current.result}", style)
                return
            time.sleep(POLL_S)
        self.say(f"{ref} is still being applied; `status` shows the run.")

    def wait(self, run_id: str) -> Run:
        """Live per-agent progress until the run ends; Ctrl-C stops waiting, not the run."""
        live = Live(console=self.console, transient=False) if self.console.is_terminal else None
        seen: dict[str, str] = {}
        try:
            if live:
                live.start()
            while True:
                run = self.service.status(run_id)
                progress = _progress(run)
                if live and progress:
                    live.update(progress_view(progress))
                elif progress:
                    for agent in progress.agents:
                        if agent.status != "waiting" and seen.get(agent.name) != agent.status:
                            seen[agent.name] = agent.status
                            extra = f" in {agent.duration_ms} ms" if agent.status == "done" else ""
                            self.say(f"  {agent.name} {agent.status}{extra}")
                if run.status in FINAL or run.status == "waiting":
                    break
                self._release_logs()  # while a run is watched, the terminal is ours
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            self.say(f"Stopped waiting; the run goes on. `/agent status {run_id}` shows it.")
            return self.service.status(run_id)
        finally:
            if live:
                live.stop()
        self._show(run)
        return run

    def _show(self, run: Run) -> None:
        saved = saved_of(run)
        if saved is not None:
            self._checkpoint(run, saved)
            return
        if run.status in ("queued", "running"):
            self.say(f"Run {run.id}: {run.status} ({run.target} in {run.repo}).")
            return
        if run.status == "failed":
            self.say(f"Run {run.id} failed: {run.error}", "bold red")
            return
        report = self.service.report(run.id)
        if report is None:
            self.say(f"Run {run.id}: {run.status}, no report.")
            return
        self.last_run = run.id  # `up F2` / `approve P1` now mean this report's
        # Shown again (`status RUN`), its proposals are as they are now: applied, rejected ...
        states = self.service.proposal_states(run.id)
        print_report(self.console, report, states)
        for proposal in report.proposals:
            state = states.get(proposal.id, WAITING)
            if state.open:
                self.say(
                    f"  [{proposal.id}] {proposal.title}: type `approve {run.id}/{proposal.id}` "
                    f"or `reject {run.id}/{proposal.id} [reason]`",
                    "cyan",
                )
            else:
                self.say(f"  [{proposal.id}] {proposal.title}: {state.words()}", "dim")

    def _checkpoint(self, run: Run, saved: Saved) -> None:
        """A run waiting after an agent: what that agent found, and the words that decide."""
        self.last_run = run.id
        found = saved.new_findings()
        self.say(
            f"Run {run.id} waits at the checkpoint after {saved.after}: {len(found)} finding(s) "
            f"from it, {len(saved.findings)} so far.",
            "bold",
        )
        for number, finding in found:
            where = f" {finding.file}:{finding.start_line}" if finding.file else ""
            self.say(f"  F{number} [{finding.severity.value}]{where} {finding.title}")
        for gone in saved.dropped:
            self.say(f"  dropped by {gone.by}: {gone.title} ({gone.reason})", "dim")
        until = run.wait_until.strftime("%H:%M UTC") if run.wait_until else "its deadline"
        nxt = f" ({saved.next_agent} next)" if saved.next_agent else ""
        self.say(
            f"  Type `continue {run.id}`{nxt}, `stop {run.id}`, or `drop {run.id}/F1 REASON` "
            f"for a finding that is not a problem. It waits until {until}, then stops.",
            "cyan",
        )

    def _list(self, runs: list[Run]) -> None:
        if not runs:
            self.say("No runs yet. Try `/agent analyze branch NAME`.")
            return
        table = Table("run", "status", "target", "repo", "requested")
        for run in runs:
            table.add_row(
                run.id,
                run.status,
                Text(run.target),
                run.repo,
                run.created_at.strftime("%Y-%m-%d %H:%M UTC"),
            )
        self.console.print(table)


def _progress(run: Run) -> Progress | None:
    if not run.progress:
        return None
    agents = [AgentProgress(**item) for item in json.loads(run.progress)]
    return Progress(run_id=run.id, agents=agents)
