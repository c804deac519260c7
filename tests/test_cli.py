"""The `chatops` command as a user runs it: a real process, real exit codes, real output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.support.gitrepo import RepoBuilder


def chatops(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    done = chatops("schema")
    assert done.returncode == 0, done.stderr
    loaded: dict[str, object] = json.loads(done.stdout)
    return loaded


@pytest.mark.slow
def test_json_report_validates_against_the_published_schema(
    planted_repo: RepoBuilder, schema: dict[str, object]
) -> None:
    done = chatops(
        "analyze", "branch", "feature/planted", "--repo", str(planted_repo.root), "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    jsonschema.validate(report, schema)
    assert report["target"]["kind"] == "branch"
    assert report["target"]["branch"] == "feature/planted"
    assert report["target"]["head_sha"] == planted_repo.head("feature/planted")
    assert report["target"]["base_sha"] == planted_repo.head("main")
    assert {
        "run_id",
        "summary",
        "risk",
        "findings",
        "proposals",
        "coverage",
        "usage",
        "agents",
    } <= set(report)
    assert "AKIA4HJXZQ2WBNVGL7PK" not in done.stdout + done.stderr
    # progress goes to stderr, so stdout stays machine-readable
    assert "code_review done" in done.stderr


def test_schema_rejects_a_report_missing_a_fixed_key(schema: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"run_id": "x"}, schema)


@pytest.mark.slow
def test_text_report_runs_in_the_current_directory(planted_repo: RepoBuilder) -> None:
    done = chatops("analyze", "branch", "feature/planted", cwd=planted_repo.root)
    assert done.returncode == 0, done.stderr
    assert "CRITICAL" in done.stdout
    assert "shop/orders.py:11" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_fail_on_exits_1_when_a_finding_reaches_it(planted_repo: RepoBuilder) -> None:
    args = (
        "analyze",
        "branch",
        "feature/planted",
        "--repo",
        str(planted_repo.root),
        "--format",
        "json",
    )
    assert chatops(*args, "--fail-on", "critical").returncode == 1
    assert chatops(*args, "--fail-on", "high").returncode == 1


@pytest.mark.slow
def test_fail_on_exits_0_below_it(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch("feature/docs", {"README.md": "# shop\n\nBetter docs.\n"})
    done = chatops(
        "analyze",
        "branch",
        "feature/docs",
        "--repo",
        str(repo.root),
        "--format",
        "json",
        "--fail-on",
        "medium",
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_markdown_to_a_file(planted_repo: RepoBuilder, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    done = chatops(
        "analyze",
        "branch",
        "feature/planted",
        "--repo",
        str(planted_repo.root),
        "--format",
        "markdown",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("# Analysis of `feature/planted` against `main`")
    assert "### Critical (1)" in text
    assert done.stdout == ""


@pytest.mark.parametrize(
    "name",
    ["--upload-pack=touch {marker}", "-utouch {marker}", "a..b", "x.lock", "@{{-1}}"],
)
@pytest.mark.slow
def test_injection_names_exit_2_without_side_effects(
    planted_repo: RepoBuilder, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "pwned"
    before = planted_repo.snapshot()
    # After `--` the name reaches our validator even when it looks like an option.
    done = chatops(
        "analyze", "branch", "--repo", str(planted_repo.root), "--", name.format(marker=marker)
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()
    assert planted_repo.snapshot() == before


@pytest.mark.slow
def test_option_shaped_name_without_separator_is_a_usage_error(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    done = chatops(
        "analyze", "branch", f"--upload-pack=touch {marker}", "--repo", str(planted_repo.root)
    )
    assert done.returncode == 2
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (
            ("analyze", "branch", "feature/plant"),
            "No branch named 'feature/plant'",
            "Did you mean: feature/planted",
        ),
        (("analyze", "branch", "main"), "branch and the base are the same", "feature branch"),
        (
            ("analyze", "branch", "feature/planted", "--base", "nope"),
            "No base branch named",
            "git branch -a",
        ),
    ],
)
@pytest.mark.slow
def test_bad_input_says_what_to_do(
    planted_repo: RepoBuilder, args: tuple[str, ...], message: str, hint: str
) -> None:
    done = chatops(*args, "--repo", str(planted_repo.root))
    assert done.returncode == 2
    assert message in done.stderr
    assert hint in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_not_a_git_repository_exits_2(tmp_path: Path) -> None:
    done = chatops("analyze", "branch", "feature/x", "--repo", str(tmp_path))
    assert done.returncode == 2
    assert "is not a git repository" in done.stderr


@pytest.mark.slow
def test_nothing_changed_exits_2(repo: RepoBuilder) -> None:
    repo.branch("feature/nothing")
    done = chatops("analyze", "branch", "feature/nothing", "--repo", str(repo.root))
    assert done.returncode == 2
    assert "Nothing changed" in done.stderr


@pytest.mark.slow
def test_demo_creates_a_repository_and_reports_on_it(tmp_path: Path) -> None:
    where = tmp_path / "demo"
    done = chatops("demo", "--path", str(where))
    assert done.returncode == 0, done.stderr
    assert (where / ".git").is_dir()
    assert "CRITICAL" in done.stdout
    assert "AWS Access Key" in done.stdout
    again = chatops("demo", "--path", str(where))
    assert again.returncode == 2
    assert "is not empty" in again.stderr


def test_the_cli_mirrors_of_agents_constants_are_equal() -> None:
    """`chatops --help` imports neither the report models nor the evaluation: its own copies
    of their values must stay equal to them."""
    from agents.evaluation import DEFAULT_WINDOW
    from agents.report import Severity
    from bot.cli import EVAL_WINDOW, Level

    assert EVAL_WINDOW == DEFAULT_WINDOW
    assert [level.value for level in Level] == [severity.value for severity in Severity]


@pytest.mark.slow
def test_quick_commands_import_none_of_the_heavy_parts() -> None:
    """`chatops --help` starts in a fraction of a second (bench/cli_startup.py times it): the
    Slack SDK, the database layer, the report models and the pipeline load only where used."""
    code = (
        "import sys, bot.cli; "
        "print(sorted(m for m in ('slack_sdk', 'slack_bolt', 'sqlalchemy', 'alembic', 'huey', "
        "'pydantic', 'agents.pipeline', 'anthropic') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_shows_square_brackets_as_written() -> None:
    """Help is plain text: `[digest]` (the policy's section) is not taken for markup."""
    from typer.testing import CliRunner

    from bot.cli import app

    done = CliRunner().invoke(app, ["--help"])
    assert done.exit_code == 0
    assert "posted to [digest]" in done.output
    assert "╭" not in done.output  # no rich panels


@pytest.mark.parametrize("command", [["branch", "feature/x"], ["pr", "7"]])
def test_a_model_setting_it_cannot_use_exits_2_before_any_work(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with a price table that is not there: said as the setting to fix (exit 2), before
    a branch is read or GitHub is asked."""
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("CHATOPS_PRICES", str(tmp_path / "no-such-prices.toml"))
    done = CliRunner().invoke(app, ["analyze", *command, "--repo", str(tmp_path)])
    assert done.exit_code == 2, done.output
    assert "invalid setting: CHATOPS_PRICES" in done.output
    assert "Fix the environment variable or .env file." in done.output
