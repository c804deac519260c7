"""The pipeline: order, checkpoints and stop requests, failure isolation, de-duplication."""

from __future__ import annotations

from agents.context.git import GitRepo, load_diff
from agents.pipeline import Progress, analyze_branch, dedupe, run_pipeline
from agents.report import Finding, Severity, Source, fingerprint
from agents.roles.base import PipelineState
from tests.support.gitrepo import RepoBuilder


class Exploding:
    name = "exploding"
    description = "fails every time"

    def run(self, state: PipelineState) -> None:
        raise RuntimeError("analyzer crashed")


class Recording:
    description = "adds one finding"

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, state: PipelineState) -> None:
        state.findings.append(
            Finding(
                fingerprint=fingerprint(
                    source=Source.heuristic, rule=self.name, file=None, anchor=self.name
                ),
                agent=self.name,
                category="test",
                severity=Severity.medium,
                confidence=1.0,
                title=f"from {self.name}",
                source=Source.heuristic,
            )
        )


def test_checkpoint_sees_each_agent_run_in_order(planted_repo: RepoBuilder) -> None:
    seen: list[list[tuple[str, str]]] = []

    def checkpoint(progress: Progress) -> bool:
        seen.append([(a.name, a.status) for a in progress.agents])
        return True

    report = analyze_branch(planted_repo.root, "feature/planted", checkpoint=checkpoint)
    assert seen[0] == [
        ("code_review", "waiting"),
        ("tests", "waiting"),
        ("dependencies", "waiting"),
        ("feature_flags", "waiting"),
        ("risk", "waiting"),
    ]
    assert ("code_review", "running") in seen[1]
    assert seen[-1] == [
        ("code_review", "done"),
        ("tests", "done"),
        ("dependencies", "done"),
        ("feature_flags", "done"),
        ("risk", "done"),
    ]
    assert report.stopped_early is False


def test_a_stop_request_ends_the_run_at_the_next_checkpoint(planted_repo: RepoBuilder) -> None:
    def stop_after_code_review(progress: Progress) -> bool:
        return progress.agents[0].status != "done"

    report = analyze_branch(planted_repo.root, "feature/planted", checkpoint=stop_after_code_review)
    assert [(a.name, a.status) for a in report.agents] == [
        ("code_review", "done"),
        ("tests", "cancelled"),
        ("dependencies", "cancelled"),
        ("feature_flags", "cancelled"),
        ("risk", "cancelled"),
    ]
    assert report.stopped_early
    assert "Stopped on request" in report.summary
    # What finished before the stop is kept.
    assert any(f.rule == "B307" for f in report.findings)
    assert not any(f.rule == "dependency-downgraded" for f in report.findings)


def test_a_failing_agent_keeps_the_others_results(planted_repo: RepoBuilder) -> None:
    diff = load_diff(GitRepo.open(planted_repo.root), "feature/planted")
    report = run_pipeline(diff, agents=[Recording("first"), Exploding(), Recording("last")])
    assert [(a.name, a.status) for a in report.agents] == [
        ("first", "done"),
        ("exploding", "failed"),
        ("last", "done"),
    ]
    assert report.agents[1].error == "RuntimeError: analyzer crashed"
    assert {f.title for f in report.findings} == {"from first", "from last"}
    assert "Failed: exploding" in report.summary


def _finding(fp: str, severity: Severity, confidence: float = 0.5) -> Finding:
    return Finding(
        fingerprint=fp,
        agent="a",
        category="c",
        severity=severity,
        confidence=confidence,
        title=f"{fp} {severity}",
        source=Source.ruff,
    )


def test_dedupe_keeps_the_worst_of_each_fingerprint_worst_first() -> None:
    kept = dedupe(
        [
            _finding("x", Severity.low),
            _finding("y", Severity.medium),
            _finding("x", Severity.high),
            _finding("x", Severity.high, 0.9),
        ]
    )
    assert [(f.fingerprint, f.severity, f.confidence) for f in kept] == [
        ("x", Severity.high, 0.9),
        ("y", Severity.medium, 0.5),
    ]


