"""Where a configured repository lives on this machine: its local path, or a clone of its URL in
the data directory, fetched before each run."""

from __future__ import annotations

from pathlib import Path

from agents.context.git import clone_or_fetch
from bot.config import RepoConfig


class RepoResolver:
    def __init__(self, data_dir: Path) -> None:
        self.clones = data_dir / "repos"

    def clone_path(self, name: str) -> Path:
        return self.clones / name

    def prepare(self, name: str, config: RepoConfig) -> Path:
        if config.path is not None:
            return config.path
        assert config.url is not None
        return clone_or_fetch(config.url, self.clone_path(name))
