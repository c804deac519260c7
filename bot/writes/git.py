"""Commit an approved proposal to its feature branch, with compare-and-swap on the branch head.

The change is built in a scratch index from the proposal's base commit (no checkout, no hooks,
the user's working tree untouched); the branch moves with `git update-ref NEW OLD` (local) or
`git push --force-with-lease=REF:OLD` (a remote), so a branch that moved since the proposal is
never overwritten. Never a force push, a merge or a delete.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from agents.context.git import GitRepo, validate_ref_name
from agents.errors import AnalysisInputError, GitFailure

BOT_IDENTITY = {
    "GIT_AUTHOR_NAME": "chatops",
    "GIT_AUTHOR_EMAIL": "chatops@localhost",
    "GIT_COMMITTER_NAME": "chatops",
    "GIT_COMMITTER_EMAIL": "chatops@localhost",
}


@dataclass(frozen=True)
class WriteRequest:
    repo: Path
    branch: str
    kind: Literal["patch", "new_file"]
    target: str  # the branch for a patch, the path for a new file
    base_sha: str
    content: str
    content_sha256: str
    title: str
    approved_by: str
    requested_by: str
    run_id: str
    remote: bool = False  # a bare mirror of a remote: push to origin instead of update-ref
    # A new branch (`branch_patch`): made at `base_sha` by this write, so it must not exist yet
    # (the compare-and-swap is against "no such branch"); an existing branch is never written.
    create: bool = False
    # Called with the new commit's id before the branch moves; if it raises, nothing moves.
    # The recovery of a worker killed mid-apply reads what it recorded (`landed`).
    record_intent: Callable[[str], None] | None = None


@dataclass(frozen=True)
class WriteResult:
    outcome: Literal["applied", "stale", "failed"]
    detail: str
    commit: str | None = None
    # Failed, but whether anything was written could not be checked: the detail says where.
    unsure: bool = False


# `core.hooksPath` for the bot's own git calls: the repository's hooks (`reference-transaction`
# runs on `update-ref`, `pre-push` on push) never run. /dev/null holds no hooks and no one can
# put one there (a temp folder could be replaced).
NO_HOOKS = os.devnull


def _git(
    repo: Path, args: list[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-c", f"core.hooksPath={NO_HOOKS}", *args],
        cwd=repo,
        input=stdin,
        capture_output=True,
        check=False,
        env={
            **os.environ,
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            **BOT_IDENTITY,
            **(env or {}),
        },
    )


def _out(done: subprocess.CompletedProcess[bytes]) -> str:
    return (done.stderr or done.stdout).decode("utf-8", "replace").strip()


def apply_proposal(request: WriteRequest) -> WriteResult:
    try:
        validate_ref_name(request.branch)
    except AnalysisInputError as exc:
        return WriteResult("failed", exc.message)
    ref = f"refs/heads/{request.branch}"
    if _git(request.repo, ["symbolic-ref", "-q", ref]).returncode == 0:
        return WriteResult("failed", f"{request.branch} is a symbolic ref; it is never written")
    checked_out = _git(request.repo, ["worktree", "list", "--porcelain"]).stdout.decode()
    if not request.remote and f"branch {ref}\n" in checked_out + "\n":
        return WriteResult(
            "failed",
            f"{request.branch} is checked out in a working tree of this "
            "repository; check out another branch there, then approve again",
        )
    digest = hashlib.sha256(request.content.encode("utf-8")).hexdigest()
    if digest != request.content_sha256:
        return WriteResult("failed", "the proposal's content changed after it was shown")
    head = _git(
        request.repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
    )
    if request.create:
        if head.returncode == 0:
            return WriteResult(
                "failed",
                f"branch {request.branch} already exists; a new branch is never an "
                "existing one, nothing written",
            )
    elif head.returncode != 0:
        return WriteResult("failed", f"branch {request.branch} no longer exists")
    elif head.stdout.decode().strip() != request.base_sha:
        return WriteResult(
            "stale",
            f"{request.branch} moved since the proposal was made "
            f"(now {head.stdout.decode().strip()[:10]})",
        )
    with tempfile.TemporaryDirectory(prefix="chatops-write-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        done = _git(request.repo, ["read-tree", "--end-of-options", request.base_sha], env=env)
        if done.returncode != 0:
            return WriteResult("failed", f"cannot read {request.base_sha[:10]}: {_out(done)}")
        built = _stage(request, env)
        if built is not None:
            return built
        tree = _git(request.repo, ["write-tree"], env=env)
        if tree.returncode != 0:
            return WriteResult("failed", f"cannot write the tree: {_out(tree)}")
    message = (
        f"{request.title}\n\nApplied by chatops after approval.\n\n"
        f"Approved-by: {request.approved_by}\nRequested-by: {request.requested_by}\n"
        f"Chatops-Run: {request.run_id}\n"
    )
    commit = _git(
        request.repo,
        ["commit-tree", tree.stdout.decode().strip(), "-p", request.base_sha, "-F", "-"],
        stdin=message.encode(),
    )
    if commit.returncode != 0:
        return WriteResult("failed", f"cannot commit: {_out(commit)}")
    new = commit.stdout.decode().strip()
    if request.record_intent is not None:
        request.record_intent(new)
    return _move(request, ref, new)


def _stage(request: WriteRequest, env: dict[str, str]) -> WriteResult | None:
    if request.kind == "patch":
        problem = GitRepo(request.repo).patch_problem(request.base_sha, request.content)
        if problem is not None:
            return WriteResult("failed", f"the patch is refused: {problem}")
        done = _git(
            request.repo,
            ["apply", "--cached", "--whitespace=nowarn", "-"],
            env=env,
            stdin=request.content.encode("utf-8"),
        )
        if done.returncode != 0:
            return WriteResult("failed", f"the patch does not apply: {_out(done)[:300]}")
        return None
    path = PurePosixPath(request.target)
    if (
        path.is_absolute()
        or ".." in path.parts
        or not request.target
        or request.target.startswith(".git")
    ):
        return WriteResult("failed", f"{request.target!r} is not a plain relative path")
    exists = _git(request.repo, ["cat-file", "-e", f"{request.base_sha}:{request.target}"])
    if exists.returncode == 0:
        return WriteResult("failed", f"{request.target} already exists on the branch")
    blob = _git(request.repo, ["hash-object", "-w", "--stdin"], stdin=request.content.encode())
    if blob.returncode != 0:
        return WriteResult("failed", f"cannot store the file: {_out(blob)}")
    done = _git(
        request.repo,
        [
            "update-index",
            "--add",
            "--cacheinfo",
            f"100644,{blob.stdout.decode().strip()},{request.target}",
        ],
        env=env,
    )
    if done.returncode != 0:
        return WriteResult("failed", f"cannot stage {request.target}: {_out(done)}")
    return None


def _move(request: WriteRequest, ref: str, new: str) -> WriteResult:
    if request.remote:
        done = _git(
            request.repo,
            [
                "push",
                "--porcelain",
                f"--force-with-lease={ref}:{'' if request.create else request.base_sha}",
                "origin",
                f"{new}:{ref}",
            ],
        )
        if done.returncode != 0:
            said = (done.stdout + b"\n" + done.stderr).decode("utf-8", "replace")
            if request.create and ("stale info" in said or "rejected" in said):
                return WriteResult(
                    "failed",
                    f"branch {request.branch} already exists on the remote; a new branch is "
                    "never an existing one, nothing written",
                )
            if "stale info" in said or "rejected" in said:
                return WriteResult("stale", f"{request.branch} moved on the remote")
            return WriteResult("failed", f"push failed: {_out(done)[:300]}")
        _git(request.repo, ["update-ref", "--no-deref", ref, new, _old(request)])
        return WriteResult("applied", f"pushed {new[:10]} to {request.branch}", new)
    done = _git(
        request.repo,
        [
            "update-ref",
            "--no-deref",
            "-m",
            f"chatops: run {request.run_id}",
            ref,
            new,
            _old(request),
        ],
    )
    if done.returncode != 0:
        return WriteResult("stale", f"{request.branch} moved while applying; nothing written")
    return WriteResult("applied", f"committed {new[:10]} to {request.branch}", new)


def _old(request: WriteRequest) -> str:
    """The value the branch must have for the move: its base, or none at all for a new one."""
    return "" if request.create else request.base_sha


def landed(repo: Path, branch: str, commit: str) -> bool:
    """Is `commit` on `branch` (its head, or under commits added since)? For a remote, `repo`
    is the mirror, fetched first, so this is the remote's branch."""
    ref = f"refs/heads/{branch}"
    head = _git(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"])
    if head.returncode != 0:
        return False
    done = _git(repo, ["merge-base", "--is-ancestor", "--end-of-options", commit, ref])
    return done.returncode == 0


def remote_head(repo: Path, branch: str) -> str | None:
    """The commit `branch` has on the `origin` remote now (asked of it), or None."""
    done = _git(repo, ["ls-remote", "--heads", "origin", f"refs/heads/{branch}"])
    if done.returncode != 0:
        said = (_out(done).splitlines() or ["no answer"])[0]
        raise GitFailure(f"cannot ask the remote for {branch}: {said[:200]}")
    first = done.stdout.decode().split("\t", 1)[0].strip()
    return first or None
