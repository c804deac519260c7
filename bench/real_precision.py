"""Benchmark: what the offline report says on a real repository's own history.

Runs `chatops eval history --format json` on a local clone (each first-parent commit against its
parent, then which findings later commits addressed) and prints, per repository:

  findings per commit by severity, the share that is high or critical, and per source the
  findings, addressed rate, base rate (any added line changed in the same window) and lift;
  then the high and critical findings themselves, so a person can judge each one;

and the wall time, against a baseline measured in the same run: `git log -p` over the same
commits (reading the history at all).

    python bench/real_precision.py --repo PATH [--repo PATH ...] [--last 100] [--highs 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHATOPS = Path(sys.executable).with_name("chatops")


def evaluate(repo: Path, last: int) -> tuple[dict[str, object], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(CHATOPS),
            "eval",
            "history",
            "--repo",
            str(repo),
            "--last",
            str(last),
            "--format",
            "json",
            "--details",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 3) or not done.stdout.strip():
        sys.exit(f"chatops eval failed on {repo}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout), seconds


def baseline(repo: Path, last: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["git", "-C", str(repo), "log", "--first-parent", "-p", f"--max-count={last}"],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started


def percent(value: object) -> str:
    return "-" if value is None else f"{float(value) * 100:.0f}%"  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, action="append", required=True)
    parser.add_argument("--last", type=int, default=100)
    parser.add_argument("--highs", type=int, default=30, help="High findings to list per repo.")
    args = parser.parse_args()
    for repo in args.repo:
        data, seconds = evaluate(repo, args.last)
        base = baseline(repo, args.last)
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", data["head"]],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        commits = int(data["commits"])  # type: ignore[call-overload]
        by_severity = data["by_severity"]
        print(f"\n== {repo.name} (last {args.last} first-parent commits up to {head}) ==")
        print(
            f"commits analyzed {commits}, findings {data['findings']} "
            f"({data['findings_per_commit']} per commit), high or critical "
            f"{percent(data['high_share'])}, base rate {percent(data['base_rate'])}"
        )
        print(
            "per commit by severity: "
            + ", ".join(
                f"{sev} {n / max(1, commits):.3f}"  # type: ignore[operator]
                for sev, n in by_severity.items()  # type: ignore[attr-defined]
            )
        )
        print(f"{'source':<13}{'findings':>9}{'addressed':>11}{'base':>7}{'lift':>7}")
        for row in data["sources"]:  # type: ignore[attr-defined]
            lift = "-" if row["lift"] is None else f"{row['lift']:.2f}"
            print(
                f"{row['source']:<13}{row['findings']:>9}{percent(row['addressed_rate']):>11}"
                f"{percent(row['base_rate']):>7}{lift:>7}"
            )
        highs = [f for f in data.get("details", []) if f["severity"] in ("high", "critical")]  # type: ignore[attr-defined]
        if highs:
            print(f"high and critical findings ({len(highs)}; first {args.highs}):")
            for f in highs[: args.highs]:
                where = f"{f['file']}:{f['start_line']}" if f.get("file") else "(branch)"
                print(
                    f"  {f['commit'][:10]} {f['severity']:<8} {f['rule']:<24} {where}  "
                    f"{f['title'][:70]}"
                )
        print(
            f"time: chatops eval {seconds:.1f} s ({seconds / max(1, commits):.2f} s per commit); "
            f"git log -p of the same commits {base:.2f} s; ratio {seconds / max(base, 1e-3):.0f}x"
        )


if __name__ == "__main__":
    main()
