"""The `chatops` command.

Exit codes: 0 analyzed (or done), 1 a finding at or above `--fail-on` exists, 2 bad input (with a
one-line error saying what to do), 3 an internal failure (git broke) or a partial report (an
analyzer, the model or an agent did not run; `--allow-partial` uses the findings' code instead).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from agents.errors import shown

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.live import Live

    from agents.llm import LLMSettings
    from agents.pipeline import Progress as PipelineProgress
    from agents.report import Report
    from agents.reuse import AnswerStore
    from bot.app import Runtime
    from bot.settings import Settings


# Plain help, not typer's rich panels: rich's renderer would take square brackets for markup
# (`[digest]` vanished from the help) and importing it costs every `--help` 0.2 s.
PLAIN = None

# Examples under the help. Click rewraps each paragraph to the terminal, except one that starts
# with a line of its own holding only "\b": each example stays on its line as written.
EXAMPLES = """\b
Examples:
  chatops demo                          a risky branch in a new repository
  chatops analyze branch feature/login  it against the default branch
  chatops init                          a commented chatops.toml for here
  chatops shell                         the chat commands, in this terminal
"""
BRANCH_EXAMPLES = """\b
Examples:
  chatops analyze branch feature/login
  chatops analyze branch feature/login --base develop --offline
  chatops analyze branch fix/typo --format markdown --output report.md
  chatops analyze branch feature/login --format json --fail-on high
"""

app = typer.Typer(
    rich_markup_mode=PLAIN,
    name="chatops",
    help="AI agents on your team's code review, safely. Offline by default.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # -h as well as --help, on every command (click hands it down to each subcommand).
    context_settings={"help_option_names": ["-h", "--help"]},
)
analyze_app = typer.Typer(rich_markup_mode=PLAIN, help="Analyze a branch.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("chatops")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        typer.echo(f"chatops {number}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print chatops's version and exit.",
        ),
    ] = False,
) -> None:
    pass


EXIT_FINDINGS = 1
# `agents.evaluation.DEFAULT_WINDOW`, here so that `chatops --help` does not import the
# evaluation (a test keeps the two equal).
EVAL_WINDOW = 20
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 3

Since = Annotated[
    str | None, typer.Option("--since", help="Only from this date on (YYYY-MM-DD, UTC).")
]


class Level(StrEnum):
    """A severity on the command line: `agents.report.Severity`'s values, here so that
    `chatops --help` does not import the report models (a test keeps the two equal)."""

    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


class OutputFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


def _fail(console: Console, message: str, hint: str = "", code: int = EXIT_BAD_INPUT) -> None:
    console.print(f"[bold red]error:[/] {_escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        console.print(f"  {_escape(hint)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class _ProgressPrinter:
    """Live per-agent lines on a terminal; one plain line per finished agent elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.reported: set[str] = set()

    def __call__(self, progress: PipelineProgress) -> bool:
        from rich.live import Live

        from bot.surfaces.render.terminal import progress_view

        if self.console.is_terminal:
            if self.live is None:
                self.live = Live(progress_view(progress), console=self.console, transient=False)
                self.live.start()
            self.live.update(progress_view(progress))
        else:
            for agent in progress.agents:
                if agent.status in ("done", "failed") and agent.name not in self.reported:
                    self.reported.add(agent.name)
                    extra = f": {agent.error}" if agent.error else ""
                    self.console.print(
                        f"{agent.name} {agent.status} in {agent.duration_ms} ms{extra}",
                        markup=False,
                        highlight=False,
                        soft_wrap=True,
                    )
        return True

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


# Options `analyze branch` and `analyze ticket` share.
RepoOption = Annotated[
    Path, typer.Option("--repo", help="Path of the git repository (default: here).")
]
BaseOption = Annotated[
    str | None,
    typer.Option(
        "--base",
        help="Branch to compare with, or NAME~N: N commits before NAME's head, e.g. main~3 "
        "(default: the default branch).",
    ),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="text, markdown or json.")]
OutputOption = Annotated[
    Path | None, typer.Option("--output", help="Write the report to this file.")
]
FailOnOption = Annotated[
    Level | None,
    typer.Option("--fail-on", help="Exit 1 if a finding at or above this severity exists."),
]
AllowPartialOption = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="When an analyzer or agent did not run, exit with the findings' code, not 3.",
    ),
]
OfflineOption = Annotated[
    bool, typer.Option("--offline", help="Use the analyzers only, even with an API key.")
]
FailOnNewOption = Annotated[
    Level | None,
    typer.Option(
        "--fail-on-new",
        help="Exit 1 if a finding at or above this severity is new since --previous (without "
        "--previous, every finding is new).",
    ),
]
PreviousOption = Annotated[
    Path | None,
    typer.Option(
        "--previous",
        help="An earlier JSON report of this branch: mark each finding new or open, and list "
        "the resolved ones.",
    ),
]
NoCacheOption = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Analyze everything again, instead of reusing the analyzers' and the model's "
        "answers for content seen before (kept in the data folder's store, or DATABASE_URL's).",
    ),
]


