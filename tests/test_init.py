"""`chatops init`: a commented policy file for the repository it runs in, which the bot's own
loader accepts as written, never over an existing file, and `chatops.example.toml` is what it
writes for a generic repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.config import load_policy
from bot.policy_template import (
    EXAMPLE,
    EXAMPLE_FILE,
    Seen,
    example_text,
    policy_text,
    repo_name,
    write_new,
)
from tests.support.gitrepo import RepoBuilder

ROOT = Path(__file__).resolve().parent.parent


def init_in(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str) -> Result:
    """`chatops init ARGS` run in `cwd`, in this process."""
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, ["init", *args])


def chatops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def shop(tmp_path: Path) -> RepoBuilder:
    """A repository in a folder named shop, with the example's branches."""
    repo = RepoBuilder(tmp_path / "shop")
    repo.commit({"README.md": "# shop\n"}, "base")
    for branch in EXAMPLE.branches:
        if branch != "main":
            repo.branch(branch, "main")
    repo.checkout("main")
    return repo


def test_the_example_file_is_what_init_writes_for_a_generic_repository() -> None:
    shipped = (ROOT / EXAMPLE_FILE).read_text(encoding="utf-8")
    assert shipped == example_text(), (
        f"{EXAMPLE_FILE} is out of date: `python -m bot.policy_template` writes it again"
    )


@pytest.mark.slow
def test_init_writes_the_example_for_a_repository_like_it(shop: RepoBuilder) -> None:
    done = chatops("init", cwd=shop.root)
    assert done.returncode == 0, done.stderr
    written = (shop.root / "chatops.toml").read_text(encoding="utf-8")
    assert written == (ROOT / EXAMPLE_FILE).read_text(encoding="utf-8")
    assert "wrote chatops.toml (repos.shop: path ., base main)" in done.stderr
    assert "approvers" in done.stderr  # what to do next
    assert sorted(p.name for p in shop.root.iterdir()) == [".git", "README.md", "chatops.toml"]


def test_the_file_loads_with_the_products_loader_as_written(shop: RepoBuilder) -> None:
    (shop.root / "chatops.toml").write_text(example_text(), encoding="utf-8")
    policy = load_policy(shop.root / "chatops.toml", cwd=shop.root)
    [(name, repo)] = policy.repos.items()
    assert name == "shop"
    assert repo.path == shop.root.resolve()
    assert repo.base == "main"
    assert repo.mode == "feature_branches"
    assert repo.writable == ["feature/*", "fix/*", "bugfix/*", "chore/*"]
    assert repo.protected == ["staging"]  # a long-lived branch seen there
    assert policy.approvals.approvers == []  # the placeholder is a comment: nobody, until set
    assert policy.approvals.four_eyes is True
    assert policy.digest.cron == "0 9 * * mon-fri" and policy.digest.channel is None
    # Every commented setting is a valid one too: uncommented in place of its default.
    setting = re.compile(r"# ((?:[a-z_]+ = \S.*)|\[[a-z]+\])")
    lines = example_text().splitlines()
    commented = {m.group(1).split(" = ")[0] for line in lines if (m := setting.fullmatch(line))}
    uncommented = [
        found.group(1) if (found := setting.fullmatch(line)) else line
        for line in lines
        if line.split(" = ")[0] not in commented
    ]
    assert {"approvers", "channel", "suppress_after", "branches", "every"} <= commented
    (shop.root / "chatops.toml").write_text("\n".join(uncommented), encoding="utf-8")
    everything = load_policy(shop.root / "chatops.toml", cwd=shop.root)
    assert everything.approvals.approvers == ["U0123456789", "S0123456789"]
    assert everything.digest.channel == "C0123456789"
    assert everything.follow.branches == ["release/*"]
    assert everything.feedback.rule_after == 3


