"""Edge cases found in review: odd file names, byte-order marks, form feeds, syntax errors,
git configuration that changes diff output, type changes, unusual manifests."""

from __future__ import annotations

import subprocess

import pytest

from agents.pipeline import analyze_branch
from agents.report import Severity
from tests.support.gitrepo import RepoBuilder


def test_a_folder_with_a_space_keeps_every_analyzer_running(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/space",
        {
            "a b/c.py": "import os\n\n\ndef run(x):\n    return eval(x)\n",
            "é.env": 'API_KEY="AKIA4HJXZQ2WBNVGL7PK"\n',
        },
    )
    report = analyze_branch(repo.root, "feature/space")
    assert next(a for a in report.agents if a.name == "code_review").status == "done"
    rules = {(f.file, f.rule) for f in report.findings}
    assert ("a b/c.py", "B307") in rules and ("a b/c.py", "F401") in rules
    assert ("é.env", "AWS Access Key") in rules


def test_ruff_fixes_in_files_with_a_bom_form_feed_or_unicode_name_apply(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/odd",
        {
            "bom.py": "\ufeffimport os\nimport sys\n\nprint(sys.argv)\n",
            "ff.py": "import os\nX = '\x0c'\n",
            "é.py": "import json\nY = 1\n",
        },
    )
    report = analyze_branch(repo.root, "feature/odd")
    [patch] = report.proposals
    repo.checkout("feature/odd")
    subprocess.run(["git", "apply", "-"], cwd=repo.root, input=patch.content.encode(), check=True)
    assert (repo.root / "bom.py").read_text() == "\ufeffimport sys\n\nprint(sys.argv)\n"
    assert (repo.root / "ff.py").read_text() == "X = '\x0c'\n"
    assert (repo.root / "é.py").read_text() == "Y = 1\n"
    assert not [f for f in report.findings if f.rule == "hidden-unicode"]


def test_a_syntax_error_is_high_even_where_the_parser_gave_up(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch("feature/broken", {"x.py": "x = [1,\n"})
    report = analyze_branch(repo.root, "feature/broken")
    [error] = [f for f in report.findings if f.rule == "invalid-syntax"]
    assert error.severity is Severity.high and error.start_line == 1


def test_bandit_scans_files_under_dot_github(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch("feature/ci", {".github/scripts/s.py": "def f(x):\n    return eval(x)\n"})
    report = analyze_branch(repo.root, "feature/ci")
    assert (".github/scripts/s.py", "B307") in {(f.file, f.rule) for f in report.findings}


@pytest.mark.parametrize(
    "settings",
    [
        "[bandit]\ntests = B101\n",  # only a check the bot skips anyway
        "[bandit]\nexclude = ./app\n",  # the changed folder
        "[bandit]\nskips = B307\n",
    ],
)
def test_a_branch_cannot_turn_bandit_off_for_its_own_change(make_branch, settings) -> None:  # type: ignore[no-untyped-def]
    """bandit reads a `.bandit` file it finds under its target: one the branch adds must not
    choose what bandit checks (as with ruff, the branch does not configure its own review)."""
    repo = make_branch(
        "feature/quiet",
        {".bandit": settings, "app/run.py": "def f(x):\n    return eval(x)\n"},
    )
    report = analyze_branch(repo.root, "feature/quiet")
    assert next(a for a in report.agents if a.name == "code_review").status == "done"
    assert ("app/run.py", "B307") in {(f.file, f.rule) for f in report.findings}


def test_two_bandit_files_on_a_branch_do_not_stop_bandit(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/two",
        {
            "a/.bandit": "[bandit]\n",
            "b/.bandit": "[bandit]\n",
            "a/run.py": "def f(x):\n    return eval(x)\n",
        },
    )
    report = analyze_branch(repo.root, "feature/two")
    assert not report.coverage.not_run
    assert ("a/run.py", "B307") in {(f.file, f.rule) for f in report.findings}


def test_diff_submodule_log_in_git_config_changes_nothing(repo: RepoBuilder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sub = RepoBuilder(tmp_path / "sub")
    sub.commit({"s.txt": "s\n"})
    repo.git("config", "diff.submodule", "log")
    repo.git("config", "grep.lineNumber", "true")
    repo.git("config", "grep.column", "true")
    repo.branch("feature/sub")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.root), "mod")
    repo.commit(
        {
            "z.py": "import os\n\n\ndef helper():\n    return 1\n",
            "tests/test_z.py": "from z import helper\n\n\ndef test_helper():\n"
            "    assert helper() == 1\n",
        }
    )
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/sub")
    assert ("z.py", "F401") in {(f.file, f.rule) for f in report.findings}
    assert not [f for f in report.findings if f.rule == "untested-code"]  # grep output parsed


def test_a_symlink_that_becomes_a_file_on_a_sensitive_path(repo: RepoBuilder) -> None:
    (repo.root / "auth").mkdir()
    (repo.root / "auth" / "login.py").symlink_to("../shop/cart.py")
    repo.commit({}, "a link")
    repo.branch("feature/unlink")
    (repo.root / "auth" / "login.py").unlink()
    repo.commit({"auth/login.py": "def login(user):\n    return True\n"})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/unlink")
    assert next(a for a in report.agents if a.name == "risk").status == "done"
    [sensitive] = [f for f in report.findings if f.rule == "sensitive-path:auth"]
    assert sensitive.start_line == 1


def test_unusual_manifests_are_read_not_crashed(repo: RepoBuilder) -> None:
    repo.commit(
        {
            "pyproject.toml": '[tool.poetry.dependencies]\npython = "^3.11"\nfoo = "1.0"\n',
            "requirements.txt": "Django>=4.2,<5.0\nzope.interface==6.0\n",
        }
    )
    repo.branch("feature/deps")
    repo.commit(
        {
            "pyproject.toml": '[tool.poetry.dependencies]\npython = "^3.11"\n'
            'foo = [{version = "0.9", python = "<3.12"}, {version = "1.0"}]\n',
            "requirements.txt": "Django>=3.2,<5.0\nzope.interface==5.0 \\\n    --hash=sha256:abc\n",
        }
    )
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/deps")
    assert next(a for a in report.agents if a.name == "dependencies").status == "done"
    downgraded = {
        (f.file, f.title.split(": ")[1].split(" ")[0], f.start_line)
        for f in report.findings
        if f.rule == "dependency-downgraded"
    }
    assert downgraded == {
        ("pyproject.toml", "foo", 3),
        ("requirements.txt", "django", 1),
        ("requirements.txt", "zope-interface", 2),
    }
