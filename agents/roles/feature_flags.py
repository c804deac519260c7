"""Feature flags: what the branch changes about them, deterministically (added with their
default, removed, renamed, still read after their definition went, read with different
defaults, new guarded code no test names, stale), and with a model the rollout risk of it.

Cheap when the change has no flags: only the changed Python files that contain a call name are
parsed, definition files are read only when the policy names some, and the history of a
definition file is asked for only for the flags the branch touches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.analyzers.flags import (
    Definition,
    DefinitionError,
    FileFlags,
    FlagRead,
    FlagSettings,
    key_lines,
    might_read_flags,
    parse_definitions,
    scan,
    shown_default,
)
from agents.budget import Unit
from agents.context import files as kinds
from agents.context.code import neutralise
from agents.context.git import DiffContext, GitRepo
from agents.errors import AnalysisInputError
from agents.report import (
    AgentRun,
    Finding,
    Proposal,
    ProposalKind,
    Report,
    Severity,
    Source,
    Target,
    fingerprint,
    sha256_hex,
)
from agents.roles.answers import FlagsAnswer
from agents.roles.base import PipelineState
from agents.roles.model import prompt_for, run_chunks
from agents.roles.risk import assess

AGENT = "feature_flags"
# Other files read for a key the branch reads (for differing defaults, tests, dangling reads).
MAX_OTHER_FILES = 60
DAY = 86_400


@dataclass
class Definitions:
    """The flags the definition files define at one commit, and where."""

    flags: dict[str, Definition] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # key -> definition file
    texts: dict[str, str] = field(default_factory=dict)  # file -> text
    errors: list[str] = field(default_factory=list)


def read_definitions(diff: DiffContext, commit: str, settings: FlagSettings) -> Definitions:
    out = Definitions()
    specs = [f"{commit}:{path}" for path in settings.files]
    blobs = diff.repo.read_objects(specs) if specs else {}
    for path in settings.files:
        blob = blobs.get(f"{commit}:{path}")
        if blob is None:
            continue
        text = blob.decode("utf-8", "replace")
        out.texts[path] = text
        try:
            found = parse_definitions(text, path, settings.format)
        except DefinitionError as exc:
            out.errors.append(f"{path}: {exc}")
            continue
        for key, definition in found.items():
            out.flags.setdefault(key, definition)
            out.where.setdefault(key, path)
    return out


def _finding(
    rule: str,
    key: str,
    title: str,
    *,
    severity: Severity,
    file: str | None,
    line: int | None,
    detail: str = "",
    suggestion: str = "",
    confidence: float = 0.9,
) -> Finding:
    return Finding(
        fingerprint=fingerprint(source=Source.heuristic, rule=rule, file=file, anchor=key),
        agent=AGENT,
        category="feature-flag",
        rule=rule,
        severity=severity,
        confidence=confidence,
        file=file,
        start_line=line,
        end_line=line,
        title=title,
        detail=detail,
        suggestion=suggestion,
        source=Source.heuristic,
        flag=key,
    )


def _first_line(defs: Definitions, key: str) -> int | None:
    path = defs.where.get(key)
    if path is None:
        return None
    return next(key_lines(defs.texts.get(path, ""), key), None)


@dataclass
class Analysis:
    findings: list[Finding] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # keys the branch touches
    notes: list[str] = field(default_factory=list)  # what was not read, for the summary


def analyze_flags(diff: DiffContext, texts: dict[str, str], settings: FlagSettings) -> Analysis:
    """The deterministic findings. `texts`: the head's text of the changed files."""
    result = Analysis()
    changed_defs = [p for p in settings.files if diff.file(p) is not None]
    # 1. Reads and guards in the changed Python files, on added lines only.
    scanned: dict[str, FileFlags] = {}
    for path, text in sorted(texts.items()):
        if not path.endswith(".py") or not might_read_flags(text, settings):
            continue
        found = scan(text, path, settings)
        if found is not None and (found.reads or found.guards):
            scanned[path] = found
    new_reads: list[FlagRead] = []
    new_guards = []
    for path, found in scanned.items():
        file = diff.file(path)
        if file is None:
            continue
        lines_added = file.added_lines
        new_reads += [
            r for r in found.reads if any(n in lines_added for n in range(r.line, r.end_line + 1))
        ]
        new_guards += [g for g in found.guards if g.line in lines_added]
    if not new_reads and not changed_defs:
        return result  # nothing about flags in this change: no finding, no further git call
    result.touched |= {r.key for r in new_reads}
    head = read_definitions(diff, diff.head_sha, settings) if settings.files else Definitions()
    base = (
        read_definitions(diff, diff.base_sha, settings)
        if changed_defs
        else Definitions(flags=dict(head.flags), where=dict(head.where), texts=dict(head.texts))
    )
    for error in head.errors:
        result.findings.append(
            _finding(
                "flag-definitions-unreadable",
                error.split(":", 1)[0],
                f"Flag definitions cannot be read: {error}",
                severity=Severity.medium,
                file=error.split(":", 1)[0],
                line=None,
            )
        )
    added = sorted(set(head.flags) - set(base.flags))
    removed = sorted(set(base.flags) - set(head.flags))
    # 2. Renamed: a removed and an added flag with the same entry, in the same file.
    renamed: dict[str, str] = {}
    for old in removed:
        for new in added:
            if (
                new not in renamed.values()
                and base.flags[old].raw == head.flags[new].raw
                and base.where[old] == head.where[new]
            ):
                renamed[old] = new
                break
    result.touched |= set(added) | set(removed) | set(renamed.values())
    for old, new in renamed.items():
        result.findings.append(
            _finding(
                "flag-renamed",
                new,
                f"Flag {old} renamed to {new}",
                severity=Severity.low,
                file=head.where[new],
                line=_first_line(head, new),
                detail=f"The definition of {old} is now {new}, unchanged otherwise. Code and "
                f"dashboards that still ask for {old} get their default.",
                suggestion=f"Rename every read of {old}, and the flag in the flag service.",
            )
        )
    for key in added:
        if key in renamed.values():
            continue
        definition = head.flags[key]
        if definition.has_default:
            result.findings.append(
                _finding(
                    "flag-added",
                    key,
                    f"Flag {key} added, default {shown_default(definition.default)}",
                    severity=Severity.info,
                    file=head.where[key],
                    line=_first_line(head, key),
                    detail="A new flag: its default is what every environment serves until "
                    "someone changes it.",
                )
            )
        else:
            result.findings.append(
                _finding(
                    "flag-no-default",
                    key,
                    f"Flag {key} added with no default",
                    severity=Severity.medium,
                    file=head.where[key],
                    line=_first_line(head, key),
                    detail="What the code gets when the flag service has no value for it is "
                    "then up to each call site's fallback.",
                    suggestion="Give the definition a default (on or off).",
                )
            )
    for key in removed:
        if key in renamed:
            continue
        result.findings.append(
            _finding(
                "flag-removed",
                key,
                f"Flag {key} removed from {base.where[key]}",
                severity=Severity.info,
                file=base.where[key],
                line=None,
                detail=f"Its default was {shown_default(base.flags[key].default)}.",
            )
        )
    # 3. Other files that read the keys in question: for dangling reads, defaults, tests.
    gone = set(removed)
    keys = sorted(result.touched | gone)
    others: dict[str, FileFlags] = {}
    tested: set[str] = set()
    if keys:
        paths = diff.repo.files_with_words(diff.head_sha, keys, ["*.py"], MAX_OTHER_FILES + 1)
        if len(paths) > MAX_OTHER_FILES:
            paths = paths[:MAX_OTHER_FILES]
            result.notes.append(
                f"Feature flags: more than {MAX_OTHER_FILES} Python files name "
                f"{', '.join(keys[:5])}{' and more' if len(keys) > 5 else ''}; only the first "
                f"{MAX_OTHER_FILES} were read for dangling reads, differing defaults and tests."
            )
        for path in paths:
            if kinds.is_test_path(path):
                tested |= {k for k in keys if k in _text_at(diff, path, texts)}
            if path in scanned:
                others[path] = scanned[path]
                continue
            text = _text_at(diff, path, texts)
            if not might_read_flags(text, settings):
                continue
            found = scan(text, path, settings)
            if found is not None and found.reads:
                others[path] = found
    every_read = [r for found in others.values() for r in found.reads] + [
        r for path, found in scanned.items() if path not in others for r in found.reads
    ]
    # A read of a key no definition has any more (only when the team keeps definitions).
    if settings.files and head.texts:
        reported: set[tuple[str, str]] = set()
        for read in sorted(every_read, key=lambda r: (r.file, r.line)):
            if read.key in head.flags or (read.file, read.key) in reported:
                continue
            was = read.key in gone or read.key in renamed
            is_new = read in new_reads
            if not (was or is_new):
                continue
            reported.add((read.file, read.key))
            what = "was removed from" if was else "is not defined in"
            result.findings.append(
                _finding(
                    "flag-undefined",
                    read.key,
                    f"Flag {read.key} is read here but {what} the flag definitions",
                    severity=Severity.high if was else Severity.medium,
                    file=read.file,
                    line=read.line,
                    detail=f"`{read.call}` gets its default "
                    f"({read.default or 'none given'}) for a flag the definitions "
                    f"({', '.join(settings.files)}) no longer have: the code silently falls "
                    "back.",
                    suggestion="Remove the read and the dead branch (`flag retire KEY`), or "
                    "define the flag again.",
                )
            )
    # A key read with different defaults in different places (one finding per new read).
    by_key: dict[str, set[str]] = {}
    for read in every_read:
        if read.default is not None:
            by_key.setdefault(read.key, set()).add(read.default)
    for read in new_reads:
        defaults = by_key.get(read.key, set())
        if read.default is None or len(defaults) < 2:
            continue
        elsewhere = sorted(
            {
                f"{r.file}:{r.line} ({r.default})"
                for r in every_read
                if r.key == read.key and r.default != read.default and r.default is not None
            }
        )
        result.findings.append(
            _finding(
                "flag-default-mismatch",
                read.key,
                f"Flag {read.key} read with default {read.default} here, another elsewhere",
                severity=Severity.medium,
                file=read.file,
                line=read.line,
                detail="When the flag service cannot answer, the same flag serves different "
                "values in different places: " + ", ".join(elsewhere[:5]),
                suggestion="Use one default for the flag (a shared constant or helper).",
            )
        )
    # A new guarded branch no test names the flag of.
    tested |= {
        k
        for path, text in texts.items()
        if kinds.is_test_path(path)
        for k in {g.key for g in new_guards}
        if k in text
    }
    for guard in new_guards:
        if guard.key in tested or kinds.is_test_path(guard.file):
            continue
        sides = "either side" if guard.has_else else "the guarded code or its absence"
        result.findings.append(
            _finding(
                "flag-untested-branch",
                guard.key,
                f"New code behind flag {guard.key} with no test of {sides}",
                severity=Severity.low,
                file=guard.file,
                line=guard.line,
                confidence=0.7,
                detail="No test file names the flag, so neither the on nor the off path is "
                "known to work; switching it in production is the first run.",
                suggestion=f"Add a test with {guard.key} on and one with it off.",
            )
        )
    # 4. Stale: touched flags whose definition line the history shows unchanged for long.
    result.findings += _stale(diff, head, settings, sorted(result.touched & set(head.flags)))
    return result


