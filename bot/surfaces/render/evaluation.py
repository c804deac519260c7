"""`chatops eval history` in the terminal: the figures, per rule and per source, and the
learnings a team could adopt."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agents.evaluation import Evaluation, RuleFigures


def _number(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:g}{suffix}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _table(title: str, rows: list[RuleFigures], *, by_rule: bool) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("source")
    if by_rule:
        table.add_column("rule")
        table.add_column("severity")
    for name in ("findings", "per commit", "tracked", "addressed", "base rate", "lift"):
        table.add_column(name, justify="right")
    for row in rows:
        cells = [Text(row.source)]
        if by_rule:
            cells += [Text(row.rule), Text(row.severity)]
        cells += [
            Text(str(row.findings)),
            Text(_number(row.per_commit)),
            Text(str(row.tracked)),
            Text(_percent(row.addressed_rate)),
            Text(_percent(row.base_rate)),
            Text(_number(row.lift, "x")),
        ]
        table.add_row(*cells)
    return table


def print_evaluation(console: Console, evaluation: Evaluation, *, rules: int = 40) -> None:
    severities = ", ".join(f"{n} {s}" for s, n in evaluation.by_severity.items() if n)
    console.print(
        Text(
            f"{evaluation.commits} commit(s) replayed in {evaluation.seconds:g} s "
            f"({evaluation.skipped_commits} skipped): {evaluation.findings} finding(s), "
            f"{evaluation.findings_per_commit:g} per commit ({severities or 'none'}); "
            f"high or critical {_percent(evaluation.high_share)}. A finding is addressed when "
            f"one of the next {evaluation.window} commits touching its file changed its lines; "
            f"base rate (any added line) {_percent(evaluation.base_rate)}."
        )
    )
    if evaluation.sources:
        console.print(_table("By source", evaluation.sources, by_rule=False))
    if evaluation.rules:
        shown = evaluation.rules[:rules]
        more = len(evaluation.rules) - len(shown)
        title = "By rule" + (
            f" (the {len(shown)} most frequent; --format json has all)" if more else ""
        )
        console.print(_table(title, shown, by_rule=True))
    if evaluation.learnings:
        console.print(Text("Learnings a team could adopt (proposed, not applied):", style="bold"))
        for learning in evaluation.learnings:
            console.print(Text(f"  {learning.key}: {learning.text}"))
    for failure in evaluation.failures:
        console.print(Text(f"commit {failure.commit}: {failure.error}", style="red"))
