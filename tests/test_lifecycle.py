"""A finding's life across runs of one branch: new, still open (with where it was first seen),
or resolved; in the store's runs and with the command line's `--previous`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.lifecycle import compare, delta_line
from agents.pipeline import analyze_branch
from agents.report import SkippedFile, Votes
from bot.surfaces.slack.blocks import report_blocks
from tests.support.gitrepo import RepoBuilder
from tests.test_feedback import analyzed, make_app

FIRST = {
    "shop/calc.py": "import os\n\n\ndef run(expression):\n    return eval(expression)\n",
    "shop/load.py": "import yaml\n\n\ndef load(text):\n    return yaml.load(text)\n",
}
# Lines inserted above the eval (same problem, new line number), the yaml one fixed, a new one.
SECOND = {
    "shop/calc.py": "import os\n\nLIMIT = 10\nNAMES = {}\n\n\ndef run(expression):\n"
    "    return eval(expression)\n",
    "shop/load.py": "import yaml\n\n\ndef load(text):\n    return yaml.safe_load(text)\n",
    "shop/shell.py": "import subprocess\n\n\ndef go(cmd):\n"
    "    return subprocess.call(cmd, shell=True)\n",
}


def rules(findings: list) -> dict[str, str | None]:  # type: ignore[type-arg]
    return {f"{f.file}:{f.rule}": f.status for f in findings}


@pytest.fixture
def pushed(repo: RepoBuilder) -> RepoBuilder:
    repo.branch("feature/life")
    repo.commit(FIRST)
    repo.checkout("main")
    return repo


def push(repo: RepoBuilder, files: dict[str, str]) -> None:
    repo.checkout("feature/life")
    repo.commit(files)
    repo.checkout("main")


def test_findings_are_new_open_or_resolved_and_keep_where_they_were_first_seen(
    pushed: RepoBuilder,
) -> None:
    first = analyze_branch(pushed.root, "feature/life")
    assert first.previous is None and all(f.status is None for f in first.findings)
    push(pushed, SECOND)
    second = compare(analyze_branch(pushed.root, "feature/life"), first)
    found = rules(second.findings)
    # The eval moved down three lines: the same finding, still open.
    assert found["shop/calc.py:B307"] == "open" and found["shop/shell.py:B602"] == "new"
    [moved] = [f for f in second.findings if f.rule == "B307"]
    assert moved.start_line == 8
    assert moved.first_seen is not None
    assert (moved.first_seen.run_id, moved.first_seen.head_sha) == (
        first.run_id,
        first.target.head_sha,
    )
    assert {f"{f.file}:{f.rule}" for f in second.resolved} == {"shop/load.py:B506"}
    assert second.previous is not None and second.previous.run_id == first.run_id
    assert delta_line(second) == (
        f"{sum(1 for s in found.values() if s == 'new')} new, "
        f"{sum(1 for s in found.values() if s == 'open')} still open, 1 resolved since "
        f"{first.target.head_sha[:10]}"
    )
    # A third run keeps the first run as where the eval was first seen.
    push(pushed, {"README.md": "docs\n"})
    third = compare(analyze_branch(pushed.root, "feature/life"), second)
    [still] = [f for f in third.findings if f.rule == "B307"]
    assert still.first_seen is not None and still.first_seen.run_id == first.run_id
    assert third.resolved == []


def test_a_part_that_did_not_run_resolves_nothing(pushed: RepoBuilder) -> None:
    first = analyze_branch(pushed.root, "feature/life")
    again = analyze_branch(pushed.root, "feature/life")
    # The same head, but bandit failed this time: its findings are unknown, not fixed.
    broken = again.model_copy(
        update={
            "findings": [f for f in again.findings if f.source.value != "bandit"],
            "coverage": again.coverage.model_copy(
                update={"not_run": ["bandit did not run: RuntimeError: bandit failed"]}
            ),
        }
    )
    assert compare(broken, first).resolved == []
    # A file no longer analyzed (now too large, say) resolves nothing either.
    skipped = again.model_copy(
        update={
            "findings": [f for f in again.findings if f.file != "shop/calc.py"],
            "coverage": again.coverage.model_copy(
                update={
                    "files_analyzed": ["shop/load.py"],
                    "files_skipped": [
                        SkippedFile(file="shop/calc.py", reason="too large (2000 kB)")
                    ],
                }
            ),
        }
    )
    assert compare(skipped, first).resolved == []


def test_the_bot_compares_a_run_with_the_previous_run_of_the_same_branch(
    tmp_path: Path, pushed: RepoBuilder
) -> None:
    app = make_app(tmp_path, pushed)
    try:
        first = analyzed(app, "feature/life")
        assert first.previous is None
        push(pushed, SECOND)
        second = analyzed(app, "feature/life")
        assert second.previous is not None and second.previous.run_id == first.run_id
        assert rules(second.findings)["shop/calc.py:B307"] == "open"
        assert {f.rule for f in second.resolved} == {"B506"}
    finally:
        app.close()


@pytest.mark.slow
def test_the_command_line_compares_with_a_previous_json_report(
    tmp_path: Path, pushed: RepoBuilder
) -> None:
    def chatops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "analyze", "branch", "feature/life"]
            + ["--repo", str(pushed.root), "--offline", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    earlier = tmp_path / "first.json"
    assert chatops("--format", "json", "--output", str(earlier)).returncode == 0
    push(pushed, SECOND)
    done = chatops("--format", "json", "--previous", str(earlier))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    statuses = {f"{f['file']}:{f['rule']}": f["status"] for f in report["findings"]}
    assert statuses["shop/calc.py:B307"] == "open" and statuses["shop/shell.py:B602"] == "new"
    assert [f["rule"] for f in report["resolved"]] == ["B506"]
    head = json.loads(earlier.read_text())["target"]["head_sha"]
    assert report["previous"] == {
        "run_id": json.loads(earlier.read_text())["run_id"],
        "head_sha": head,
    }

    text = chatops("--previous", str(earlier))
    assert "still open, 1 resolved since " + head[:10] in text.stdout
    markdown = chatops("--format", "markdown", "--previous", str(earlier))
    assert f"## Resolved since `{head[:12]}` (1)" in markdown.stdout

    # The new high (shell=True) fails the build; the open one alone would not.
    assert chatops("--previous", str(earlier), "--fail-on-new", "high").returncode == 1
    assert chatops("--previous", str(earlier), "--fail-on-new", "critical").returncode == 0
    again = tmp_path / "second.json"
    chatops("--format", "json", "--output", str(again), "--previous", str(earlier))
    assert chatops("--previous", str(again), "--fail-on-new", "high").returncode == 0

    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a report"}')
    refused = chatops("--previous", str(bad))
    assert refused.returncode == 2 and "is not a chatops JSON report" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = chatops("--previous", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_votes_stay_with_a_finding_whose_lines_moved_and_its_suppression_carries_over(
    tmp_path: Path, pushed: RepoBuilder
) -> None:
    """Votes are kept by fingerprint: a 👎 before a push and one after it, on the same finding
    three lines lower, count together; the suppression they make keeps it out of later runs."""
    from tests.test_feedback import ANA, BEN

    app = make_app(tmp_path, pushed)
    try:
        first = analyzed(app, "feature/life")
        [evil] = [f for f in first.findings if f.rule == "B307"]
        [unused] = [f for f in first.findings if f.rule == "F401" and f.file == "shop/calc.py"]
        feedback = app.service.feedback
        feedback.vote(ANA, first.run_id, evil.fingerprint, -1, via="shell", reason="sandboxed")
        feedback.vote(ANA, first.run_id, unused.fingerprint, 1, via="shell")
        feedback.vote(BEN, first.run_id, unused.fingerprint, 1, via="shell")
        push(pushed, SECOND)
        second = analyzed(app, "feature/life")
        [moved] = [f for f in second.findings if f.rule == "B307"]
        assert moved.fingerprint == evil.fingerprint and moved.start_line != evil.start_line
        assert moved.status == "open"
        # The earlier votes show on the same findings in the later run (a 👍 carries over too).
        assert moved.votes == Votes(up=0, down=1)
        [still] = [f for f in second.findings if f.fingerprint == unused.fingerprint]
        assert still.votes == Votes(up=2, down=0)
        assert "👍 2 👎 0 so far" in json.dumps(report_blocks(second)[0], ensure_ascii=False)
        app.service.feedback.vote(
            BEN, second.run_id, moved.fingerprint, -1, via="button", reason="ok"
        )
        curated = app.service.feedback.curate()
        [suppress] = [row for row in curated.active if row.kind == "suppress"]
        assert suppress.fingerprint == evil.fingerprint
        push(pushed, {"README.md": "docs\n"})
        third = analyzed(app, "feature/life")
        assert evil.fingerprint not in {f.fingerprint for f in third.findings}
        assert third.suppressed_findings == 1 and suppress.id in third.learnings_applied
    finally:
        app.close()
