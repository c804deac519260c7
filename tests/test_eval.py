"""`chatops eval history`: the repository's own history replayed, each finding followed forward."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agents.context.git import GitRepo, Hunk
from agents.evaluation import evaluate_history, follow
from bot.cli import app
from tests.support.gitrepo import RepoBuilder


def test_follow_maps_untouched_spans_and_marks_changed_ones() -> None:
    # Old lines 1-6; the change inserts two lines after line 1 and rewrites line 5.
    hunks = [
        Hunk(1, 2, 1, 4, "", lines=[(" ", "a"), ("+", "x"), ("+", "y"), (" ", "b")]),
        Hunk(4, 3, 6, 3, "", lines=[(" ", "d"), ("-", "e"), ("+", "E"), (" ", "f")]),
    ]
    assert follow([(1, 1), (2, 2), (3, 3), (5, 5), (6, 6), (1, 2)], hunks) == [
        (1, 1),
        (4, 4),
        (5, 5),
        None,  # rewritten
        (8, 8),
        None,  # a line was inserted inside the span
    ]


def _history(tmp_path: Path) -> tuple[RepoBuilder, list[str]]:
    repo = RepoBuilder(tmp_path / "repo")
    shas = [repo.commit({"README.md": "# shop\n", "shop/__init__.py": ""}, "base")]
    # Two eval() calls arrive; a later commit fixes the first and leaves the second alone.
    shas.append(
        repo.commit(
            {
                "shop/calc.py": (
                    "def a(x):\n    return eval(x)\n\n\ndef b(y):\n    return eval(y)\n"
                ),
                "shop/notes.py": "ONE = 1\nTWO = 2\n",
            },
            "calculators",
        )
    )
    shas.append(repo.commit({"shop/notes.py": "ONE = 1\nTWO = 3\n"}, "notes"))
    shas.append(
        repo.commit(
            {
                "shop/calc.py": "import ast\n\n\ndef a(x):\n    return ast.literal_eval(x)\n\n\n"
                "def b(y):\n    return eval(y)\n"
            },
            "fix a",
        )
    )
    return repo, shas


def test_a_finding_is_addressed_when_a_later_commit_changes_its_lines(tmp_path: Path) -> None:
    repo, shas = _history(tmp_path)
    seen: list[int] = []
    result = evaluate_history(
        GitRepo.open(repo.root),
        shas[-1],
        on_commit=lambda done, total, _c: seen.append(done),
        details=True,
    )
    assert result.commits == 3 and result.skipped_commits == 1  # the root has no parent
    assert sorted(seen) == [1, 2, 3, 4]
    evals = [d for d in result.details if d.rule == "B307"]
    assert [(d.start_line, d.addressed) for d in evals if d.commit == shas[1]] == [
        (2, True),
        (6, False),
    ]
    [row] = [r for r in result.rules if r.rule == "B307" and r.severity == "high"]
    assert (row.findings, row.tracked) == (2, 2)
    assert row.addressed == 1
    # Base rate: of the lines the same commits added, how many changed later.
    assert row.base_rate is not None and 0 < row.base_rate < 1
    assert row.lift == round(row.addressed_rate / row.base_rate, 2)  # type: ignore[operator]


def test_the_command_prints_json_and_proposes_learnings_never_applies_them(
    tmp_path: Path,
) -> None:
    repo = RepoBuilder(tmp_path / "repo")
    repo.commit({"README.md": "# x\n", "pkg/__init__.py": ""}, "base")
    for n in range(3):
        repo.commit({f"pkg/m{n}.py": f"import os\n\n\ndef f{n}():\n    return {n}\n"}, f"m{n}")
    repo.commit({"README.md": "# x\n\nmore\n"}, "docs")
    done = CliRunner().invoke(
        app, ["eval", "history", "--repo", str(repo.root), "--last", "10", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["commits"] == 4
    f401 = next(r for r in data["rules"] if r["rule"] == "F401")
    assert (f401["findings"], f401["addressed"]) == (3, 0)
    keys = [learning["key"] for learning in data["learnings"]]
    assert "rule:code_review:F401:pkg" in keys
    assert {"findings_per_commit", "high_share", "sources", "by_severity"} <= set(data)


def test_the_text_report_and_bad_input(tmp_path: Path) -> None:
    repo, _ = _history(tmp_path)
    done = CliRunner().invoke(app, ["eval", "history", "--repo", str(repo.root)])
    assert done.exit_code == 0, done.output
    assert "3 commit(s) replayed" in done.stdout
    assert "B307" in done.stdout and "lift" in done.stdout
    bad = CliRunner().invoke(app, ["eval", "history", "--repo", str(repo.root), "--since", "x"])
    assert bad.exit_code == 2
    assert "YYYY-MM-DD" in bad.output
    future = CliRunner().invoke(
        app, ["eval", "history", "--repo", str(repo.root), "--since", "2099-01-01"]
    )
    assert future.exit_code == 2
    assert "No commits in that range" in future.output


def test_notices_are_never_proposed_for_suppression(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "repo")
    repo.commit({"README.md": "# x\n", "pkg/__init__.py": ""}, "base")
    for n in range(1, 5):  # the login module grows: an info notice each time, never "fixed"
        body = "".join(f"VALUE_{k} = {k}\n" for k in range(n))
        repo.commit({"pkg/login.py": body}, f"login {n}")
    result = evaluate_history(GitRepo.open(repo.root), repo.head())
    assert any(r.rule == "sensitive-path:auth" for r in result.rules)
    assert not any("sensitive-path" in learning.key for learning in result.learnings)
    assert not any(
        learning.fingerprint and "login" in learning.text for learning in result.learnings
    )


def test_a_commit_that_cannot_be_analyzed_is_listed_and_the_others_stand(tmp_path: Path) -> None:
    from agents.evaluation import Analysis, offline_analysis

    repo, shas = _history(tmp_path)

    def breaks_on_notes(diff):  # type: ignore[no-untyped-def]
        if any(f.path == "shop/notes.py" and len(diff.files) == 1 for f in diff.files):
            raise RuntimeError("analyzer crashed")
        result: Analysis = offline_analysis(diff)
        return result

    result = evaluate_history(GitRepo.open(repo.root), shas[-1], analyze=breaks_on_notes)
    assert [f.commit for f in result.failures] == [shas[2][:12]]
    assert "analyzer crashed" in result.failures[0].error
    assert any(r.rule == "B307" for r in result.rules)  # the other commits' figures stand
    done = CliRunner().invoke(app, ["eval", "history", "--repo", str(repo.root)])
    assert done.exit_code == 0  # the real analysis of the same history fails nowhere
