"""ruff's safe fixes become one exact patch, offered only when it applies at the branch head."""

from __future__ import annotations

import subprocess

from agents.analyzers.autofix import apply_edits, unified_diff
from agents.analyzers.lint import Edit, SafeFix
from agents.context.git import GitRepo, load_diff
from agents.context.workspace import prepare
from agents.pipeline import analyze_branch
from agents.report import ProposalKind, sha256_hex
from agents.roles.base import PipelineState
from agents.roles.code_review import CodeReviewAgent
from tests.support.gitrepo import RepoBuilder

UNUSED_IMPORTS = "import json\nimport os\nimport sys\n\n\ndef main():\n    return sys.argv\n"


def test_patch_proposal_applies_and_removes_the_finding(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch("feature/imports", {"shop/cli.py": UNUSED_IMPORTS})
    report = analyze_branch(repo.root, "feature/imports")
    [proposal] = report.proposals
    assert proposal.kind is ProposalKind.patch
    assert proposal.id == "P1"
    assert proposal.target == "feature/imports"
    assert proposal.base_sha == repo.head("feature/imports")
    assert proposal.content_sha256 == sha256_hex(proposal.content)
    assert "-import json\n-import os\n" in proposal.content
    assert not [
        line
        for line in proposal.content.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]

    # Apply it for real in a checkout of the branch: the F401 findings are gone afterwards.
    repo.checkout("feature/imports")
    subprocess.run(
        ["git", "apply", "-"], cwd=repo.root, input=proposal.content.encode(), check=True
    )
    repo.commit({}, "apply P1")
    repo.checkout("main")
    after = analyze_branch(repo.root, "feature/imports")
    assert not [f for f in after.findings if f.rule == "F401"]
    assert after.proposals == []


def test_no_proposal_when_the_patch_does_not_apply_at_head(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch("feature/imports", {"shop/cli.py": UNUSED_IMPORTS})
    diff = load_diff(GitRepo.open(repo.root), "feature/imports")
    with prepare(diff) as workspace:
        # What ruff saw no longer matches the head: the patch context will not apply.
        (workspace.root / "shop/cli.py").write_text("import json\nimport os\nimport sys\n# x\n")
        workspace.texts["shop/cli.py"] = "# drifted\n" + workspace.texts["shop/cli.py"]
        state = PipelineState(diff=diff, workspace=workspace)
        CodeReviewAgent().run(state)
    assert state.proposals == []
    assert any("do not apply at the head" in note for note in state.notes)


def test_fixes_on_unchanged_lines_are_not_proposed(repo: RepoBuilder) -> None:
    repo.commit({"shop/old.py": "import os\n\nX = 1\n"}, "old unused import on main")
    repo.branch("feature/other")
    repo.commit({"shop/old.py": "import os\n\nX = 2\n"})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/other")
    assert report.proposals == []
    assert not [f for f in report.findings if f.rule == "F401"]


def test_overlapping_fixes_are_applied_once() -> None:
    text = "abcdef\n"
    first = SafeFix("f.py", "X1", "m", (Edit("", (1, 2), (1, 4)),))
    overlapping = SafeFix("f.py", "X2", "m", (Edit("Z", (1, 3), (1, 5)),))
    separate = SafeFix("f.py", "X3", "m", (Edit("Q", (1, 6), (1, 7)),))
    new, applied = apply_edits(text, [first, overlapping, separate])
    assert new == "adeQ\n"
    assert [f.code for f in applied] == ["X1", "X3"]


def test_unified_diff_marks_missing_final_newline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    patch = unified_diff("a.py", "x = 1\ny = 2", "x = 1\ny = 3")
    assert patch.startswith("diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n")
    assert patch.endswith(
        "-y = 2\n\\ No newline at end of file\n+y = 3\n\\ No newline at end of file\n"
    )
    (tmp_path / "a.py").write_text("x = 1\ny = 2")
    subprocess.run(["git", "apply", "-"], cwd=tmp_path, input=patch.encode(), check=True)
    assert (tmp_path / "a.py").read_text() == "x = 1\ny = 3"
