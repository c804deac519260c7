"""Benchmark: how long the quick commands take to start, against Python starting alone.

    python bench/cli_startup.py [--repeat 10]

Prints the median wall time of `chatops --help`, `chatops analyze [branch] --help` and `chatops
schema`, against `python -c pass` and a bare typer app's `--help`, measured in the same run (the
floors no command, and no typer command, can go under). Python's
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


# The least a typer command costs: an app of one group and one command, `--help` on the command
# (typer 0.29 imports pydantic to read any command's options).
BARE_TYPER = """
import typer
app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
group = typer.Typer(rich_markup_mode=None)
app.add_typer(group, name="analyze")
@group.command()
def branch(name: str, repo: str = ".") -> None:
    \"\"\"Analyze a branch.\"\"\"
@group.command()
def ticket(key: str) -> None:
    \"\"\"Analyze a ticket.\"\"\"
app()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    chatops = shutil.which("chatops") or str(Path(sys.executable).parent / "chatops")
    floor = median_s([sys.executable, "-c", "pass"], args.repeat)
    bare = median_s([sys.executable, "-c", BARE_TYPER, "analyze", "branch", "--help"], args.repeat)
    print(f"python -c pass        : {floor:.3f} s")
    print(f"bare typer app --help : {bare:.3f} s (typer's own floor for a command's help)")
    for argv in (["--help"], ["analyze", "--help"], ["analyze", "branch", "--help"], ["schema"]):
        took = median_s([chatops, *argv], args.repeat)
        print(
            f"chatops {' '.join(argv):<21}: {took:.3f} s ({took / floor:.1f}x python alone, "
            f"{took / bare:.2f}x a bare typer app)"
        )


if __name__ == "__main__":
    main()
