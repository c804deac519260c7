"""Benchmark: how long the quick commands take to start, against Python starting alone.

    python bench/cli_startup.py [--repeat 10]

Prints the median wall time of `chatops --help`, `chatops analyze --help` and `chatops schema`,
and of `python -c pass` measured in the same run (the floor no command can go under).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_s(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    chatops = shutil.which("chatops") or str(Path(sys.executable).parent / "chatops")
    floor = median_s([sys.executable, "-c", "pass"], args.repeat)
    print(f"python -c pass        : {floor:.3f} s")
    for argv in (["--help"], ["analyze", "--help"], ["schema"]):
        took = median_s([chatops, *argv], args.repeat)
        print(f"chatops {' '.join(argv):<14}: {took:.3f} s ({took / floor:.1f}x python alone)")


if __name__ == "__main__":
    main()
