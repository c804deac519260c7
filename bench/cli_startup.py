"""Benchmark: how long the quick commands take to start, against Python starting alone.

    python bench/cli_startup.py [--repeat 10]

Prints the median wall time of `chatops --help`, `chatops analyze --help` and `chatops schema`,
and of `python -c pass` measured in the same run (the floor no command can go under). Python's
compiled bytecode is kept, as it is after any install (a shell with PYTHONDONTWRITEBYTECODE set
would otherwise compile chatops's modules at every start), and each command runs once first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_s(argv: list[str], repeat: int) -> float:
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=ENV, check=True)  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, check=True
        )
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