def _kept_answers(settings: Settings, no_cache: bool, errors: Console) -> AnswerStore:
    """Where the analyzers' and the model's answers are kept between runs: the store the bot
    uses. A store that cannot be opened is said, and the run does everything again."""
    from agents.reuse import NoAnswers

    if no_cache:
        return NoAnswers()
    try:
        url = settings.db_url
        cache: AnswerStore
        if url.startswith("sqlite:///"):
            # The data folder's file, through the standard library: a re-run at the same
            # commit does not pay for importing the database layer (answers_sqlite.py).
            from bot.store.answers_sqlite import SqliteAnswers, bounds, current

            path = Path(url.removeprefix("sqlite:///"))
            if not current(path):
                from bot.store.db import upgrade

                upgrade(url)
            cache = SqliteAnswers(path, **bounds(settings))
            cache.prune()
        else:
            from bot.store.answers import answer_cache
            from bot.store.db import make_engine

            cache = answer_cache(settings, make_engine(url))
            cache.prune()
    except Exception as exc:  # noqa: BLE001 - reuse is a saving, never a reason to fail
        errors.print(
            f"note: earlier answers are not reused ({type(exc).__name__}: {exc}); "
            "everything is analyzed again.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return NoAnswers()
    return cache


@analyze_app.command("branch", epilog=BRANCH_EXAMPLES)
def analyze_branch_command(
    name: Annotated[str, typer.Argument(help="The branch to analyze, e.g. feature/login.")],
    repo: RepoOption = Path("."),
    base: BaseOption = None,
    output_format: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    fail_on: FailOnOption = None,
    offline: OfflineOption = False,
    allow_partial: AllowPartialOption = False,
    no_cache: NoCacheOption = False,
    previous: PreviousOption = None,
    fail_on_new: FailOnNewOption = None,
) -> None:
    """Analyze a branch: the analyzers always; Claude too when ANTHROPIC_API_KEY is set."""
    errors = Console(stderr=True)
    _output_or_exit(errors, output)
    earlier = _previous_or_exit(errors, previous)
    settings = _settings_or_exit(errors)
    llm_settings = _model_or_exit(errors, settings, offline)
    _analyze_and_emit(
        errors,
        repo=repo,
        branch=name,
        base=base,
        llm_settings=llm_settings,
        kept=_kept_answers(settings, no_cache, errors),
        earlier=earlier,
        git_hint="Check the repository with `git fsck`.",
        output_format=output_format,
        output=output,
        fail_on=fail_on,
        allow_partial=allow_partial,
        fail_on_new=fail_on_new,
    )


def _model_or_exit(errors: Console, settings: Settings, offline: bool) -> LLMSettings | None:
    """The model's settings (None offline, or with no key); an invalid one exits 2."""
    from bot.settings import SettingsError

    if offline:
        return None
    try:
        return settings.llm()
    except SettingsError as exc:
        _fail(errors, f"invalid setting: {exc}", "Fix the environment variable or .env file.")
        raise AssertionError("unreachable") from None


def _analyze_and_emit(
    errors: Console,
    *,
    repo: Path,
    branch: str,
    base: str | None,
    llm_settings: LLMSettings | None,
    kept: AnswerStore,
    earlier: Report | None,
    git_hint: str,
    output_format: OutputFormat,
    output: Path | None,
    fail_on: Level | None,
    allow_partial: bool,
    fail_on_new: Level | None,
    shape: Callable[[Report], Report] | None = None,
) -> None:
    """One branch analyzed with live progress, compared with `earlier`, written, and the exit
    code its findings call for (`analyze branch`, `analyze pr`). `shape` adds to the report
    before the comparison (a pull request's link)."""
    from agents.errors import AnalysisInputError, GitFailure
    from agents.lifecycle import compare
    from agents.llm import LLMSession
    from agents.pipeline import analyze_branch

    session = LLMSession(llm_settings, answers=kept) if llm_settings is not None else None
    printer = _ProgressPrinter(errors)
    try:
        report = analyze_branch(repo, branch, base, checkpoint=printer, llm=session, kept=kept)
    except AnalysisInputError as exc:
        printer.close()
        _fail(errors, exc.message, exc.hint)
        return
    except GitFailure as exc:
        printer.close()
        _fail(errors, str(exc), git_hint, EXIT_FAILURE)
        return
    printer.close()
    if shape is not None:
        report = shape(report)
    if earlier is not None:
        if earlier.target.branch != report.target.branch:
            errors.print(
                f"note: --previous is a report of {earlier.target.branch}, not "
                f"{report.target.branch}; compared all the same",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        report = compare(report, earlier)
    _emit(report, output_format, output, errors)
    _exit_for([report], fail_on, allow_partial, errors, fail_on_new=fail_on_new)


@analyze_app.command("pr")
def analyze_pr_command(
    number: Annotated[int, typer.Argument(help="The pull request's number, e.g. 123.", min=1)],
    repo: RepoOption = Path("."),
    github: Annotated[
        str | None,
        typer.Option(
            "--github",
            help='The repository on GitHub, "org/repo" (default: the policy\'s [repos.NAME] '
            "github for this clone).",
        ),
    ] = None,
    output_format: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    fail_on: FailOnOption = None,
    offline: OfflineOption = False,
    allow_partial: AllowPartialOption = False,
    no_cache: NoCacheOption = False,
    previous: PreviousOption = None,
    fail_on_new: FailOnNewOption = None,
) -> None:
    """Analyze a pull request: its head and base read from GitHub (GITHUB_TOKEN), the head
    fetched into the clone (`refs/pull/N/head` from origin), then as `analyze branch`."""
    from agents.errors import AnalysisInputError, GitFailure
    from bot.codehost.pulls import prepare, with_pull
    from bot.codehost.registry import CodeHosts

    errors = Console(stderr=True)
    _output_or_exit(errors, output)
    earlier = _previous_or_exit(errors, previous)
    settings = _settings_or_exit(errors)
    llm_settings = _model_or_exit(errors, settings, offline)
    origin = "Check the clone's origin: it should be that repository."
    try:
        project = github or _github_of(repo, settings)
        host = CodeHosts(settings).host("github")
        errors.print(f"reading pull request #{number} of {project} ...", markup=False)
        prepared = prepare(host, project, number, repo)
    except AnalysisInputError as exc:  # the code host's refusals too (CodeHostError)
        _fail(errors, exc.message, exc.hint)
        return
    except GitFailure as exc:
        _fail(errors, str(exc), origin, EXIT_FAILURE)
        return
    _analyze_and_emit(
        errors,
        repo=repo,
        branch=prepared.branch,
        base=prepared.base,
        llm_settings=llm_settings,
        kept=_kept_answers(settings, no_cache, errors),
        earlier=earlier,
        git_hint=origin,
        output_format=output_format,
        output=output,
        fail_on=fail_on,
        allow_partial=allow_partial,
        fail_on_new=fail_on_new,
        shape=lambda report: with_pull(report, prepared.pull),
    )


def _github_of(repo: Path, settings: Settings) -> str:
    """The policy's `github` for the clone at `repo` (or its only repository with one)."""
    from agents.context.git import GitRepo
    from agents.errors import AnalysisInputError
    from bot.config import ConfigError, load_policy

    try:
        policy = load_policy(settings.chatops_config, cwd=Path.cwd())
    except ConfigError as exc:
        raise AnalysisInputError(
            str(exc), "Fix the policy file, or pass --github org/repo."
        ) from None
    root = GitRepo.open(repo).root
    named = [
        c.github
        for c in policy.repos.values()
        if c.github and c.path is not None and c.path.resolve() == root
    ]
    any_ = [c.github for c in policy.repos.values() if c.github]
    found = named or (any_ if len(any_) == 1 else [])
    if not found:
        raise AnalysisInputError(
            "Which GitHub repository is this clone's?",
            'Pass --github org/repo, or set github = "org/repo" in its [repos.NAME].',
        )
    return found[0]


def _partial(report: Report) -> list[str]:
    """What was asked for and did not run: failed analyzers, the model, failed agents."""
    failed = [f"{a.name} failed: {a.error}" for a in report.agents if a.status == "failed"]
    return [*report.coverage.not_run, *failed]


def _exit_for(
    reports: list[Report],
    fail_on: Level | None,
    allow_partial: bool,
    errors: Console,
    *,
    fail_on_new: Level | None = None,
) -> None:
    """Exit 3 when a report is partial (unless --allow-partial), else 1 on --fail-on."""
    from agents.report import Severity

    missing = [part for report in reports for part in _partial(report)]
    if missing and not allow_partial:
        for part in dict.fromkeys(missing):
            errors.print(f"partial: {part}", markup=False, highlight=False, soft_wrap=True)
        errors.print(
            "The report is partial (exit 3); --allow-partial uses the findings' exit code.",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILURE)
    if fail_on is not None and any(r.findings_at_least(Severity(fail_on)) for r in reports):
        raise typer.Exit(EXIT_FINDINGS)
    if fail_on_new is not None and any(
        f.status != "open" for r in reports for f in r.findings_at_least(Severity(fail_on_new))
    ):
        raise typer.Exit(EXIT_FINDINGS)


def _emit(
    report: Report,
    output_format: OutputFormat,
    output: Path | None,
    errors: Console,
    *,
    append: bool = False,
) -> None:
    """Print or write one report; `append` adds it after the one written before (a ticket's
    branches, one file)."""
    from bot.surfaces.render.markdown import render_markdown
    from bot.surfaces.render.terminal import print_report

    if output_format is OutputFormat.json:
        text = report.model_dump_json(indent=2) + "\n"
    elif output_format is OutputFormat.markdown:
        text = render_markdown(report)
    else:
        text = ""
    if output is not None:
        with output.open("a" if append else "w", encoding="utf-8") as handle:
            if append:
                handle.write("\n")
            if output_format is OutputFormat.text:
                print_report(Console(file=handle, width=120, no_color=True), report)
            else:
                handle.write(text)
        errors.print(f"report written to {output}", markup=False, highlight=False)
        return
    if output_format is OutputFormat.text:
        print_report(Console(), report)
    else:
        sys.stdout.write(text)


@analyze_app.command("ticket")
def analyze_ticket_command(
    key: Annotated[str, typer.Argument(help="The Jira issue key, e.g. PAY-412.")],
    repo: RepoOption = Path("."),
    branch: Annotated[
        str | None, typer.Option("--branch", help="The branch (default: those naming KEY).")
    ] = None,
    base: BaseOption = None,
    output_format: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    fail_on: FailOnOption = None,
    offline: OfflineOption = False,
    allow_partial: AllowPartialOption = False,
    no_cache: NoCacheOption = False,
) -> None:
    """Analyze the branches that implement a Jira ticket, against its acceptance criteria."""
    from agents.context.git import GitRepo
    from agents.context.jira import fetch_ticket, validate_key
    from agents.errors import AnalysisInputError, GitFailure
    from agents.llm import LLMSession
    from agents.pipeline import analyze_branch
    from bot.core.tickets import branches_for

    errors = Console(stderr=True)
    _output_or_exit(errors, output)
    settings = _settings_or_exit(errors)
    jira = settings.jira()
    if jira is None:
        _fail(
            errors,
            "Jira is not configured.",
            "Set JIRA_URL and JIRA_EMAIL + JIRA_API_TOKEN "
            "(Cloud) or JIRA_PAT (Server/Data Center).",
        )
        return
    try:
        validate_key(key.upper())  # before it is echoed: a key is short, a typo may not be
        errors.print(f"reading {key.upper()} from {jira.url} ...", markup=False, highlight=False)
        ticket = fetch_ticket(jira, key.upper())
        git_repo = GitRepo.open(repo)
        names = git_repo.branch_names()
        found = (
            [branch]
            if branch
            else branches_for(ticket.key, names, ticket.branches_named_in_links())
        )
    except AnalysisInputError as exc:
        _fail(errors, exc.message, exc.hint)
        return
    if not found:
        _fail(
            errors,
            f"No branch in {git_repo.root} mentions {ticket.key}.",
            f"Name one: chatops analyze ticket {ticket.key} --branch NAME",
        )
        return
    llm_settings = _model_or_exit(errors, settings, offline)
    answers = _kept_answers(settings, no_cache, errors)
    reports = []
    not_analyzed: list[str] = []
    for name in found:
        printer = _ProgressPrinter(errors)
        try:
            reports.append(
                analyze_branch(
                    git_repo.root,
                    name,
                    base,
                    checkpoint=printer,
                    ticket=ticket,
                    llm=LLMSession(llm_settings, answers=answers) if llm_settings else None,
                    kept=answers,
                )
            )
        except (AnalysisInputError, GitFailure) as exc:  # this branch only: the others stand
            printer.close()
            reason = exc.message if isinstance(exc, AnalysisInputError) else str(exc)
            errors.print(
                f"[bold red]error:[/] {_escape(name)}: {_escape(reason)}",
                highlight=False,
                soft_wrap=True,
            )
            not_analyzed.append(name)
            continue
        printer.close()
    if output_format is OutputFormat.json and len(reports) > 1:
        text = "[" + ",\n".join(r.model_dump_json(indent=2) for r in reports) + "]\n"
        if output is not None:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    else:
        for number, report in enumerate(reports):
            _emit(report, output_format, output, errors, append=number > 0)
    if not_analyzed:
        _fail(
            errors,
            f"{len(not_analyzed)} of {len(found)} branches for {key} were not analyzed: "
            + ", ".join(not_analyzed),
            "The other reports are above (exit 3).",
            EXIT_FAILURE,
        )
    _exit_for(reports, fail_on, allow_partial, errors)


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of the report that `--format json` produces."""
    from agents.report import report_json_schema

    sys.stdout.write(json.dumps(report_json_schema(), indent=2) + "\n")


@app.command("demo")
def demo_command(
    path: Annotated[
        Path | None,
        typer.Option("--path", help="Where to create the demo repository (default: a temp dir)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use the analyzers only, even with an API key.")
    ] = False,
) -> None:
    """Create a small repository with a risky branch, and analyze it."""
    from bot.demo import DEMO_BRANCH, create_demo_repo

    errors = Console(stderr=True)
    try:
        where = create_demo_repo(path)
    except FileExistsError as exc:
        _fail(errors, str(exc), "Pass --path to an empty or new folder.")
        return
    errors.print(
        f"Demo repository: {where} (branch {DEMO_BRANCH}). "
        f"Next: chatops analyze branch {DEMO_BRANCH} --repo {where}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    analyze_branch_command(DEMO_BRANCH, repo=where, offline=offline)


@app.command("init")
def init_command(
    repo: RepoOption = Path("."),
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write it; an existing file is never replaced."
        ),
    ] = Path("chatops.toml"),
) -> None:
    """Write a commented policy file (chatops.toml) for this repository: its default branch,
    the branches it has, where the bot may write, and a place for the approvers."""
    from agents.errors import AnalysisInputError
    from bot.config import ConfigError, load_policy
    from bot.policy_template import policy_text, seen_in, write_new

    errors = Console(stderr=True)
    if output.exists() or output.is_symlink():
        _fail(
            errors,
            f"{output} already exists; nothing was written.",
            "Edit it, move it away first, or write elsewhere with --output FILE.",
        )
    if not output.parent.is_dir():
        _fail(errors, f"--output {output}: the folder {output.parent} does not exist.")
    try:
        seen = seen_in(repo, output)
    except AnalysisInputError as exc:
        _fail(errors, exc.message, "Run it inside a clone, or pass --repo PATH.")
        return
    try:  # loaded first, as the bot will load it, with the product's own loader
        write_new(output, policy_text(seen), check=lambda temp: load_policy(temp, cwd=Path.cwd()))
    except FileExistsError:
        _fail(errors, f"{output} already exists; nothing was written.", "Edit it instead.")
    except ConfigError as exc:  # a bug of ours: nothing is written
        _fail(errors, f"The file would not load: {exc}", "Please report it.", EXIT_FAILURE)
    except OSError as exc:
        _fail(errors, f"Could not write {output}: {exc.strerror or exc}.")
    where = f"repos.{seen.name}: path {seen.path}, base {seen.default_branch or '(not set)'}"
    errors.print(f"wrote {output} ({where})", markup=False, highlight=False, soft_wrap=True)
    errors.print(
        "Next: put your Slack member id under [approvals] approvers, then run `chatops shell`.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    named = os.environ.get("CHATOPS_CONFIG")
    if named and Path(named).resolve() != output.resolve():
        errors.print(
            f"note: CHATOPS_CONFIG is set to {named}: the bot reads that file, not this one.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


eval_app = typer.Typer(
    rich_markup_mode=PLAIN,
    help="What the bot would have said on your own history.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


class EvalFormat(StrEnum):
    text = "text"
    json = "json"


@eval_app.command("history")
def eval_history_command(
    repo: RepoOption = Path("."),
    last: Annotated[
        int | None, typer.Option("--last", min=1, help="The newest N first-parent commits.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Commits from this date on (YYYY-MM-DD).")
    ] = None,
    branch: Annotated[
        str | None, typer.Option("--branch", help="Whose history (default: HEAD).")
    ] = None,
    window: Annotated[
        int, typer.Option("--window", min=1, help="Later commits touching a file to look at.")
    ] = EVAL_WINDOW,
    output_format: Annotated[EvalFormat, typer.Option("--format", help="text or json.")] = (
        EvalFormat.text
    ),
    details: Annotated[
        bool, typer.Option("--details", help="JSON: list every finding and its outcome.")
    ] = False,
) -> None:
    """Replay the history offline: each commit against its parent, then which findings later
    commits addressed, per rule, against the base rate of plain churn."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agents.context.git import GitRepo
    from agents.errors import AnalysisInputError, GitFailure
    from agents.evaluation import evaluate_history
    from bot.surfaces.render.evaluation import print_evaluation

    errors = Console(stderr=True)
    start = _since_or_exit(errors, since)
    if start is not None and start.year > 2099:  # past git's calendar, which ignores them
        _fail(errors, f"--since {since!r} is too far ahead.", "Use a date before 2100.")
    if last is None and since is None:
        last = 100
    try:
        git_repo = GitRepo.open(repo)
        head = git_repo.resolve(branch).sha if branch else git_repo.head_commit()
        with Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        ) as bar:
            task = bar.add_task("commits", total=None)

            def advance(done: int, total: int, _commit: object) -> None:
                bar.update(task, completed=done, total=total)

            evaluation = evaluate_history(
                git_repo,
                head,
                last=last,
                since=start.isoformat() if start is not None else None,
                window=window,
                on_commit=advance,
                details=details,
            )
    except AnalysisInputError as exc:
        _fail(errors, exc.message, exc.hint)
        return
    except GitFailure as exc:
        _fail(errors, str(exc), "Check the repository with `git fsck`.", EXIT_FAILURE)
        return
    if output_format is EvalFormat.json:
        sys.stdout.write(evaluation.model_dump_json(indent=2) + "\n")
    else:
        print_evaluation(Console(width=160), evaluation)
    if evaluation.failures:
        raise typer.Exit(EXIT_FAILURE)


db_app = typer.Typer(rich_markup_mode=PLAIN, help="The database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _previous_or_exit(errors: Console, previous: Path | None) -> Report | None:
    """The earlier report to compare with, read before any work starts (bad input: exit 2)."""
    from agents.report import Report

    if previous is None:
        return None
    try:
        return Report.model_validate_json(previous.read_bytes())
    except OSError as exc:
        _fail(errors, f"--previous {previous}: {exc.strerror or exc}.", "Name a JSON report file.")
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        _fail(
            errors,
            f"--previous {previous} is not a chatops JSON report ({first}).",
            "Pass a report written by `chatops analyze ... --format json`.",
        )
    raise AssertionError("unreachable")  # _fail exits


def _output_or_exit(errors: Console, output: Path | None) -> None:
    """A path to write to must be writable before any work starts: a bad one is bad input
    (exit 2), never a traceback after the whole analysis."""
    if output is None:
        return
    if output.is_dir():
        _fail(errors, f"--output {output} is a directory.", "Name a file, e.g. report.json.")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        _fail(errors, f"--output {output}: the folder {parent} does not exist.", "Create it first.")
    # An existing file needs only itself writable (/dev/null, a file in a read-only folder).
    writable = os.access(output, os.W_OK) if output.exists() else os.access(parent, os.W_OK)
    if not writable:
        _fail(errors, f"--output {output} is not writable.", "Choose a path you can write to.")


def _slack_setup_error(exc: Exception, api_url: str | None) -> tuple[str, str]:
    """One line for what went wrong reaching Slack at start-up, and what to check."""
    text = str(exc)
    where = api_url or "https://slack.com/api/"
    if "invalid_auth" in text or "not_authed" in text or "token_revoked" in text:
        return (
            "Slack refused SLACK_BOT_TOKEN (invalid_auth).",
            "Copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page.",
        )
    if "account_inactive" in text:
        return (
            "Slack says the app's token belongs to a deleted or deactivated account.",
            "Reinstall the app to the workspace and export the new token.",
        )
    return (
        f"Could not reach the Slack API at {where}: {text.splitlines()[0][:200] if text else exc}",
        "Check the network and SLACK_API_URL (unset it for Slack itself).",
    )


def _settings_or_exit(errors: Console) -> Settings:
    from bot.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        _fail(errors, f"invalid setting: {exc}", "Fix the environment variable or .env file.")
        raise AssertionError("unreachable") from None


def _app_or_exit(errors: Console, repo: Path | None = None, kind: str = "worker") -> Runtime:
    from bot.app import build_app
    from bot.config import ConfigError
    from bot.settings import SettingsError

    settings = _settings_or_exit(errors)
    try:
        return build_app(settings, repo_override=repo, kind=kind)
    except (ConfigError, SettingsError) as exc:
        _fail(errors, str(exc), "Fix the policy file (CHATOPS_CONFIG) or the environment.")
        raise AssertionError("unreachable") from None


@app.command("shell")
def shell_command(
    as_user: Annotated[
        str | None, typer.Option("--as", help="Act as this user (to try four-eyes flows).")
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="Use this repository instead of the policy file's."),
    ] = None,
) -> None:
    """The bot in a terminal: /agent commands, live progress, reports."""
    from bot.surfaces.shell import Shell

    errors = Console(stderr=True)
    the_app = _app_or_exit(errors, repo, kind="shell")
    user = as_user or os.environ.get("USER") or "local"
    if the_app.settings.chatops_queue == "sqlite":
        the_app.start_jobs()
    try:
        history = the_app.settings.chatops_data_dir / "shell_history"
        Shell(the_app.service, user, history=history).run()
    finally:
        the_app.close()


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface for HTTP mode.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port for HTTP mode.")] = 3000,
) -> None:
    """The Slack app: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on /slack/events."""
    from bot.metrics import register_store

    errors = Console(stderr=True)
    the_app = _app_or_exit(errors, kind="serve")
    settings = the_app.settings
    if settings.slack_bot_token is None or (
        # An empty secret is no secret: HTTP mode could verify nothing.
        not (settings.slack_signing_secret and settings.slack_signing_secret.get_secret_value())
        and settings.slack_app_token is None
    ):
        _fail(
            errors,
            "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN) are not set.",
            "Install the app from manifest.yml (see the README) and export its tokens.",
        )
        return
    from bot.surfaces.http import HttpApp
    from bot.surfaces.slack.app import ThreadedSlackRequestHandler, build_bolt_app, web_client

    client = web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    )
    # Bolt checks the token with auth.test as it starts; a failure there is a setup error, said
    # in one line (the libraries' own log lines about it would only repeat it).
    quiet = [logging.getLogger(name) for name in ("slack_bolt", "slack_sdk")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        assert the_app.inbox is not None  # built with the bot token, checked above
        bolt = build_bolt_app(client, secret, the_app.inbox)
    except Exception as exc:  # BoltError, SlackApiError, a refused connection: all setup
        the_app.engine.dispose()
        _fail(errors, *_slack_setup_error(exc, settings.slack_api_url))
        return
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    register_store(the_app.engine, the_app.jobs.pending)
    if settings.chatops_queue == "sqlite":
        the_app.start_jobs()
    try:
        if settings.slack_app_token is not None:
            from bot.surfaces.slack.socket_mode import SocketMode

            socket_mode = SocketMode(bolt, settings.slack_app_token.get_secret_value())
            # A SIGTERM while connecting (Slack slow to answer) leaves through `finally` too.
            signal.signal(signal.SIGTERM, _leave)
            try:
                try:
                    socket_mode.connect()  # type: ignore[no-untyped-call]
                except Exception as exc:  # a refused app-level token, an unreachable Slack
                    from slack_sdk.errors import SlackApiError

                    if isinstance(exc, SlackApiError):  # its first line names no error
                        reason = f"Slack answered {exc.response.get('error')}"
                    else:
                        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                    _fail(
                        errors,
                        f"Socket Mode could not connect: {reason}",
                        "Check SLACK_APP_TOKEN (xapp-..., with connections:write) and the network.",
                    )
                stop = threading.Event()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, lambda *_: stop.set())
                stop.wait()
            finally:
                socket_mode.close()  # type: ignore[no-untyped-call]
        else:
            import uvicorn

            # uvicorn stops serving on SIGTERM, then re-raises the signal with the handler it
            # found: make that one leave through `finally`, so the in-process consumer stops
            # gracefully and hands back what it still runs.
            signal.signal(signal.SIGTERM, _leave)
            uvicorn.run(
                HttpApp(ThreadedSlackRequestHandler(bolt, secret)),
                host=host,
                port=port,
                log_level="warning",
            )
    finally:
        the_app.close()


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command("worker")
def worker_command(
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus /metrics on this port.")
    ] = None,
) -> None:
    """Run jobs from the shared queue. SIGTERM (or Ctrl-C) stops taking work, waits
    CHATOPS_SHUTDOWN_GRACE_S for running jobs and hands back what is still running."""
    from bot.metrics import register_store

    errors = Console(stderr=True)
    the_app = _app_or_exit(errors)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        register_store(the_app.engine, the_app.jobs.pending)
        start_http_server(metrics_port, addr="0.0.0.0")  # noqa: S104  # scraped from elsewhere
    try:
        the_app.run_jobs_forever()
    finally:
        the_app.engine.dispose()
    # What still runs in a thread was handed back to the queue: leave without waiting for it
    # (a model call can take minutes).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command("status")
