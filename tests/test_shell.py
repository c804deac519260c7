"""`chatops shell` driven through its stdin, as a person would type; history survives restarts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gitrepo import RepoBuilder
from tests.support.processes import clean_env


def shell(repo: Path, data: Path, lines: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(CHATOPS_DATA_DIR=str(data))
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell", "--repo", str(repo), *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_analyze_shows_progress_then_the_report(planted_repo: RepoBuilder, tmp_path: Path) -> None:
    done = shell(
        planted_repo.root,
        tmp_path / "data",
        ["/agent analyze branch feature/planted", "exit"],
        "--as",
        "ana",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "acting as ana" in out
    assert "branches feature/planted, main" in out
    assert "queued: analyzing feature/planted in repo, requested by ana" in out
    order = [
        out.index(f"  {name} done in") for name in ("code_review", "tests", "dependencies", "risk")
    ]
    assert order == sorted(order)
    report_at = out.index("Risk  CRITICAL")
    assert report_at > order[-1]
    assert "Possible AWS Access Key added" in out
    assert "AKIA4HJXZQ2WBNVGL7PK" not in out
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_history_survives_a_restart_and_errors_say_what_to_do(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = shell(planted_repo.root, data, ["analyze branch feature/planted"])
    run_id = first.stdout.split("Run ", 1)[1].split(" ", 1)[0]
    second = shell(
        planted_repo.root,
        data,
        [
            "/agent status",
            f"/agent status {run_id}",
            "/agent analyze branch feature/plant",
            "/agent analyze branch --upload-pack=x",
            "/agent stop nope",
            f"/agent stop {run_id}",
            f"approve {run_id}/P1",
            "frobnicate",
        ],
    )
    out = second.stdout
    assert f"{run_id} │ done" in out
    assert out.count("Risk  CRITICAL") == 1  # `status RUN` shows the stored report again
    assert "error: No branch named 'feature/plant'" in out
    assert "Did you mean: feature/planted?" in out
    assert "error: '--upload-pack=x' is not a valid branch name." in out
    assert "error: No run 'nope'." in out
    assert f"error: Run {run_id} is already done." in out
    assert f"Not done: there is no proposal {run_id}/P1." in out
    assert "error: Unknown command 'frobnicate'." in out
    assert "Traceback" not in second.stderr


@pytest.mark.slow
def test_a_broken_policy_file_stops_the_shell_with_the_reason(tmp_path: Path) -> None:
    policy = tmp_path / "chatops.toml"
    policy.write_text('[repos.shop]\nmode = "yolo"\npath = "."\n')
    env = clean_env(CHATOPS_DATA_DIR=str(tmp_path / "data"), CHATOPS_CONFIG=str(policy))
    done = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input="exit\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert f"error: {policy}: repos.shop.mode: Input should be" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_approve_in_the_shell_commits_and_audit_shows_it(repo: RepoBuilder, tmp_path: Path) -> None:
    repo.branch("feature/imports")
    repo.commit({"shop/cli.py": "import os\nimport sys\n\n\ndef main():\n    return sys.argv\n"})
    repo.checkout("main")
    base = repo.head("feature/imports")
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{repo.root}"\n\n[approvals]\napprovers = ["lead"]\n')
    env = clean_env(CHATOPS_DATA_DIR=str(tmp_path / "data"), CHATOPS_CONFIG=str(policy))

    def run(args: list[str], lines: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    first = run(["shell", "--as", "dev"], ["analyze branch feature/imports", "approve P1"])
    assert "Not done: four-eyes is on" in first.stdout
    run_id = first.stdout.split("Run ", 1)[1].split(" ", 1)[0]
    second = run(["shell", "--as", "lead"], [f"approve {run_id}/P1"])
    assert f"{run_id}/P1 approved by lead" in second.stdout
    assert f"{run_id}/P1: applied: committed" in second.stdout
    assert repo.git("rev-list", "--count", f"{base}..feature/imports").strip() == "1"
    audit = run(["audit", "--run", run_id], [])
    assert audit.returncode == 0, audit.stderr
    assert "denied" in audit.stdout and "granted" in audit.stdout and "ok" in audit.stdout
    assert "3 audit row(s)" in audit.stderr
    bad = run(["audit", "--since", "yesterday"], [])
    assert bad.returncode == 2 and "is not a date" in bad.stderr
