"""Benchmark: tokens the agents send on a large branch, against the naive prompt.

Generates the same large branch as `analyze_large_branch.py`, runs the Claude-backed agents twice
against the fake Messages API on 127.0.0.1 (which simulates prefix caching), and prints:

- tokens sent (run 1) against the naive prompt: the whole diff plus every changed file whole,
  with the system prompt, as one request;
- the number of calls per agent, and the largest request against the per-call budget;
- coverage: the share of analyzable changed files the model reviewed;
- the share of input tokens read from the cache on the second run, and the cost of both runs;
- reuse: run 2 at the same head with the model's answers kept in the store (SQLite, as the
  embedded default keeps them), and run 3 after a commit that changes one file: the calls made
  and the input tokens sent, against run 1.

    python bench/analyze_large_branch.py is the offline speed benchmark; this one is:
    python bench/token_budget.py [--files 520] [--lines 100] [--budget 24000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from analyze_large_branch import BRANCH, make_repo  # noqa: E402

from agents import prompts  # noqa: E402
from agents.llm import LLMSession, LLMSettings  # noqa: E402
from agents.pipeline import analyze_branch  # noqa: E402
from agents.report import Report  # noqa: E402
from agents.reuse import AnswerStore  # noqa: E402
from bot.store.answers import AnswerCache  # noqa: E402
from bot.store.db import make_engine, upgrade  # noqa: E402
from tests.support.fakes.anthropic_api import API_KEY, FakeAnthropic, tokens  # noqa: E402


def naive_tokens(repo: Path) -> int:
    diff = subprocess.run(
        ["git", "diff", f"main...{BRANCH}"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    names = subprocess.run(
        ["git", "diff", "--name-only", "--diff-filter=d", f"main...{BRANCH}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    whole = "".join(
        subprocess.run(
            ["git", "show", f"{BRANCH}:{name}"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for name in names
    )
    return tokens(prompts.render("code_review").stable) + tokens(diff) + tokens(whole)


def run(
    repo: Path, fake: FakeAnthropic, budget: int, answers: AnswerStore | None = None
) -> tuple[Report, int, int, Counter[str], int]:
    """The report, input tokens sent, the largest request, calls per agent, and every request
    that reached the API (messages and token counts)."""
    start = len(fake.requests)
    settings = LLMSettings(
        api_key=API_KEY,
        base_url=fake.base_url,
        input_budget_tokens=budget,
        concurrency=4,
        max_retries=0,
    )
    report = analyze_branch(repo, BRANCH, llm=LLMSession(settings, answers=answers))
    reached = fake.requests[start:]
    sent = [r for r in reached if r.path == "/v1/messages"]
    sizes = [tokens(r.system) + tokens(r.user) for r in sent]
    return report, sum(sizes), max(sizes, default=0), Counter(r.role for r in sent), len(reached)


def change_one_file(repo: Path) -> str:
    subprocess.run(["git", "checkout", "-q", BRANCH], cwd=repo, check=True)
    path = repo / "app" / "new" / "feature_0.py"
    path.write_text(path.read_text() + "\n\ndef added_later(x):\n    return x + 1\n")
    subprocess.run(["git", "commit", "-qam", "one more change"], cwd=repo, check=True)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=repo, check=True)
    return "app/new/feature_0.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=520)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--budget", type=int, default=24_000, help="input tokens per call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatops-tokens-") as scratch, FakeAnthropic() as fake:
        repo, changed, added = make_repo(Path(scratch), args.files, args.lines)
        print(f"branch: {changed} files changed, {added} lines added")
        naive = naive_tokens(repo)
        first, sent, largest, calls, _ = run(repo, fake, args.budget)
        second, _, _, _, _ = run(repo, fake, args.budget)
        url = f"sqlite:///{Path(scratch) / 'chatops.db'}"
        upgrade(url)
        kept = AnswerCache(make_engine(url), max_bytes=256_000_000, max_age_days=30)
        keeping, kept_sent, _, _, _ = run(repo, fake, args.budget, kept)
        again, again_sent, _, again_calls, again_reached = run(repo, fake, args.budget, kept)
        changed = change_one_file(repo)
        pushed, pushed_sent, _, pushed_calls, _ = run(repo, fake, args.budget, kept)

        skipped_by_model = {s.file for s in first.coverage.files_skipped if "model" in s.reason}
        analyzable = len(first.coverage.files_analyzed)
        reviewed = analyzable - len(skipped_by_model & set(first.coverage.files_analyzed))
        u2 = second.usage
        total2 = u2.input_tokens + u2.cache_read_tokens + u2.cache_write_tokens
        print(f"naive prompt (whole diff + whole files, one request): {naive:,} tokens")
        print(
            f"sent by the agents (run 1): {sent:,} tokens in {sum(calls.values())} calls "
            f"({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})"
        )
        print(
            f"ratio sent / naive: {sent / naive:.2f}x; largest request {largest:,} tokens "
            f"(budget {args.budget:,})"
        )
        print(
            f"coverage: the model reviewed {reviewed} of {analyzable} analyzable files "
            f"({100 * reviewed / max(analyzable, 1):.0f}%); {len(first.coverage.files_skipped)} "
            "skipped entries in all"
        )
        print(
            f"cache-read share of input on run 2: {100 * u2.cache_read_tokens / total2:.0f}% "
            f"({u2.cache_read_tokens:,} of {total2:,} tokens)"
        )
        print(
            f"cost at the configured prices: run 1 ${first.usage.cost_usd:.2f}, "
            f"run 2 ${second.usage.cost_usd:.2f}"
        )
        entries, size = kept.stats()
        print(
            f"reuse, answers kept in the store ({entries} entries, {size / 1e6:.1f} MB): "
            f"first run {kept_sent:,} tokens, ${keeping.usage.cost_usd:.2f}"
        )
        print(
            f"  run 2, same head: {again_reached} request(s) reached the API "
            f"({sum(again_calls.values())} calls), {again_sent:,} tokens, "
            f"${again.usage.cost_usd:.2f}; {again.reuse.units_reused} unit(s) reused; "
            f"{len(again.coverage.files_analyzed)} files covered"
        )
        share = pushed_sent / max(kept_sent, 1)
        print(
            f"  run 3, after changing {changed}: {sum(pushed_calls.values())} calls "
            f"({', '.join(f'{k} {v}' for k, v in sorted(pushed_calls.items()))}), "
            f"{pushed_sent:,} tokens = {100 * share:.2f}% of the first run's input, "
            f"${pushed.usage.cost_usd:.2f}; {pushed.reuse.units_reused} unit(s) reused, "
            f"{pushed.reuse.units_sent} sent; {len(pushed.coverage.files_analyzed)} files covered"
        )


if __name__ == "__main__":
    main()