def status_command() -> None:
    """Queue depth, the workers seen recently, runs by status, and stuck runs."""
    from rich.table import Table
    from rich.text import Text

    from bot.store.types import utcnow

    errors = Console(stderr=True)
    the_app = _app_or_exit(errors)
    settings = the_app.settings
    try:
        depth = the_app.jobs.pending()
        workers = the_app.reaper.workers.seen_since(utcnow() - timedelta(minutes=2))
        by_status = the_app.store.count_by_status()
        stuck = the_app.store.stuck(settings.chatops_requeue_after_s)
    finally:
        the_app.engine.dispose()
    console = Console(width=160)
    queue = settings.chatops_queue
    console.print(Text(f"queue ({queue}): {depth} task(s) waiting"))
    console.print(
        Text("runs: " + (", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"))
    )
    table = Table("worker", "kind", "state", "scheduler", "last seen (UTC)", title="workers")
    for worker in workers:
        table.add_row(
            Text(worker.id),
            worker.kind,
            worker.state,
            "yes" if worker.scheduler else "no",
            worker.last_seen.strftime("%H:%M:%S"),
        )
    console.print(table if workers else Text("workers: none seen in the last 2 minutes"))
    if stuck:
        stuck_table = Table("run", "status", "target", "since (UTC)", title="stuck runs")
        for run in stuck:
            since = run.lease_until if run.status == "running" else run.enqueued_at
            stuck_table.add_row(
                run.id,
                run.status,
                Text(run.target),
                since.strftime("%Y-%m-%d %H:%M") if since else "",
            )
        console.print(stuck_table)
        console.print(Text("The reaper re-enqueues stuck runs while a worker is running."))
    else:
        console.print(Text("stuck runs: none"))


