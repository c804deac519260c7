"""A repository hosted on a fake GitHub: the remote (a real bare repository), a developer's
clone pushing to it, the bot's own clone, and a pull request #7 from the planted branch."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.settings import Settings
from tests.support.fakes.github_api import TOKEN, FakeGitHub
from tests.support.gitrepo import RepoBuilder


@dataclass
class Hosted:
    dev: RepoBuilder  # a developer's clone, pushing to the remote
    bare: Path  # the remote (GitHub's side)
    clone: Path  # the bot's clone
    fake: FakeGitHub
    tmp: Path

    def push(self, files: dict[str, str | bytes | None], message: str = "more") -> str:
        self.dev.checkout("feature/pr")
        sha = self.dev.commit(files, message)
        self.dev.git("push", "-q", "origin", "feature/pr")
        self.dev.checkout("main")
        return sha

    def settings(self, policy_extra: str = "", **extra: object) -> Settings:
        policy = self.tmp / "chatops.toml"
        policy.write_text(
            f'[repos.shop]\npath = "{self.clone}"\ngithub = "org/shop"\n{policy_extra}',
            encoding="utf-8",
        )
        values: dict[str, object] = {
            "chatops_data_dir": self.tmp / "data",
            "chatops_config": policy,
            "github_token": TOKEN,
            "github_api_url": self.fake.url,
            **extra,
        }
        return Settings.model_validate(values)


@contextmanager
def hosting(
    repo: RepoBuilder, tmp_path: Path, planted: dict[str, str | bytes | None]
) -> Iterator[Hosted]:
    """The planted branch pushed as pull request #7 of org/shop on a fake GitHub, whose remote
    is a real bare repository; the bot's clone of it; the `[repos.shop]` settings."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.root), str(bare)], check=True)
    repo.git("remote", "add", "origin", str(bare))
    repo.branch("feature/pr")
    repo.commit(planted, "planted problems")
    repo.git("push", "-q", "origin", "feature/pr")
    repo.checkout("main")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    # The bot's clone has no branch feature/pr and no pull refs: only the fetch brings them.
    with FakeGitHub() as fake:
        fake.add_project("org/shop", bare)
        fake.open_pull("org/shop", 7, "feature/pr")
        yield Hosted(repo, bare, clone, fake, tmp_path)
