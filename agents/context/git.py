"""A branch to a `DiffContext`. The only module that runs git.

Every name a user typed is validated before git sees it (`validate_ref_name`), and after that only
fully qualified refs and commit ids reach git, after `--end-of-options` where git parses options.
Commands are argv lists; no shell is ever involved.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

from agents.errors import AnalysisInputError, GitFailure, shown

# Letters, digits and the punctuation branch names really use. Everything else (spaces, `@`, `{`,
# `~`, `^`, `:`, `?`, `*`, `[`, `\`, quotes, control and non-ASCII characters) is refused, so
# reflog syntax such as `@{-1}`, revision ranges and look-alike Unicode never reach git.
_REF_ALLOWED = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,199}")
_GIT_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}


def validate_ref_name(name: str, *, what: str = "branch") -> None:
    """Refuse a user-supplied branch name unless it is plainly a branch name.

    Three gates: the allowlist, no leading `-` (implied by the allowlist), and git's own
    `check-ref-format --branch`, which refuses `a..b`, `x.lock`, `a//b` and the like.
    """
    if not _REF_ALLOWED.fullmatch(name):
        raise AnalysisInputError(
            f"{shown(name)!r} is not a valid {what} name.",
            "Use letters, digits and . _ / + - only, starting with a letter or digit "
            "(for example feature/login-rate-limit).",
        )
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        capture_output=True,
        env=_git_env(),
        check=False,
    )
    if done.returncode != 0:
        raise AnalysisInputError(
            f"{shown(name)!r} is not a valid {what} name.",
            "Branch names cannot contain '..', end in '.lock' or '/', or contain '//'.",
        )


# `NAME~N` as a base: the commit N first parents back from NAME. The only revision syntax a user
# may type, and only for a base; NAME goes through `validate_ref_name`, N is 1 to 9999.
_ANCESTOR = re.compile(r"(?P<name>.+)~(?P<back>[1-9][0-9]{0,3})")


def split_ancestor(name: str) -> tuple[str, int]:
    """`main~3` -> ("main", 3); any other name -> (name, 0)."""
    found = _ANCESTOR.fullmatch(name)
    return (found["name"], int(found["back"])) if found else (name, 0)


def validate_base_name(name: str) -> None:
    """A base as `resolve_base` takes it: a branch name, or `NAME~N`."""
    validate_ref_name(split_ancestor(name)[0], what="base branch")


def _git_env() -> dict[str, str]:
    return {**os.environ, **_GIT_ENV}


FileStatus = Literal["added", "modified", "deleted", "renamed", "copied", "type_changed"]
_STATUS = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type_changed",
}
_ZERO_SHA = "0" * 40
_HUNK_HEADER = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)")


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    section: str
    # (tag, text): tag is " " (context), "+" (added) or "-" (removed); text has no newline.
    lines: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FileDiff:
    path: str
    old_path: str | None
    status: FileStatus
    old_mode: str
    new_mode: str
    old_blob: str | None
    new_blob: str | None
    binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)
    patch: str = ""

    @property
    def is_symlink(self) -> bool:
        return self.new_mode == "120000"

    @property
    def is_submodule(self) -> bool:
        return "160000" in (self.new_mode, self.old_mode)

    @cached_property
    def added_lines(self) -> dict[int, str]:
        """New-file line number to text, for every line this branch added or changed."""
        added: dict[int, str] = {}
        for hunk in self.hunks:
            number = hunk.new_start
            for tag, text in hunk.lines:
                if tag == "+":
                    added[number] = text
                    number += 1
                elif tag == " ":
                    number += 1
        return added

    @cached_property
    def removed_lines(self) -> list[str]:
        return [text for hunk in self.hunks for tag, text in hunk.lines if tag == "-"]

    def changed_in(self, start: int, end: int | None = None) -> bool:
        """True when any line in [start, end] was added or changed by the branch."""
        last = end if end is not None and end >= start else start
        return any(line in self.added_lines for line in range(start, last + 1))


@dataclass
class DiffContext:
    repo: GitRepo
    branch: str
    base: str
    head_sha: str
    base_sha: str  # the merge-base: what the diff is taken from
    files: list[FileDiff]

    @property
    def repo_label(self) -> str:
        return str(self.repo.root)

    @cached_property
    def _by_path(self) -> dict[str, FileDiff]:
        return {f.path: f for f in self.files}

    def file(self, path: str) -> FileDiff | None:
        return self._by_path.get(path)


@dataclass(frozen=True)
class ResolvedRef:
    name: str  # as the user typed it
    ref: str  # fully qualified, e.g. refs/heads/feature/x
    sha: str


class GitRepo:
    """A local repository, driven through the git binary with argv lists only."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> GitRepo:
        target = Path(path).expanduser()
        if not target.exists():
            raise AnalysisInputError(
                f"{target} does not exist.", "Pass --repo PATH to a git clone."
            )
        not_a_repo = AnalysisInputError(
            f"{target.resolve()} is not a git repository.",
            "Run it inside a clone, or pass --repo PATH.",
        )
        if not target.is_dir():
            raise not_a_repo

        refused: list[str] = []

        def ask(*args: str) -> str | None:
            done = subprocess.run(
                ["git", "rev-parse", *args],
                cwd=target,
                capture_output=True,
                env=_git_env(),
                check=False,
            )
            if done.returncode != 0:
                refused.append(done.stderr.decode("utf-8", "replace").strip())
                return None
            return done.stdout.decode("utf-8", "surrogateescape")

        # git finds the repository from any folder inside it, as it does for its own commands.
        found = ask("--is-bare-repository", "--absolute-git-dir")
        if found is None:
            if any("dubious ownership" in why for why in refused):
                # A clone owned by another user: git refuses it until it is marked safe.
                raise AnalysisInputError(
                    f"git refuses {target.resolve()}: it is owned by another user.",
                    f"Add {target.resolve()} to `safe.directory` in git's global config, "
                    "or run as its owner.",
                )
            raise not_a_repo
        bare, git_dir = found.rstrip("\n").split("\n", 1)
        if bare == "true":
            return cls(Path(git_dir).resolve())
        top = ask("--show-toplevel")
        if top is None:  # inside the .git folder itself: its work tree is the folder above
            return cls(Path(git_dir).resolve().parent)
        return cls(Path(top.rstrip("\n")).resolve())

    def run(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            ["git", *args],
            cwd=self.root,
            input=stdin,
            capture_output=True,
            env={**_git_env(), **(env or {})},
            check=False,
        )
        if check and done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise GitFailure(f"git {args[0]} failed: {message}")
        return done

    def _text(self, args: Sequence[str]) -> str:
        return self.run(args).stdout.decode("utf-8", "surrogateescape")

    # -- refs ---------------------------------------------------------------------------------

    def _verify(self, ref: str) -> str | None:
        done = self.run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
            check=False,
        )
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def resolve(self, name: str, *, what: str = "branch") -> ResolvedRef:
        """A validated branch name to its qualified ref: a local branch, else a remote one."""
        validate_ref_name(name, what=what)
        for ref in (f"refs/heads/{name}", f"refs/remotes/{name}", f"refs/remotes/origin/{name}"):
            sha = self._verify(ref)
            if sha:
                return ResolvedRef(name=name, ref=ref, sha=sha)
        close = difflib.get_close_matches(name, self.branch_names(), n=3, cutoff=0.5)
        hint = (
            f"Did you mean: {', '.join(close)}?" if close else "List branches with `git branch -a`."
        )
        # No path in the message: it reaches chat users, to whom the server's folders are not
        # theirs to see. Surfaces name the repository as the user named it.
        raise AnalysisInputError(f"No {what} named {name!r}.", hint)

    def resolve_base(self, name: str) -> ResolvedRef:
        """A base: a branch name as `resolve` takes it, or `NAME~N`, the commit N first parents
        before NAME's head (`main~3`: what main's last 3 commits changed). Only the validated
        NAME and git's own commit id reach git, never the `~N` the user typed."""
        branch, back = split_ancestor(name)
        ref = self.resolve(branch, what="base branch")
        if not back:
            return ref
        sha = self._verify(f"{ref.sha}~{back}")
        if sha is None:
            count = int(self._text(["rev-list", "--first-parent", "--count", ref.sha]))
            raise AnalysisInputError(
                f"{branch} has {count} commit(s): there is no {name}.",
                f"Go back fewer commits: `--base {branch}~{count - 1}` is its first."
                if count > 1
                else f"{branch}'s only commit has nothing before it to compare with.",
            )
        return ResolvedRef(name=name, ref=f"{ref.ref}~{back}", sha=sha)

    def head_commit(self) -> str:
        """The commit checked out (HEAD), for commands that default to "here"."""
        sha = self._verify("HEAD")
        if sha is None:
            raise AnalysisInputError(f"{self.root} has no commits yet.", "Commit something first.")
        return sha

    def branch_names(self) -> list[str]:
        out = self._text(
            ["for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes"]
        ).splitlines()
        names = []
        for ref in out:
            if ref.endswith("/HEAD"):
                continue
            names.append(ref.removeprefix("refs/heads/").removeprefix("refs/remotes/"))
        return names

    def default_branch(self) -> str:
        """`origin/HEAD`'s target, else `main`, else `master`."""
        done = self.run(["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"], check=False)
        if done.returncode == 0:
            return done.stdout.decode().strip().removeprefix("refs/remotes/")
        for name in ("main", "master"):
            if self._verify(f"refs/heads/{name}"):
                return name
        raise AnalysisInputError(
            "Cannot tell the repository's default branch: no origin/HEAD, main or master.",
            "Pass `--base BASE`, the branch to compare with.",
        )

    def default_branch_names(self) -> list[str]:
        """Every name this repository's default branch goes by here: origin/HEAD's target, a
        bare mirror's HEAD, and the main/master fallback; without any remote prefix."""
        names: list[str] = []
        done = self.run(["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"], check=False)
        if done.returncode == 0:
            names.append(done.stdout.decode().strip().removeprefix("refs/remotes/origin/"))
        bare = self.run(["rev-parse", "--is-bare-repository"], check=False)
        if bare.stdout.decode().strip() == "true":
            head = self.run(["symbolic-ref", "--quiet", "HEAD"], check=False)
            if head.returncode == 0:
                names.append(head.stdout.decode().strip().removeprefix("refs/heads/"))
        with contextlib.suppress(AnalysisInputError):
            names.append(self.default_branch().removeprefix("origin/"))
        return sorted(set(names))

    def merge_base(self, a: str, b: str) -> str | None:
        done = self.run(["merge-base", "--end-of-options", a, b], check=False)
        return done.stdout.decode().strip() if done.returncode == 0 else None

    # -- content ------------------------------------------------------------------------------

    def read_objects(self, specs: Iterable[str]) -> dict[str, bytes | None]:
        """Object ids (or `commit:path` specs without newlines) to their content, in one call."""
        wanted = [s for s in dict.fromkeys(specs) if "\n" not in s]
        if not wanted:
            return {}
        out = self.run(["cat-file", "--batch"], stdin="".join(f"{s}\n" for s in wanted).encode())
        data = out.stdout
        result: dict[str, bytes | None] = {}
        pos = 0
        for spec in wanted:
            end = data.index(b"\n", pos)
            header = data[pos:end].decode("utf-8", "surrogateescape")
            pos = end + 1
            if header.endswith(" missing") or header.endswith(" ambiguous"):
                result[spec] = None
                continue
            size = int(header.rsplit(" ", 1)[1])
            result[spec] = data[pos : pos + size]
            pos += size + 1
        return result

    def read_file(self, commit: str, path: str) -> bytes | None:
        return self.read_objects([f"{commit}:{path}"]).get(f"{commit}:{path}")

    def list_files(self, commit: str) -> list[str]:
        out = self.run(["ls-tree", "-r", "-z", "--name-only", "--end-of-options", commit]).stdout
        return sorted(out.decode("utf-8", "surrogateescape").split("\0")[:-1])

    def grep_words(self, commit: str, words: Iterable[str], pathspecs: Sequence[str]) -> set[str]:
        """Which of `words` occur as whole words in files matching `pathspecs` at `commit`."""
        patterns = sorted(set(words))
        if not patterns:
            return set()
        done = self.run(
            [
                "grep",
                "-I",
                "-F",
                "-w",
                "-o",
                "-h",
                "--no-color",
                "--no-line-number",
                "--no-column",
                "-f",
                "-",
                commit,
                "--",
                *pathspecs,
            ],
            stdin="\n".join(patterns).encode() + b"\n",
            check=False,
        )
        if done.returncode not in (0, 1):
            raise GitFailure(f"git grep failed: {done.stderr.decode('utf-8', 'replace').strip()}")
        found = done.stdout.decode("utf-8", "surrogateescape").splitlines()
        return {line.split(":", 1)[-1] for line in found}

    def files_with_words(
        self, commit: str, words: Iterable[str], pathspecs: Sequence[str], most: int = 200
    ) -> list[str]:
        """The files matching `pathspecs` at `commit` in which any of `words` occurs as a whole
        word (sorted, at most `most`): where a flag key is read, without reading every file."""
        patterns = sorted(set(words))
        if not patterns:
            return []
        done = self.run(
            ["grep", "-I", "-F", "-w", "-l", "--no-color", "-f", "-", commit, "--", *pathspecs],
            stdin="\n".join(patterns).encode() + b"\n",
            check=False,
        )
        if done.returncode not in (0, 1):
            raise GitFailure(f"git grep failed: {done.stderr.decode('utf-8', 'replace').strip()}")
        names = done.stdout.decode("utf-8", "surrogateescape").splitlines()
        # `git grep` names each file `COMMIT:path`.
        return sorted({name.split(":", 1)[-1] for name in names})[:most]

    def file_history(self, commit: str, path: str, most: int = 100) -> list[tuple[str, int, str]]:
        """The newest `most` commits reachable from `commit` that changed `path`, newest first:
        (commit id, committer time in epoch seconds, the patch of `path` in that commit)."""
        if "\0" in path:  # the path goes after `--`, so a leading `-` is a path too
            return []
        done = self.run(
            [
                "log",
                f"--max-count={most}",
                "--format=%x00commit %H %ct",
                "-p",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",  # a repository's configured converter must never run
                "--unified=0",
                "--end-of-options",
                commit,
                "--",
                path,
            ],
            check=False,
        )
        if done.returncode != 0:
            return []
        out: list[tuple[str, int, str]] = []
        for block in done.stdout.decode("utf-8", "replace").split("\0commit ")[1:]:
            head, _, patch = block.partition("\n")
            sha, _, when = head.partition(" ")
            out.append((sha.strip(), int(when.strip() or 0), patch))
        return out

    def commit_time(self, commit: str) -> int:
        """The committer time of `commit`, epoch seconds (0 when it cannot be read)."""
        done = self.run(["show", "-s", "--format=%ct", "--end-of-options", commit], check=False)
        text = done.stdout.decode().strip()
        return int(text) if done.returncode == 0 and text.isdigit() else 0

    def patch_problem(self, commit: str, patch: str, allowed: set[str] | None = None) -> str | None:
        """Why `patch` must not be offered or applied, or None. A patch may only modify the text
        of existing regular files (in `allowed`, when given): no binary sections, no created,
        deleted or renamed files, no mode changes, no symbolic links; those could hide a
        change a reviewer cannot see in the diff."""
        done = self.run(
            ["apply", "-z", "--numstat", "--summary", "-"], stdin=patch.encode("utf-8"), check=False
        )
        if done.returncode != 0:
            return f"not a valid patch ({done.stderr.decode('utf-8', 'replace').strip()[:200]})"
        paths: list[str] = []
        # -z: "added<TAB>removed<TAB>path" entries end in NUL, paths unquoted; any summary
        # (create, delete, rename, mode change) follows as lines starting with a space.
        for entry in done.stdout.decode("utf-8", "surrogateescape").split("\0"):
            if not entry:
                continue
            if entry.startswith(" "):
                return f"it changes more than file contents ({entry.strip().splitlines()[0]})"
            added, removed, path = entry.split("\t", 2)
            if added == "-" or removed == "-":
                return f"it has a binary section ({path})"
            paths.append(path)
        if not paths:
            return "it changes nothing"
        for path in paths:
            if allowed is not None and path not in allowed:
                return f"it touches {path}, which it does not declare"
        modes = self.modes(commit, paths)
        for path in paths:
            if modes.get(path) not in ("100644", "100755"):
                return f"{path} is not an existing regular file at {commit[:10]}"
        return None

    def modes(self, commit: str, paths: list[str]) -> dict[str, str]:
        """Each path's mode at `commit` (a path not there is left out): one git call per 500
        paths, not one per path (a patch of ruff's fixes can touch hundreds of files)."""
        modes: dict[str, str] = {}
        for start in range(0, len(paths), 500):
            listed = self.run(
                ["ls-tree", "-z", "--end-of-options", commit, "--", *paths[start : start + 500]],
                check=False,
            )
            for entry in listed.stdout.decode("utf-8", "surrogateescape").split("\0"):
                meta, tab, path = entry.partition("\t")
                if tab:
                    modes[path] = meta.split(" ", 1)[0]
        return modes

    def apply_check(self, commit: str, patch: str) -> tuple[bool, str]:
        """Does `patch` apply cleanly to `commit`? Checked in a scratch index; writes nothing."""
        with tempfile.TemporaryDirectory(prefix="chatops-index-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self.run(["read-tree", "--end-of-options", commit], env=env)
            done = self.run(
                ["apply", "--check", "--cached", "-"],
                stdin=patch.encode("utf-8"),
                env=env,
                check=False,
            )
        return done.returncode == 0, done.stderr.decode("utf-8", "replace").strip()

    # -- diff ---------------------------------------------------------------------------------

    def diff(self, old: str, new: str) -> list[FileDiff]:
        common = ["-M", "--no-ext-diff", "--no-textconv", "--no-relative", "--end-of-options"]
        raw = self.run(["diff", "-z", "--raw", "--no-abbrev", *common, old, new]).stdout
        patch = self.run(
            [
                "diff",
                "-U3",
                "--no-color",
                "--submodule=short",  # diff.submodule=log would print blocks with no header
                "--src-prefix=a/",
                "--dst-prefix=b/",
                *common,
                old,
                new,
            ]
        ).stdout.decode("utf-8", "surrogateescape")
        entries = _parse_raw(raw)
        blocks = _split_patch(patch)
        files: list[FileDiff] = []
        cursor = 0
        for entry in entries:
            # A type change (file <-> symlink) is one raw entry but two patch blocks.
            taken = 2 if entry.status == "type_changed" else 1
            text = "".join(blocks[cursor : cursor + taken])
            cursor += taken
            entry.patch = text
            entry.binary = _is_binary_patch(text)
            entry.hunks = [] if entry.binary else _parse_hunks(text)
            files.append(entry)
        return files


def _parse_raw(raw: bytes) -> list[FileDiff]:
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    files: list[FileDiff] = []
    i = 0
    while i < len(fields) and fields[i]:
        meta = fields[i].lstrip(":").split(" ")
        old_mode, new_mode, old_sha, new_sha, code = meta[0], meta[1], meta[2], meta[3], meta[4]
        letter = code[0]
        if letter in ("R", "C"):
            old_path, path = fields[i + 1], fields[i + 2]
            i += 3
        else:
            old_path, path = fields[i + 1], fields[i + 1]
            i += 2
        status: FileStatus = _STATUS.get(letter, "modified")  # type: ignore[assignment]
        files.append(
            FileDiff(
                path=path,
                old_path=old_path if letter != "A" else None,
                status=status,
                old_mode=old_mode,
                new_mode=new_mode,
                old_blob=None if old_sha == _ZERO_SHA else old_sha,
                new_blob=None if new_sha == _ZERO_SHA else new_sha,
            )
        )
    return files


def _split_patch(patch: str) -> list[str]:
    blocks: list[str] = []
    current: list[str] = []
    # Split on "\n" only: str.splitlines would also break at \r, \f and friends inside content.
    lines = patch.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        if line.startswith("diff --git ") and current:
            blocks.append("".join(current))
            current = []
        current.append(line + "\n")
    if current:
        blocks.append("".join(current))
    return blocks


def _is_binary_patch(block: str) -> bool:
    for line in block.splitlines():
        if line.startswith("@@"):
            return False
        if line.startswith("Binary files ") or line == "GIT binary patch":
            return True
    return False


def _parse_hunks(block: str) -> list[Hunk]:
    hunks: list[Hunk] = []
    current: Hunk | None = None
    lines = block.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        if line.startswith("diff --git "):
            current = None  # a type change is two blocks: the second's headers are no hunk lines
            continue
        if line.startswith("@@"):
            match = _HUNK_HEADER.match(line)
            if not match:
                continue
            old_start, old_count, new_start, new_count, section = match.groups()
            current = Hunk(
                old_start=int(old_start),
                old_count=int(old_count) if old_count is not None else 1,
                new_start=int(new_start),
                new_count=int(new_count) if new_count is not None else 1,
                section=section.strip(),
            )
            hunks.append(current)
        elif current is not None and line[:1] in ("+", "-", " "):
            current.lines.append((line[0], line[1:]))
        elif current is not None and line == "":
            # diff.suppressBlankEmpty writes an empty context line as "" instead of " ".
            current.lines.append((" ", ""))
    return hunks


def load_diff(repo: GitRepo, branch: str, base: str | None = None) -> DiffContext:
    """Resolve and validate both names, then diff the branch against its merge-base with base."""
    return diff_of(resolve_range(repo, branch, base))


def resolve_range(repo: GitRepo, branch: str, base: str | None = None) -> DiffContext:
    """The branch's head and its merge-base with base, both names validated, without the
    diff itself (`files` empty): enough to know which commits a report is about."""
    head = repo.resolve(branch, what="branch")
    base_name = base if base is not None else repo.default_branch()
    base_ref = repo.resolve_base(base_name)
    if head.ref == base_ref.ref:
        raise AnalysisInputError(
            f"The branch and the base are the same ({base_ref.name}).",
            "Name a feature branch, or pass `--base BASE`, the branch it was made from"
            + _last_commits(repo, branch),
        )
    merge_base = repo.merge_base(base_ref.sha, head.sha)
    if merge_base is None:
        raise AnalysisInputError(
            f"{branch} and {base_ref.name} share no history.",
            "Pass `--base BASE`, the branch it was made from.",
        )
    if merge_base == head.sha:
        raise AnalysisInputError(
            f"Nothing changed: {branch} has no commits that {base_ref.name} does not have.",
            "Commit to the branch first, or pass `--base BASE`, the branch it was made from"
            + _last_commits(repo, branch),
        )
    return DiffContext(
        repo=repo,
        branch=branch,
        base=base_ref.name,
        head_sha=head.sha,
        base_sha=merge_base,
        files=[],
    )


def last_commits(repo: GitRepo, branch: str, most: int = 3) -> int:
    """How many of `branch`'s newest first-parent commits `NAME~N` can reach back over (at most
    `most`; 0 for a branch of one commit, or one that does not resolve)."""
    try:
        head = repo.resolve(branch)
    except AnalysisInputError:
        return 0
    done = repo.run(["rev-list", "--first-parent", "--count", head.sha], check=False)
    count = int(done.stdout.decode().strip() or 0) if done.returncode == 0 else 0
    return max(0, min(most, count - 1))


def _last_commits(repo: GitRepo, branch: str) -> str:
    """The end of a hint: how to analyze the branch's own last commits, when it has some."""
    back = last_commits(repo, branch)
    if not back:
        return "."
    commits = "commit" if back == 1 else f"{back} commits"
    return f" (`--base {branch}~{back}`: the last {commits} of {branch})."


def diff_of(commits: DiffContext) -> DiffContext:
    """The range's changed files, read from git."""
    files = commits.repo.diff(commits.base_sha, commits.head_sha)
    if not files:
        raise AnalysisInputError(
            f"Nothing changed: {commits.branch} has the same files as {commits.base}.",
            "There is nothing to analyze.",
        )
    return replace(commits, files=files)


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parent: str | None  # the first parent; None for a root commit
    subject: str


def first_parent_history(
    repo: GitRepo, head_sha: str, *, last: int | None = None, since: str | None = None
) -> list[CommitInfo]:
    """The first-parent history ending at `head_sha`, oldest first: the newest `last` commits,
    or those since `since` (an ISO date the caller checked). Both are bounds; neither: all."""
    args = ["log", "--first-parent", "-z", "--format=%H%x1f%P%x1f%s"]
    if last is not None:
        args.append(f"--max-count={int(last)}")
    if since is not None:
        args.append(f"--since={since}")
    out = repo.run([*args, "--end-of-options", head_sha]).stdout.decode("utf-8", "replace")
    commits: list[CommitInfo] = []
    for record in out.split("\0"):
        if not record.strip():
            continue
        sha, parents, subject = (record.strip("\n").split("\x1f") + ["", ""])[:3]
        first = parents.split()[0] if parents.split() else None
        commits.append(CommitInfo(sha=sha, parent=first, subject=subject))
    commits.reverse()
    return commits


def load_commit(repo: GitRepo, commit: CommitInfo) -> DiffContext:
    """One commit against its first parent, as a `DiffContext` (the commit is the head)."""
    assert commit.parent is not None
    return DiffContext(
        repo=repo,
        branch=commit.sha[:12],
        base=commit.parent[:12],
        head_sha=commit.sha,
        base_sha=commit.parent,
        files=repo.diff(commit.parent, commit.sha),
    )


_REVIEW_HEAD = re.compile(r"refs/(pull|merge-requests)/([1-9][0-9]{0,9})/head")


def fetch_review_head(repo: GitRepo, head_ref: str, base: str) -> tuple[str, str, str]:
    """A pull request's head and its base branch, fetched from `origin`: `head_ref` is the
    ref the code host keeps for it (GitHub's `refs/pull/N/head`, forks' pull requests too;
    GitLab's `refs/merge-requests/N/head`), stored as `refs/remotes/origin/pr/N`; the base as
    `refs/remotes/origin/BASE`. Returns the names to analyze (`pr/N`, `origin/BASE`) and the
    head's commit. Only a ref of that shape and a validated base name reach git."""
    found = _REVIEW_HEAD.fullmatch(head_ref)
    if found is None:
        raise AnalysisInputError(f"{shown(head_ref)!r} is not a pull request's head ref.")
    validate_ref_name(base, what="base branch")
    number = found.group(2)
    local = f"refs/remotes/origin/pr/{number}"
    done = repo.run(
        [
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "origin",
            f"+{head_ref}:{local}",
            f"+refs/heads/{base}:refs/remotes/origin/{base}",
        ],
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise GitFailure(f"cannot fetch pull request {number} from origin: {message}")
    sha = repo._verify(local)
    assert sha is not None
    branch = f"pr/{number}"
    if repo.resolve(branch).sha != sha:  # a local branch of that name comes first
        raise AnalysisInputError(
            f"A local branch named {branch} hides the pull request's head.",
            f"Rename that branch (git branch -m {branch} OTHER) and ask again.",
        )
    return branch, f"origin/{base}", sha


def clone_or_fetch(url: str, dest: Path) -> Path:
    """A bare mirror of a configured remote in `dest`, brought up to date. The URL comes from
    the server's policy file, never from a user; it is still passed after `--`."""
    env = _git_env()
    if not (dest / "HEAD").exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["git", "clone", "--bare", "--quiet", "--", url, str(dest)],
            capture_output=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise GitFailure(
                f"cannot clone {url}: {done.stderr.decode('utf-8', 'replace').strip()}"
            )
    done = subprocess.run(
        ["git", "fetch", "--quiet", "--prune", "origin", "+refs/heads/*:refs/heads/*"],
        cwd=dest,
        capture_output=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise GitFailure(f"cannot fetch {url}: {done.stderr.decode('utf-8', 'replace').strip()}")
    # Follow the remote's default branch, which fetch never updates in a bare clone: it is
    # protected, so it must be the current one.
    remote_head = subprocess.run(
        ["git", "ls-remote", "--symref", "origin", "HEAD"],
        cwd=dest,
        capture_output=True,
        env=env,
        check=False,
    ).stdout.decode("utf-8", "replace")
    for line in remote_head.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            branch_ref = line.removeprefix("ref: ").split("\t", 1)[0]
            subprocess.run(
                ["git", "symbolic-ref", "HEAD", branch_ref],
                cwd=dest,
                env=env,
                capture_output=True,
                check=False,
            )
    return dest