@app.command("audit")
def audit_command(
    run: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    since: Since = None,
) -> None:
    """Print the audit trail: every decision, granted or denied, and every apply."""
    from rich.table import Table
    from rich.text import Text

    errors = Console(stderr=True)
    start = _since_or_exit(errors, since)
    the_app = _app_or_exit(errors)
    try:
        rows = the_app.service.audit(run_id=run, since=start)
    finally:
        the_app.engine.dispose()
    table = Table("when (UTC)", "who", "action", "outcome", "run", "detail")
    for row in rows:
        table.add_row(
            row.at.strftime("%Y-%m-%d %H:%M:%S"),
            Text(row.actor),
            row.action,
            row.outcome,
            row.run_id or "",
            Text(row.detail),
        )
    Console(width=200).print(table)
    errors.print(f"{len(rows)} audit row(s)", markup=False)


def _since_or_exit(errors: Console, since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        return datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        _fail(
            errors, f"--since {shown(since)!r} is not a date.", "Use YYYY-MM-DD, e.g. 2026-11-01."
        )
        raise AssertionError("unreachable") from None


feedback_app = typer.Typer(
    rich_markup_mode=PLAIN, help="Votes, learnings and acceptance.", no_args_is_help=True
)
app.add_typer(feedback_app, name="feedback")


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


@feedback_app.command("export")
def feedback_export_command(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or jsonl.")] = (
        ExportFormat.jsonl
    ),
    since: Since = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the interaction log: each vote with its prompt, output, correction and versions."""
    errors = Console(stderr=True)
    _output_or_exit(errors, output)
    start = _since_or_exit(errors, since)
    the_app = _app_or_exit(errors)
    try:
        if output is None:
            count = the_app.service.feedback.export(sys.stdout, fmt.value, start)
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                count = the_app.service.feedback.export(out, fmt.value, start)
    finally:
        the_app.engine.dispose()
    errors.print(f"{count} vote(s) exported", markup=False)


@feedback_app.command("curate")
def feedback_curate_command() -> None:
    """Turn the votes into learnings now (the scheduler does it every hour)."""
    from rich.table import Table
    from rich.text import Text

    errors = Console(stderr=True)
    the_app = _app_or_exit(errors)
    try:
        curated = the_app.service.feedback.curate()
    finally:
        the_app.engine.dispose()
    console = Console(width=160)
    table = Table("id", "repo", "agent", "kind", "learning")
    for row in curated.active:
        new = row.id in curated.added
        table.add_row(
            row.id + (" (new)" if new else ""), row.repo, row.agent, row.kind, Text(row.text)
        )
    console.print(table)
    console.print(curated.message, markup=False)


@feedback_app.command("stats")
def feedback_stats_command(
    since: Since = None,
) -> None:
    """Acceptance rate (up / (up + down)) per agent and prompt version."""
    from rich.table import Table

    errors = Console(stderr=True)
    start = _since_or_exit(errors, since)
    the_app = _app_or_exit(errors)
    try:
        rows = the_app.service.feedback.acceptance(start)
    finally:
        the_app.engine.dispose()
    table = Table("agent", "prompt version", "👍", "👎", "acceptance")
    for (agent, version), votes in sorted(rows.items()):
        rate = f"{votes.rate:.0%}" if votes.rate is not None else "-"
        table.add_row(agent, version or "(analyzers)", str(votes.up), str(votes.down), rate)
    Console(width=120).print(table)
    if not rows:
        errors.print("no votes yet", markup=False)


@app.command("digest")
def digest_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print it here; post nothing.")
    ] = False,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="With --dry-run, write the chart (PNG) here.")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="The period scheduled before this time (ISO 8601, UTC unless it says), e.g. to "
            "post a missed digest. Default: now.",
        ),
    ] = None,
) -> None:
    """The digest of the last scheduled period, posted to [digest] channel once (a second
    call, or the scheduler, posts nothing more)."""
    from rich.text import Text

    from bot.core.digest import chart_png
    from bot.core.digest import text as digest_text

    errors = Console(stderr=True)
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            _fail(
                errors, f"--at {shown(at)!r} is not a time.", "Use ISO 8601, e.g. 2026-11-24T09:00."
            )
        assert when is not None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    the_app = _app_or_exit(errors)
    try:
        digests = the_app.service.digests
        period = digests.latest_period(when)
        if dry_run:
            data = digests.build(period)
            for line in digests.explain(period, when):  # stderr: stdout is the digest alone
                errors.print(Text(line), soft_wrap=True)
            Console(width=160).print(Text(digest_text(data)))
            if chart is not None:
                chart.write_bytes(chart_png(data))
                errors.print(f"chart written to {chart}", markup=False)
            return
        posted = digests.post_scheduled(force_period=period)
    finally:
        the_app.engine.dispose()
    if posted.outcome in ("no_channel", "no_slack", "failed"):
        _fail(errors, posted.message, "Use --dry-run to see it without Slack.")
    errors.print(posted.message, markup=False)


@db_app.command("upgrade")
def db_upgrade_command() -> None:
    """Apply the database migrations (DATABASE_URL, or the embedded SQLite file)."""
    from bot.store.db import upgrade

    errors = Console(stderr=True)
    settings = _settings_or_exit(errors)
    upgrade(settings.db_url)
    errors.print(f"database at {settings.db_url.split('@')[-1]} is up to date", markup=False)


def main() -> None:
    from bot.logs import configure

    fmt = os.environ.get("CHATOPS_LOG_FORMAT", "text").lower()
    configure(os.environ.get("CHATOPS_LOG_LEVEL", "WARNING"), "json" if fmt == "json" else "text")
    app()