def test_fingerprint_survives_unrelated_lines_moving_above(make_branch) -> None:  # type: ignore[no-untyped-def]
    body = "def run(x):\n    return eval(x)\n"
    repo = make_branch("feature/one", {"shop/run.py": body})
    repo.branch("feature/two", "main")
    repo.commit({"shop/run.py": "import logging\n\nLOG = logging.getLogger()\n\n\n" + body})
    repo.checkout("main")
    first = analyze_branch(repo.root, "feature/one")
    second = analyze_branch(repo.root, "feature/two")
    a = next(f for f in first.findings if f.rule == "B307")
    b = next(f for f in second.findings if f.rule == "B307")
    assert a.start_line != b.start_line
    assert a.fingerprint == b.fingerprint


def test_fingerprint_differs_for_a_different_problem() -> None:
    one = fingerprint(source=Source.bandit, rule="B307", file="a.py", anchor="eval(x)")
    assert one == fingerprint(source=Source.bandit, rule="B307", file="a.py", anchor="  eval(x) ")
    assert one != fingerprint(source=Source.bandit, rule="B307", file="a.py", anchor="eval(y)")
    assert one != fingerprint(source=Source.bandit, rule="B307", file="b.py", anchor="eval(x)")


def test_the_same_problem_on_two_lines_is_two_findings(make_branch) -> None:  # type: ignore[no-untyped-def]
    body = "def a(x):\n    return eval(x)\n\n\ndef b(x):\n    return eval(x)\n"
    repo = make_branch("feature/twice", {"shop/twice.py": body})
    repo.branch("feature/twice-moved", "main")
    repo.commit({"shop/twice.py": "import logging\n\n\n" + body})
    repo.checkout("main")
    first = [f for f in analyze_branch(repo.root, "feature/twice").findings if f.rule == "B307"]
    moved = [
        f for f in analyze_branch(repo.root, "feature/twice-moved").findings if f.rule == "B307"
    ]
    assert [f.start_line for f in first] == [2, 6]
    assert [f.start_line for f in moved] == [5, 9]
    assert len({f.fingerprint for f in first}) == 2
    assert [f.fingerprint for f in first] == [f.fingerprint for f in moved]


def test_bandit_reads_only_files_whose_content_is_new(
    repo: RepoBuilder,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """Each file's bandit answer is kept by its content: a re-run at the same head starts no
    bandit, a push sends bandit only the changed file (the others keep their findings), and a
    failure is never kept."""
    from agents.analyzers import security
    from agents.reuse import MemoryAnswers

    kept = MemoryAnswers()
    started: list[list[str]] = []
    real = security._run

    def counted(workspace, paths):  # type: ignore[no-untyped-def]
        started.append(list(paths))
        return real(workspace, paths)

    monkeypatch.setattr(security, "_run", counted)
    repo.branch("feature/again")
    repo.commit(
        {
            "app/run.py": "def f(x):\n    return eval(x)\n",
            "app/shell.py": "import os\n\n\ndef g(c):\n    os.system(c)\n",
        }
    )
    repo.checkout("main")

    def rules() -> set[tuple[str | None, str]]:
        report = analyze_branch(repo.root, "feature/again", kept=kept)
        return {(f.file, f.rule) for f in report.findings if f.source.value == "bandit"}

    first = rules()
    assert started == [["app/run.py", "app/shell.py"]]
    assert {("app/run.py", "B307"), ("app/shell.py", "B605")} <= first
    assert rules() == first and len(started) == 1  # the same head: no bandit at all

    repo.checkout("feature/again")
    repo.commit({"app/run.py": "def f(x):\n    return eval(x) + 1\n"})
    repo.checkout("main")
    assert rules() == first
    assert started[-1] == ["app/run.py"]  # only the file that changed

    def broken(workspace, paths):  # type: ignore[no-untyped-def]
        started.append(["broken"])
        raise RuntimeError("bandit failed: internal error")

    monkeypatch.setattr(security, "_run", broken)
    repo.checkout("feature/again")
    repo.commit({"app/other.py": "X = 1\n"})
    repo.checkout("main")
    for _ in range(2):
        report = analyze_branch(repo.root, "feature/again", kept=kept)
        assert any(p.startswith("bandit did not run") for p in report.coverage.not_run)
    assert started[-2:] == [["broken"], ["broken"]]
