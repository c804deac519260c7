"""What the analyzers would have said on a repository's own history, and what its later commits
say about that: `chatops eval history`.

Each first-parent commit is analyzed against its parent, offline. Then the replay looks forward:
a finding is *addressed* when one of the next commits that touch its file (up to `window` of them)
changed or removed the flagged lines. The *base rate* is how often any line the same commits
added was changed in the same window (plain churn). A rule whose addressed rate is no better than
the base rate (lift near 1) is noise for this repository; the learnings a team could adopt for it
are proposed, in the same shape curation makes them, and never applied here.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from agents.context.git import (
    CommitInfo,
    DiffContext,
    FileDiff,
    GitRepo,
    Hunk,
    first_parent_history,
    load_commit,
)
from agents.errors import AnalysisInputError
from agents.report import Finding, Severity

DEFAULT_WINDOW = 20
# A rule folder learning needs this many different findings there, none of them addressed (as
# curation needs that many different rejected findings).
RULE_AFTER = 3
# A fingerprint reported by this many commits and never addressed is proposed for suppression.
SUPPRESS_AFTER = 2

Span = tuple[int, int]


class RuleFigures(BaseModel):
    """One rule (or one source) over the replayed commits."""

    source: str
    rule: str = ""
    severity: str = ""
    findings: int
    commits: int = Field(description="Commits with at least one such finding.")
    per_commit: float = Field(description="Findings per replayed commit.")
    tracked: int = Field(description="Findings with a file and a line, followed forward.")
    addressed: int
    addressed_rate: float | None
    base_rate: float | None = Field(
        description="How often any line added by the same commits changed in the same window."
    )
    lift: float | None = Field(description="addressed_rate / base_rate; near 1 means noise.")


class ProposedLearning(BaseModel):
    """A learning an approver could adopt; eval never applies one."""

    key: str
    kind: str  # rule or suppress, as curation makes them
    agent: str
    text: str
    category: str | None = None
    path_glob: str | None = None
    fingerprint: str | None = None
    findings: int


class CommitFailure(BaseModel):
    commit: str
    error: str


class ReplayedFinding(BaseModel):
    commit: str
    severity: str
    source: str
    rule: str
    file: str | None
    start_line: int | None
    title: str
    detail: str
    addressed: bool | None = Field(description="None when the finding has no line to follow.")


class Evaluation(BaseModel):
    repo: str
    head: str
    commits: int = Field(description="Commits analyzed against their first parent.")
    skipped_commits: int = Field(description="Root commits and commits with no changed file.")
    window: int
    findings: int
    findings_per_commit: float
    by_severity: dict[str, int]
    high_share: float | None = Field(description="Share of findings that are high or critical.")
    base_rate: float | None
    rules: list[RuleFigures]
    sources: list[RuleFigures]
    learnings: list[ProposedLearning]
    failures: list[CommitFailure]
    seconds: float
    details: list[ReplayedFinding] = Field(
        default_factory=list, description="Every finding, with --details."
    )


@dataclass
class _Replayed:
    commit: CommitInfo
    diff: DiffContext | None
    findings: list[Finding] = field(default_factory=list)
    # Added lines of the files the analyzers read: what the base rate follows.
    added: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Analysis:
    findings: list[Finding]
    analyzed: list[str]  # the files the analyzers read
    failed: list[str] = field(default_factory=list)  # the parts that did not run, and why


Analyze = Callable[[DiffContext], Analysis]


def offline_analysis(diff: DiffContext) -> Analysis:
    """The offline pipeline, as `chatops analyze` runs it without a key."""
    from agents.pipeline import run_pipeline

    report = run_pipeline(diff, run_id=diff.head_sha[:12])
    return Analysis(
        findings=report.findings,
        analyzed=report.coverage.files_analyzed,
        failed=[f"{a.name}: {a.error}" for a in report.agents if a.status == "failed"],
    )


OnCommit = Callable[[int, int, CommitInfo], None]


def evaluate_history(
    repo: GitRepo,
    head_sha: str,
    *,
    analyze: Analyze = offline_analysis,
    last: int | None = None,
    since: str | None = None,
    window: int = DEFAULT_WINDOW,
    jobs: int = 2,
    on_commit: OnCommit | None = None,
    details: bool = False,
) -> Evaluation:
    """Replay the first-parent history ending at `head_sha`. `analyze` turns one commit's diff
    into its findings and the files it analyzed (the offline pipeline, in practice)."""
    started = time.perf_counter()
    history = first_parent_history(repo, head_sha, last=last, since=since)
    if not history:
        raise AnalysisInputError(
            "No commits in that range.", "Widen it with --last N or an earlier --since DATE."
        )
    done = 0
    lock = threading.Lock()

    def one(commit: CommitInfo) -> _Replayed:
        nonlocal done
        item = _replay(repo, commit, analyze)
        with lock:
            done += 1
            count = done
        if on_commit is not None:
            on_commit(count, len(history), commit)
        return item

    # Each job runs in a copy of the caller's context (taken here, in the calling thread).
    contexts = [copy_context() for _ in history]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        replayed = list(pool.map(lambda c, ctx: ctx.run(one, c), history, contexts))
    evaluation = _summarise(repo, head_sha, replayed, window, time.perf_counter() - started)
    if not details:
        evaluation.details = []
    return evaluation


def _replay(repo: GitRepo, commit: CommitInfo, analyze: Analyze) -> _Replayed:
    if commit.parent is None:
        return _Replayed(commit, None)
    try:
        diff = load_commit(repo, commit)
    except Exception as exc:  # one unreadable commit must not end the replay
        return _Replayed(commit, None, error=f"{type(exc).__name__}: {exc}"[:300])
    if not diff.files:
        return _Replayed(commit, None)
    item = _Replayed(commit, diff)
    try:
        result = analyze(diff)
    except Exception as exc:
        item.error = f"{type(exc).__name__}: {exc}"[:300]
        return item
    item.findings = result.findings
    if result.failed:  # the other parts' findings stay; the failure is listed
        item.error = "; ".join(result.failed)[:300]
    for path in result.analyzed:
        file = diff.file(path)
        if file is not None and file.added_lines:
            item.added[path] = sorted(file.added_lines)
    return item


# -- following lines forward --------------------------------------------------------------------


def follow(spans: Sequence[Span], hunks: Sequence[Hunk]) -> list[Span | None]:
    """Where each old-side span is after a change with these hunks: None when a line of it was
    changed or removed, or a line was inserted inside it; else its new position."""
    removed: set[int] = set()
    inserted_after: set[int] = set()  # old line numbers a new line follows
    deltas: list[tuple[int, int]] = []  # (first old line past the hunk, cumulative shift)
    mapped: dict[int, int] = {}
    shift = 0
    for hunk in hunks:
        old, new = hunk.old_start, hunk.new_start
        if hunk.old_count == 0:  # a pure insertion after line old_start
            old += 1
        for tag, _ in hunk.lines:
            if tag == " ":
                mapped[old] = new
                old, new = old + 1, new + 1
            elif tag == "-":
                removed.add(old)
                old += 1
            else:
                inserted_after.add(old - 1)
                new += 1
        shift += hunk.new_count - hunk.old_count
        deltas.append((old, shift))

    def where(line: int) -> int:
        if line in mapped:
            return mapped[line]
        moved = 0
        for past, total in deltas:
            if line >= past:
                moved = total
        return line + moved

    out: list[Span | None] = []
    for start, end in spans:
        if any(n in removed for n in range(start, end + 1)) or any(
            start <= n < end for n in inserted_after
        ):
            out.append(None)
        else:
            out.append((where(start), where(end)))
    return out


def _touching(diff: DiffContext | None) -> dict[str, FileDiff]:
    """The files a commit changed, by their path before it (a copy leaves its source alone)."""
    if diff is None:
        return {}
    return {(f.old_path or f.path): f for f in diff.files if f.status not in ("added", "copied")}


def _addressed(
    changes: list[dict[str, FileDiff]], index: int, path: str, spans: list[Span], window: int
) -> list[bool]:
    """For spans in `path` after commit `index`: changed within the next `window` commits that
    touch the file?"""
    current: list[Span | None] = list(spans)
    hit = [False] * len(spans)
    seen = 0
    for later in changes[index + 1 :]:
        file = later.get(path)
        if file is None:
            continue
        seen += 1
        if file.status == "deleted":
            return [True] * len(spans)
        live = [(i, s) for i, s in enumerate(current) if s is not None]
        moved = follow([s for _, s in live], file.hunks)
        for (i, _), new in zip(live, moved, strict=True):
            current[i] = new
            if new is None:
                hit[i] = True
        path = file.path
        if seen >= window or all(hit):
            break
    return hit


# -- figures ------------------------------------------------------------------------------------


def _rate(hit: int, total: int) -> float | None:
    return round(hit / total, 3) if total else None


def _lift(addressed: float | None, base: float | None) -> float | None:
    return round(addressed / base, 2) if addressed is not None and base else None


def _summarise(
    repo: GitRepo, head: str, replayed: list[_Replayed], window: int, seconds: float
) -> Evaluation:
    changes = [_touching(item.diff) for item in replayed]
    # Per commit: how many of its added lines changed within the window (the base rate).
    base: list[tuple[int, int]] = []
    # Per finding (by position in the replay): addressed, or None when it has no line.
    outcome: dict[tuple[int, int], bool] = {}
    for index, item in enumerate(replayed):
        hits = total = 0
        for path, lines in item.added.items():
            marks = _addressed(changes, index, path, [(n, n) for n in lines], window)
            hits, total = hits + sum(marks), total + len(marks)
        base.append((hits, total))
        by_file: dict[str, list[tuple[int, Span]]] = defaultdict(list)
        for number, finding in enumerate(item.findings):
            if finding.file and finding.start_line:
                span = (finding.start_line, finding.end_line or finding.start_line)
                by_file[finding.file].append((number, span))
        for path, located in by_file.items():
            marks = _addressed(changes, index, path, [s for _, s in located], window)
            for (number, _), mark in zip(located, marks, strict=True):
                outcome[(index, number)] = mark

    analyzed = [item for item in replayed if item.diff is not None]
    every = [(i, n, f) for i, item in enumerate(replayed) for n, f in enumerate(item.findings)]
    severity_counts = {s.value: 0 for s in Severity}
    for _, _, finding in every:
        severity_counts[finding.severity.value] += 1
    high = severity_counts["critical"] + severity_counts["high"]
    all_hits = sum(h for h, _ in base)
    all_lines = sum(t for _, t in base)

    def figures(
        key: Callable[[Finding], tuple[str, str, str]],
    ) -> list[RuleFigures]:
        groups: dict[tuple[str, str, str], list[tuple[int, int, Finding]]] = defaultdict(list)
        for entry in every:
            groups[key(entry[2])].append(entry)
        rows = []
        for (source, rule, severity), entries in groups.items():
            commits = {i for i, _, _ in entries}
            marks = [outcome[(i, n)] for i, n, _ in entries if (i, n) in outcome]
            lines = sum(base[i][1] for i in commits)
            addressed_rate = _rate(sum(marks), len(marks))
            base_rate = _rate(sum(base[i][0] for i in commits), lines)
            rows.append(
                RuleFigures(
                    source=source,
                    rule=rule,
                    severity=severity,
                    findings=len(entries),
                    commits=len(commits),
                    per_commit=round(len(entries) / max(1, len(analyzed)), 3),
                    tracked=len(marks),
                    addressed=sum(marks),
                    addressed_rate=addressed_rate,
                    base_rate=base_rate,
                    lift=_lift(addressed_rate, base_rate),
                )
            )
        return sorted(rows, key=lambda r: (-r.findings, r.source, r.rule))

    return Evaluation(
        repo=str(repo.root),
        head=head,
        commits=len(analyzed),
        skipped_commits=sum(1 for item in replayed if item.diff is None and item.error is None),
        window=window,
        findings=len(every),
        findings_per_commit=round(len(every) / max(1, len(analyzed)), 3),
        by_severity=severity_counts,
        high_share=_rate(high, len(every)),
        base_rate=_rate(all_hits, all_lines),
        rules=figures(lambda f: (f.source.value, f.rule or f.category, f.severity.value)),
        sources=figures(lambda f: (f.source.value, "", "")),
        learnings=_proposals(replayed, outcome),
        failures=[
            CommitFailure(commit=item.commit.sha[:12], error=item.error)
            for item in replayed
            if item.error
        ],
        seconds=round(seconds, 1),
        details=[
            ReplayedFinding(
                commit=replayed[i].commit.sha,
                severity=f.severity.value,
                source=f.source.value,
                rule=f.rule or f.category,
                file=f.file,
                start_line=f.start_line,
                title=f.title,
                detail=f.detail,
                addressed=outcome.get((i, n)),
            )
            for i, n, f in every
        ],
    )


def _top_folder(path: str | None) -> str | None:
    if not path or "/" not in path:
        return None
    return path.split("/", 1)[0]


def _proposals(
    replayed: list[_Replayed], outcome: dict[tuple[int, int], bool]
) -> list[ProposedLearning]:
    """The learnings curation would make if the team had rejected what its commits ignored:
    a folder rule for a rule none of whose findings there was addressed, and a suppression for
    a finding reported again and again and never addressed. Never for a critical finding or a
    notice."""
    folders: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    kept: set[tuple[str, str, str]] = set()
    repeats: dict[str, list[bool]] = defaultdict(list)
    last: dict[str, Finding] = {}
    for index, item in enumerate(replayed):
        for number, finding in enumerate(item.findings):
            # Notices (info: a sensitive area touched, a large change) are not problems to
            # address, and hiding one would take a reviewer's eyes off security code.
            if finding.severity in (Severity.critical, Severity.info):
                continue
            if (index, number) not in outcome:
                continue
            addressed = outcome[(index, number)]
            repeats[finding.fingerprint].append(addressed)
            last[finding.fingerprint] = finding
            folder = _top_folder(finding.file)
            if folder is None:
                continue
            key = (finding.agent, finding.rule or finding.category, folder)
            if addressed:
                kept.add(key)
            else:
                folders[key].add(finding.fingerprint)
    out: list[ProposedLearning] = []
    ruled: set[tuple[str, str, str]] = set()
    for (agent, kind, folder), fingerprints in sorted(folders.items()):
        if len(fingerprints) < RULE_AFTER or (agent, kind, folder) in kept:
            continue
        ruled.add((agent, kind, folder))
        out.append(
            ProposedLearning(
                key=f"rule:{agent}:{kind}:{folder}",
                kind="rule",
                agent=agent,
                text=f"Do not flag {kind} in {folder}/: none of its {len(fingerprints)} "
                "findings there was addressed by the commits that followed.",
                category=kind,
                path_glob=f"{folder}/*",
                findings=len(fingerprints),
            )
        )
    for fingerprint, marks in sorted(repeats.items()):
        finding = last[fingerprint]
        rule_key = (finding.agent, finding.rule or finding.category, _top_folder(finding.file))
        if len(marks) < SUPPRESS_AFTER or any(marks) or rule_key in ruled:
            continue
        out.append(
            ProposedLearning(
                key=f"suppress:{fingerprint}",
                kind="suppress",
                agent=finding.agent,
                text=f"Not reporting {finding.rule or finding.category} at {finding.file}: "
                f"reported by {len(marks)} commits and never addressed.",
                fingerprint=fingerprint,
                findings=len(marks),
            )
        )
    return out
