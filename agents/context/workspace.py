"""The branch head's changed files on disk, for analyzers that read files; and coverage.

Only the files the branch changed are written (from git's object store, not from a checkout), so
analyzing never touches the user's working tree. Every changed file is either analyzed or listed as
skipped with its reason.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType

from agents.context import files as kinds
from agents.context.git import DiffContext, FileDiff

MAX_FILE_BYTES = 1_000_000


@dataclass
class Workspace:
    root: Path
    analyzed: list[FileDiff] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    def path_of(self, rel: str) -> Path:
        return self.root / rel

    def python_files(self) -> list[FileDiff]:
        return [f for f in self.analyzed if kinds.is_python(f.path)]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def skip_reason(diff: FileDiff) -> str | None:
    """Why a changed file is not analyzed, judged from its name and kind alone."""
    if diff.status == "deleted":
        return "deleted (checked only for removed tests)"
    if diff.is_submodule:
        return "submodule"
    if diff.is_symlink:
        return "symbolic link"
    if diff.binary:
        return "binary"
    if kinds.is_lock_file(diff.path):
        return "lock file (dependency changes are read from the manifest)"
    if kinds.is_vendored(diff.path):
        return "vendored code"
    if kinds.is_generated_name(diff.path):
        return "generated file"
    if not diff.added_lines:
        return "no added lines (renamed or lines removed only)"
    return None


def _safe_relative(path: str) -> bool:
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts


def prepare(diff: DiffContext) -> Workspace:
    """Choose the files to analyze and write their branch-head content to a temporary folder."""
    workspace = Workspace(root=Path(tempfile.mkdtemp(prefix="chatops-ws-")))
    candidates: list[FileDiff] = []
    for file in diff.files:
        reason = skip_reason(file)
        if reason is None and not _safe_relative(file.path):
            reason = "unsafe path"
        if reason:
            workspace.skipped.append((file.path, reason))
        else:
            candidates.append(file)
    blobs = diff.repo.read_objects(f.new_blob for f in candidates if f.new_blob)
    for file in candidates:
        data = blobs.get(file.new_blob or "")
        if data is None:
            workspace.skipped.append((file.path, "content not readable"))
            continue
        if len(data) > MAX_FILE_BYTES:
            workspace.skipped.append((file.path, f"too large ({len(data) // 1000} kB)"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            workspace.skipped.append((file.path, "not UTF-8 text"))
            continue
        if kinds.looks_generated(text):
            workspace.skipped.append((file.path, "generated file (header says so)"))
            continue
        target = workspace.path_of(file.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        workspace.texts[file.path] = text
        workspace.analyzed.append(file)
    return workspace