def _text_at(diff: DiffContext, path: str, texts: dict[str, str]) -> str:
    if path in texts:
        return texts[path]
    blob = diff.repo.read_file(diff.head_sha, path)
    text = blob.decode("utf-8", "replace") if blob is not None else ""
    texts[path] = text
    return text


def flag_ages(
    diff: DiffContext, path: str, keys: Sequence[str], settings: FlagSettings, now: int
) -> dict[str, int]:
    """Days since each key's line last changed in `path` (by its history at the head; a key
    older than the history read is as old as the oldest commit read)."""
    history = diff.repo.file_history(diff.head_sha, path, settings.history)
    if not history:
        return {}
    ages: dict[str, int] = {}
    for _, when, patch in history:  # newest first
        changed = [
            line[1:]
            for line in patch.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        for key in keys:
            if key not in ages and any(key in line for line in changed):
                ages[key] = max(0, (now - when) // DAY)
    oldest = history[-1][1]
    for key in keys:
        ages.setdefault(key, max(0, (now - oldest) // DAY))
    return ages


def _stale(
    diff: DiffContext, head: Definitions, settings: FlagSettings, keys: list[str]
) -> list[Finding]:
    if not keys or settings.stale_days <= 0:
        return []
    now = diff.repo.commit_time(diff.head_sha)  # the head's time: the same answer every run
    out: list[Finding] = []
    for path in sorted({head.where[k] for k in keys}):
        mine = [k for k in keys if head.where[k] == path]
        ages = flag_ages(diff, path, mine, settings, now)
        for key in mine:
            age = ages.get(key, 0)
            if age < settings.stale_days:
                continue
            out.append(
                _finding(
                    "flag-stale",
                    key,
                    f"Flag {key} unchanged for {age} days",
                    severity=Severity.low,
                    file=path,
                    line=_first_line(head, key),
                    detail=f"Its definition has served {shown_default(head.flags[key].default)} "
                    f"for {age} days (more than {settings.stale_days}); the branch still "
                    "builds on it.",
                    suggestion=f"Retire it: `flag retire {key}` proposes the patch.",
                )
            )
    return out


class FeatureFlagsAgent:
    name = AGENT
    description = "feature flags added, removed, renamed, dangling, untested, stale"

    def __init__(self, settings: FlagSettings | None = None) -> None:
        self.settings = settings or FlagSettings()

    def run(self, state: PipelineState) -> None:
        analysis = analyze_flags(state.diff, dict(state.workspace.texts), self.settings)
        state.findings.extend(analysis.findings)
        for note in analysis.notes:
            state.note(note)
        if state.llm is not None and analysis.findings:
            self._explain(state, analysis.findings)

    def _explain(self, state: PipelineState, findings: list[Finding]) -> None:
        assert state.llm is not None
        rows = "\n".join(
            f"- [{f.rule}] flag={f.flag} {f.severity.value} {f.file}:{f.start_line} {f.title}"
            f" -- {f.detail}"
            for f in findings[:80]
        )
        text = neutralise(
            f"Branch {state.diff.branch} against {state.diff.base}.\n\nFeature-flag findings:\n"
            + rows
        )
        answers = run_chunks(
            state,
            agent=self.name,
            model=state.llm.settings.model,
            prompt=prompt_for(state, self.name),
            units=[Unit("(flag findings)", 0, text)],
            user_message=lambda chunk: (
                f"<untrusted_findings>\n{chunk[0].text}\n</untrusted_findings>"
            ),
            output=FlagsAnswer,
            on_skip=lambda _, reason: state.note(
                f"The flags' rollout risk was not explained: {reason}."
            ),
        )
        keys = {f.flag for f in findings}
        for answer, _ in answers:
            summary = neutralise(answer.summary).strip()[:600]
            if summary:
                state.note(f"Feature flags, rollout risk: {summary}")
            # Grounded: an explanation attaches only to a flag the findings name.
            said = {
                e.flag: neutralise(e.rollout_risk).strip()[:600]
                for e in answer.flags
                if e.flag in keys
            }
            for index, finding in enumerate(state.findings):
                if finding.agent == self.name and finding.flag in said and said[finding.flag]:
                    detail = f"{finding.detail}\nRollout risk: {said[finding.flag]}".strip()
                    state.findings[index] = finding.model_copy(update={"detail": detail})


def retire_report(
    repo_path: str | os.PathLike[str],
    key: str,
    keep: bool | None,
    base: str | None,
    *,
    run_id: str,
    settings: FlagSettings,
) -> Report:
    """`flag retire KEY`: a report whose one proposal (if any) is the retirement patch, on a
    new branch made from the base branch's head; the places it could not rewrite are findings.
    Raises AnalysisInputError for a key or branch the user can fix."""
    from agents.analyzers.flag_retire import KEY, plan_retirement, retire_branch

    if not KEY.fullmatch(key):
        raise AnalysisInputError(f"{key[:80]!r} is not a flag key.", "Letters, digits, _ . : -")
    repo = GitRepo.open(repo_path)
    start = repo.resolve_base(base or repo.default_branch())
    plan = plan_retirement(repo, start.sha, key, keep, settings)
    branch = retire_branch(key)
    findings = [
        _finding(
            "flag-retire-manual",
            key,
            f"Flag {key}: not rewritten here, {place.why}",
            severity=Severity.info,
            file=place.file,
            line=place.line,
            detail="The retirement patch leaves this place as it is: change it by hand.",
        )
        for place in plan.manual
    ]
    proposals = []
    if plan.patch:
        problem = repo.patch_problem(start.sha, plan.patch)
        applies, why = (
            (False, problem or "") if problem else repo.apply_check(start.sha, plan.patch)
        )
        if applies:
            side = "on" if plan.keep else "off"
            proposals.append(
                Proposal(
                    id="P1",
                    kind=ProposalKind.branch_patch,
                    agent=AGENT,
                    title=f"Retire flag {key} (keep {side}): {plan.rewritten} guard(s) in "
                    f"{len(plan.files)} file(s)",
                    target=branch,
                    base_sha=start.sha,
                    content=plan.patch,
                    content_sha256=sha256_hex(plan.patch),
                )
            )
        else:
            plan.problem = f"the patch does not apply ({why[:200]})"
    said = (
        f"Retiring {key} (keep {'on' if plan.keep else 'off'}): a patch on the new branch "
        f"{branch} from {start.name}, {plan.rewritten} guard(s) rewritten, "
        f"{len(plan.manual)} place(s) left to do by hand."
        if proposals
        else f"Nothing proposed for {key}: {plan.problem}"
    )
    for note in plan.notes:
        said += f" {note}"
    return Report(
        run_id=run_id,
        target=Target(
            repo=str(repo_path),
            branch=start.name,
            base=start.name,
            head_sha=start.sha,
            base_sha=start.sha,
        ),
        summary=said,
        risk=assess(findings),
        findings=findings,
        proposals=proposals,
        agents=[AgentRun(name=AGENT, status="done", duration_ms=0)],
    )
