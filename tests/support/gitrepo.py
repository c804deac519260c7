"""Real git repositories in temp folders, built commit by commit."""

from __future__ import annotations

import subprocess
from pathlib import Path


class RepoBuilder:
    def __init__(self, root: Path, default_branch: str = "main") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", default_branch)
        self.git("config", "user.email", "dev@example.invalid")
        self.git("config", "user.name", "Dev")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, check=True, capture_output=True, text=True
        ).stdout

    def write(self, files: dict[str, str | bytes | None]) -> None:
        for name, content in files.items():
            path = self.root / name
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")

    def commit(self, files: dict[str, str | bytes | None], message: str = "change") -> str:
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref).strip()

    def branch(self, name: str, start: str = "HEAD") -> None:
        self.git("checkout", "-q", "-b", name, start)

    def checkout(self, name: str) -> None:
        self.git("checkout", "-q", name)

    def snapshot(self) -> str:
        """Every ref, the index and the working tree's status: equal snapshots, no side effect."""
        refs = self.git("for-each-ref", "--format=%(refname) %(objectname)")
        status = self.git("status", "--porcelain", "--ignored")
        files = sorted(
            str(p.relative_to(self.root)) for p in self.root.rglob("*") if ".git" not in p.parts
        )
        return refs + status + "\n".join(files)