def test_every_line_is_said_for_a_newcomer() -> None:
    text = example_text()
    values = [line for line in text.splitlines() if line and not line.startswith(("#", "["))]
    assert values  # and each setting has a comment right above it, or beside it
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert lines[number - 1].startswith("#"), f"no comment above {line!r}"
    assert "`chatops init`" in text and "CHATOPS_CONFIG" in text
    assert all(len(line) <= 100 for line in lines)


def test_init_never_replaces_a_file(shop: RepoBuilder, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = shop.root / "chatops.toml"
    policy.write_text("# ours, by hand\n", encoding="utf-8")
    done = init_in(monkeypatch, shop.root)
    assert done.exit_code == 2
    assert "chatops.toml already exists; nothing was written." in done.stderr
    assert "--output" in done.stderr
    assert policy.read_text(encoding="utf-8") == "# ours, by hand\n"
    assert sorted(p.name for p in shop.root.iterdir()) == [".git", "README.md", "chatops.toml"]


def test_init_outside_a_repository_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = init_in(monkeypatch, tmp_path)
    assert done.exit_code == 2
    assert "is not a git repository" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_elsewhere_names_the_repository_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder name the policy would refuse becomes a usable name; no main, master or
    origin/HEAD leaves the base unset (said in a comment); another folder: an absolute path."""
    repo = RepoBuilder(tmp_path / "My Repo (old)", default_branch="trunk")
    repo.commit({"README.md": "x\n"}, "base")
    repo.branch("feature/a", "trunk")
    out = tmp_path / "conf"
    out.mkdir()
    done = init_in(monkeypatch, out, "--repo", str(repo.root), "-o", "policy.toml")
    assert done.exit_code == 0, done.output
    text = (out / "policy.toml").read_text(encoding="utf-8")
    assert "[repos.My-Repo-old]" in text
    assert '# base = "main"' in text and "\nbase =" not in text
    policy = load_policy(out / "policy.toml", cwd=out)
    assert policy.repos["My-Repo-old"].path == repo.root.resolve()
    assert policy.repos["My-Repo-old"].base is None
    assert policy.repos["My-Repo-old"].protected == ["trunk"]  # no `/`: long-lived


@pytest.mark.parametrize(
    ("folder", "name"),
    [("shop", "shop"), ("My Repo!", "My-Repo"), ("..", "repo"), ("-x-", "x"), ("é" * 3, "repo")],
)
def test_a_folder_name_becomes_a_repository_name(folder: str, name: str) -> None:
    assert repo_name(folder) == name


def test_many_branches_are_counted_and_other_prefixes_named() -> None:
    seen = Seen("shop", ".", "develop", [f"team/b{n}" for n in range(30)] + ["develop"])
    text = policy_text(seen)
    assert "team/b0, team/b1" in text and "and 19 more." in text
    assert "# Also seen here, and written to only if added above: team/*." in text
    assert "the default branch, and main, master, develop" in text
    assert "protected = []" in text  # develop is protected always


def test_write_new_writes_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "chatops.toml"

    def refuse(temp: Path) -> None:
        assert temp.read_text(encoding="utf-8") == "x = 1\n"  # whole before it is checked
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        write_new(target, "x = 1\n", check=refuse)
    assert list(tmp_path.iterdir()) == []

    def someone_else_writes_it(temp: Path) -> None:  # between the first look and the link
        target.write_text("theirs\n", encoding="utf-8")

    with pytest.raises(FileExistsError):
        write_new(target, "x = 1\n", check=someone_else_writes_it)
    assert target.read_text(encoding="utf-8") == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["chatops.toml"]

    with pytest.raises(FileExistsError):
        write_new(target, "x = 1\n")
    assert target.read_text(encoding="utf-8") == "theirs\n"


def test_a_dotted_folder_name_is_one_repository_not_a_nested_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = RepoBuilder(tmp_path / "my.site")
    repo.commit({"README.md": "x\n"}, "base")
    done = init_in(monkeypatch, repo.root)
    assert done.exit_code == 0, done.output
    policy = load_policy(repo.root / "chatops.toml", cwd=repo.root)
    assert list(policy.repos) == ["my.site"]
