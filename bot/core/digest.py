"""The digest: what the agents did in a period, what it cost, and where they fail.

`collect()` reads the aggregates, `sections()` words them (Slack and the terminal show the same
sections), `chart_png()` draws daily runs and acceptance for the last two weeks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.schedule import Period
from bot.store.stats import Acceptance, SlowRun, Stats, Usage

CHART_DAYS = 14
_SEVERITIES = ("critical", "high", "medium", "low", "info")


@dataclass
class DigestData:
    period: Period
    tz: ZoneInfo
    runs: dict[str, int]
    findings: dict[tuple[str, str], int]
    acceptance: dict[str, Acceptance]
    previous_acceptance: dict[str, Acceptance]
    proposals: dict[str, int]
    usage: Usage
    budget_usd: float | None  # the daily cap times the period's days
    refused_for_budget: int
    failure_modes: list[tuple[str, str, int]]
    slowest: list[SlowRun]
    daily: list[tuple[date, int, float | None]] = field(default_factory=list)

    @property
    def total_runs(self) -> int:
        return sum(self.runs.values())


def collect(
    stats: Stats,
    period: Period,
    tz: ZoneInfo,
    *,
    proposal_ttl_s: int,
    daily_budget_usd: float | None,
    now: datetime,
) -> DigestData:
    start, end = period.start, period.end
    previous = period.previous()
    days = max(1.0, (end - start).total_seconds() / 86400)
    return DigestData(
        period=period,
        tz=tz,
        runs=stats.runs_by_status(start, end),
        findings=stats.findings_by(start, end),
        acceptance=_by_agent(stats.acceptance(start, end)),
        previous_acceptance=_by_agent(stats.acceptance(previous.start, previous.end)),
        proposals=stats.proposals_by_status(start, end, proposal_ttl_s, now),
        usage=stats.usage(start, end),
        budget_usd=daily_budget_usd * days if daily_budget_usd else None,
        refused_for_budget=stats.refused_for_budget(start, end),
        failure_modes=stats.rejected_categories(start, end),
        slowest=stats.slowest(start, end),
        daily=_daily(stats, end, tz),
    )


def _by_agent(rows: dict[tuple[str, str], Acceptance]) -> dict[str, Acceptance]:
    merged: dict[str, Acceptance] = {}
    for (agent, _), votes in rows.items():
        merged[agent] = merged.get(agent, Acceptance(0, 0)) + votes
    return merged


def _daily(stats: Stats, end: datetime, tz: ZoneInfo) -> list[tuple[date, int, float | None]]:
    """Runs and acceptance per local day, the last CHART_DAYS days up to `end`."""
    last = end.astimezone(tz).date()
    series = []
    for offset in range(CHART_DAYS - 1, -1, -1):
        day = last - timedelta(days=offset)
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
        stop = min(start + timedelta(days=1), end)
        votes = sum(stats.acceptance(start, stop).values(), Acceptance(0, 0))
        series.append((day, stats.runs_count(start, stop), votes.rate))
    return series


def _rate(votes: Acceptance | None) -> str:
    if votes is None or votes.rate is None:
        return "no votes"
    return f"{votes.rate:.0%} ({votes.up}👍 {votes.down}👎)"


def _trend(now: Acceptance | None, before: Acceptance | None) -> str:
    if now is None or now.rate is None or before is None or before.rate is None:
        return ""
    points = round((now.rate - before.rate) * 100)
    arrow = "↑" if points > 0 else "↓" if points < 0 else "→"
    return f" {arrow} {abs(points)} pts"


def sections(data: DigestData) -> list[tuple[str, list[str]]]:
    """(title, lines) in reading order. Lines hold plain text: repository names and targets
    are the caller's to escape."""
    out: list[tuple[str, list[str]]] = []
    runs = ", ".join(f"{n} {status}" for status, n in sorted(data.runs.items())) or "none"
    out.append(("Runs", [f"{data.total_runs} run(s): {runs}"]))
    severities: dict[str, int] = {}
    agents: dict[str, int] = {}
    for (agent, severity), n in data.findings.items():
        severities[severity] = severities.get(severity, 0) + n
        agents[agent] = agents.get(agent, 0) + n
    if severities:
        by_severity = ", ".join(f"{severities[s]} {s}" for s in _SEVERITIES if s in severities)
        by_agent = ", ".join(f"{agent} {n}" for agent, n in sorted(agents.items()))
        out.append(("Findings", [f"By severity: {by_severity}", f"By agent: {by_agent}"]))
    else:
        out.append(("Findings", ["none"]))
    names = sorted(set(data.acceptance) | set(data.previous_acceptance))
    lines = [
        f"{name}: {_rate(data.acceptance.get(name))}"
        + _trend(data.acceptance.get(name), data.previous_acceptance.get(name))
        for name in names
        if name in data.acceptance
    ]
    out.append(("Acceptance (👍 / all votes, against the previous period)", lines or ["no votes"]))
    order = ("applied", "rejected", "expired", "pending")
    shown = [f"{data.proposals.get(s, 0)} {s}" for s in order]
    shown += [f"{n} {s}" for s, n in sorted(data.proposals.items()) if s not in order]
    out.append(("Proposals", [", ".join(shown)]))
    usage = data.usage
    cost = f"${usage.cost_usd:.2f}"
    if data.budget_usd:
        cost += f" of a ${data.budget_usd:.2f} budget ({usage.cost_usd / data.budget_usd:.0%})"
    spend = [
        f"{usage.calls} model call(s), {usage.input_tokens:,} tokens in, "
        f"{usage.output_tokens:,} out, {cost}"
    ]
    if data.refused_for_budget:
        spend.append(
            f"The daily budget was reached: {data.refused_for_budget} run request(s) refused."
        )
    out.append(("Tokens and cost", spend))
    if data.failure_modes:
        out.append(
            (
                "Most rejected (failure modes)",
                [f"{agent}: {kind} ({n}👎)" for agent, kind, n in data.failure_modes],
            )
        )
    if data.slowest:
        out.append(
            (
                "Slowest runs",
                [
                    f"{run.run_id} {run.target} in {run.repo}: {run.duration_ms / 1000:.1f} s"
                    for run in data.slowest
                ],
            )
        )
    return out


def text(data: DigestData) -> str:
    lines = [f"chatops digest · {data.period.label(data.tz)}"]
    for title, body in sections(data):
        lines.append(f"\n{title}")
        lines.extend(f"  {line}" for line in body)
    return "\n".join(lines)


def chart_png(data: DigestData) -> bytes:
    """Daily runs (bars) and acceptance rate (line), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in any thread of a worker
    from matplotlib.figure import Figure

    days = [d for d, _, _ in data.daily]
    runs = [n for _, n, _ in data.daily]
    labels = [d.strftime("%d %b") for d in days]
    figure = Figure(figsize=(8, 3.2), dpi=100)
    axes = figure.add_subplot()
    axes.bar(labels, runs, color="#6b7280", label="runs")
    axes.set_ylabel("runs per day")
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    rate_axes = axes.twinx()
    points = [
        (label, r * 100)
        for label, (_, _, r) in zip(labels, data.daily, strict=True)
        if r is not None
    ]
    if points:
        rate_axes.plot([p[0] for p in points], [p[1] for p in points], color="#16a34a", marker="o")
    rate_axes.set_ylim(0, 100)
    rate_axes.set_ylabel("acceptance %")
    axes.set_title(f"chatops: the last {CHART_DAYS} days")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
