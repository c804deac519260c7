"""Benchmark: `chatops analyze` on a large branch against the raw tools it runs.

Generates a repository whose branch changes 500+ files and 50,000+ lines, then times, in the same
run and on the same files:

  chatops   `chatops analyze branch ... --format json` (offline), as a user runs it
  raw tools `git diff` + `ruff check` + `bandit` + `detect-secrets scan`, one after another, on a
            checkout of the branch (the checkout itself is not timed)

and prints both, their ratio (target: at most 0.7x on a 2-core machine) and the peak memory of
each; then the re-run at the same head, answers kept in the store (target: under 0.1x).

    python bench/analyze_large_branch.py [--files 520] [--lines 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruff.__main__ import find_ruff_bin

BRANCH = "feature/big-change"
RUFF_SELECT = "F,E4,E7,E9,B,PLE,ASYNC"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def python_module(rng: random.Random, index: int, lines: int) -> str:
    """Plausible Python: functions with branches and loops, now and then a real problem."""
    out = [f'"""Module {index}."""', "import json", "import os", "", ""]
    n = 0
    while len(out) < lines:
        n += 1
        out += [
            f"def handler_{index}_{n}(payload, limit={rng.randint(1, 99)}):",
            f'    """Handle payload {n}."""',
            "    items = json.loads(payload)",
            "    total = 0",
            "    for item in items[:limit]:",
            f"        if item.get('kind') == 'k{rng.randint(0, 9)}':",
            f"            total += item['value'] * {rng.randint(2, 9)}",
            "        else:",
            "            total -= 1",
        ]
        problem = rng.random()
        if problem < 0.03:
            out.append("    eval(payload)")
        elif problem < 0.05:
            out.append("    os.system('echo ' + payload)")
        elif problem < 0.06:
            out.append(f'    password = "s3cr3t-{rng.randint(1000, 9999)}-value"')
        out += ["    return total", "", ""]
    return "\n".join(out[:lines]) + "\n"


def make_repo(root: Path, files: int, lines: int, seed: int = 7) -> tuple[Path, int, int]:
    rng = random.Random(seed)
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.invalid")
    git(repo, "config", "user.name", "bench")
    modified = files // 5
    for i in range(modified):
        path = repo / "app" / f"mod_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(python_module(rng, i, lines // 2))
    (repo / "requirements.txt").write_text("requests==2.32.3\nPyYAML==6.0.2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", BRANCH)
    for i in range(modified):  # modify: append a full module's worth of lines
        path = repo / "app" / f"mod_{i}.py"
        path.write_text(path.read_text() + python_module(rng, 10_000 + i, lines))
    for i in range(files - modified):  # add new files
        path = repo / "app" / "new" / f"feature_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(python_module(rng, 20_000 + i, lines))
    (repo / "requirements.txt").write_text("requests==2.31.0\nPyYAML==6.0.2\nflask\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "big change")
    stat = git(repo, "diff", "--shortstat", "main", BRANCH)
    changed_files = int(stat.split()[0])
    insertions = int(stat.split(",")[1].split()[0])
    git(repo, "checkout", "-q", "main")
    return repo, changed_files, insertions


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall time and the peak RSS (kB) of the largest process in the command's tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{argv[0]} failed ({code}): {err[-2000:]}")
    return elapsed, usage.ru_maxrss


def raw_tools(repo: Path, checkout: Path, changed: list[str]) -> tuple[float, int]:
    py = [p for p in changed if p.endswith(".py")]
    steps = [
        (["git", "diff", "main...", BRANCH], repo),
        (
            [
                find_ruff_bin(),
                "check",
                "--isolated",
                "--no-cache",
                "--exit-zero",
                "--output-format=json",
                f"--select={RUFF_SELECT}",
                *py,
            ],
            checkout,
        ),
        ([sys.executable, "-m", "bandit", "-q", "-f", "json", *py], checkout),
        ([sys.executable, "-m", "detect_secrets", "scan", *changed], checkout),
    ]
    total, peak = 0.0, 0
    for argv, cwd in steps:
        if argv[0] == "git":
            argv = ["git", "diff", f"main...{BRANCH}"]
        elapsed, rss = timed(argv, cwd)
        total += elapsed
        peak = max(peak, rss)
    return total, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=520)
    parser.add_argument("--lines", type=int, default=100, help="lines per new file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    chatops = shutil.which("chatops") or str(Path(sys.executable).parent / "chatops")
    with tempfile.TemporaryDirectory(prefix="chatops-bench-") as scratch:
        root = Path(scratch)
        repo, changed_files, insertions = make_repo(root, args.files, args.lines)
        changed = git(repo, "diff", "--name-only", f"main...{BRANCH}").split()
        checkout = root / "checkout"
        git(repo, "worktree", "add", "-q", str(checkout), BRANCH)
        print(f"branch: {changed_files} files changed, {insertions} lines added")

        ours, theirs, our_rss, raw_rss = [], [], 0, 0
        report = root / "report.json"
        # The answers kept between runs go to a store of this benchmark's own.
        env = {**os.environ, "CHATOPS_DATA_DIR": str(root / "data")}
        env.pop("DATABASE_URL", None)
        # Compiled bytecode kept, as after any install (see cli_startup.py).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        command = [
            chatops,
            "analyze",
            "branch",
            BRANCH,
            "--repo",
            str(repo),
            "--format",
            "json",
            "--output",
            str(report),
        ]
        timed([chatops, "schema"], root, env)  # compiles chatops's modules once, untimed
        for attempt in range(args.repeat):
            # A first run: an empty store of its own, nothing kept from before.
            first = {**env, "CHATOPS_DATA_DIR": str(root / f"first-{attempt}")}
            elapsed, rss = timed(command, root, first)
            ours.append(elapsed)
            our_rss = max(our_rss, rss)
            elapsed, rss = raw_tools(repo, checkout, changed)
            theirs.append(elapsed)
            raw_rss = max(raw_rss, rss)
        data = json.loads(report.read_text())
        ours_med, raw_med = statistics.median(ours), statistics.median(theirs)
        print(
            f"findings: {len(data['findings'])}, files analyzed: "
            f"{len(data['coverage']['files_analyzed'])}, skipped: "
            f"{len(data['coverage']['files_skipped'])}"
        )
        print(
            f"chatops analyze : median {ours_med:6.2f} s  (runs: "
            f"{', '.join(f'{t:.2f}' for t in ours)})  peak RSS {our_rss / 1024:.0f} MB"
        )
        print(
            f"raw tools       : median {raw_med:6.2f} s  (runs: "
            f"{', '.join(f'{t:.2f}' for t in theirs)})  peak RSS {raw_rss / 1024:.0f} MB"
        )
        ratio = ours_med / raw_med
        print(
            f"ratio chatops / raw tools: {ratio:.2f}x (target <= 0.7x): "
            f"{'OK' if ratio <= 0.7 else 'OVER TARGET'}"
        )
        timed(command, root, env)  # keeps every file's answers in the store
        again = [timed(command, root, env)[0] for _ in range(args.repeat)]
        again_med = statistics.median(again)
        print(
            f"re-run at the same head (answers kept in the store): median {again_med:.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in again)}) = {again_med / ours_med:.2f}x "
            "the first run"
        )


if __name__ == "__main__":
    main()
