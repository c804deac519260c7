"""The digest: what the agents did in a period, what it cost, and where they fail.

`collect()` reads the aggregates, `sections()` words them (Slack and the terminal show the same
sections), `chart_png()` draws daily runs and acceptance: the period's days, at least the last
two weeks, at most a quarter.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.schedule import Period
from bot.store.stats import Acceptance, SlowRun, Stats, Usage

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHART_DAYS = 14  # at least two weeks, so a daily digest shows a trend
MAX_CHART_DAYS = 92  # at most a quarter, one bar a day
MAX_TICKS = 8  # dated ticks on the x axis: "24 Nov" at 9 points, never overlapping
_BAR, _BAR_PARTIAL, _RATE, _PERIOD = "#475569", "#cbd5e1", "#16a34a", "#dbeafe"
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
    flags: FlagDigest = field(default_factory=lambda: FlagDigest())

    @property
    def total_runs(self) -> int:
        return sum(self.runs.values())


@dataclass
class FlagDigest:
    """Feature flags in the period: added, retired, and the stalest reported."""

    added: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    stalest: list[tuple[str, int]] = field(default_factory=list)  # (key, days)

    @property
    def any(self) -> bool:
        return bool(self.added or self.retired or self.stalest)


# The feature-flag agent's own titles (agents/roles/feature_flags.py).
_ADDED = re.compile(r"Flag (\S+) added")
_STALE = re.compile(r"Flag (\S+) unchanged for (\d+) days")
_RETIRED = re.compile(r"Retire flag (\S+) ")
MAX_FLAGS = 10


def flag_digest(stats: Stats, start: datetime, end: datetime) -> FlagDigest:
    """Bounded: one indexed time range each, a row limit each."""
    out = FlagDigest()
    stale: dict[str, int] = {}
    for repo, title in stats.flag_findings(start, end):
        if (match := _ADDED.match(title)) and f"{match[1]} ({repo})" not in out.added:
            out.added.append(f"{match[1]} ({repo})")
        elif match := _STALE.match(title):
            key = f"{match[1]} ({repo})"
            stale[key] = max(stale.get(key, 0), int(match[2]))
    out.added = sorted(out.added)[:MAX_FLAGS]
    titles = stats.retired_flags(start, end)
    out.retired = sorted({m[1] for t in titles if (m := _RETIRED.match(t))})
    out.stalest = sorted(stale.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return out


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
        daily=_daily(stats, end, tz, chart_days(period, tz)),
        flags=flag_digest(stats, start, end),
    )


def _by_agent(rows: dict[tuple[str, str], Acceptance]) -> dict[str, Acceptance]:
    merged: dict[str, Acceptance] = {}
    for (agent, _), votes in rows.items():
        merged[agent] = merged.get(agent, Acceptance(0, 0)) + votes
    return merged


def chart_days(period: Period, tz: ZoneInfo) -> int:
    """The chart's days: the period's local days, at least CHART_DAYS, at most MAX_CHART_DAYS."""
    end = period.end.astimezone(tz)
    last = end.date() if end.time() != time(0) else end.date() - timedelta(days=1)
    days = (last - period.start.astimezone(tz).date()).days + 1
    return min(MAX_CHART_DAYS, max(CHART_DAYS, days))


def _daily(
    stats: Stats, end: datetime, tz: ZoneInfo, days: int = CHART_DAYS
) -> list[tuple[date, int, float | None]]:
    """Runs and acceptance per local day, the last `days` days up to `end` (a period ending at
    midnight ends with the day before)."""
    local = end.astimezone(tz)
    last = local.date() if local.time() != time(0) else local.date() - timedelta(days=1)
    series = []
    for offset in range(days - 1, -1, -1):
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
    if data.flags.any:
        flags = data.flags
        out.append(
            (
                "Feature flags",
                [
                    f"Added: {', '.join(flags.added) or 'none'}",
                    f"Retired: {', '.join(flags.retired) or 'none'}",
                    "Stalest: "
                    + (", ".join(f"{key} {days} days" for key, days in flags.stalest) or "none"),
                ],
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
    buffer = io.BytesIO()
    chart_figure(data).savefig(buffer, format="png")
    return buffer.getvalue()


def chart_figure(data: DigestData) -> Figure:
    """The chart as a matplotlib figure: one bar of runs per local day, the day's acceptance as
    points (a day without votes is a gap, not a line drawn through it), the digest's own period
    shaded, a last day cut short by the period's end hatched. Axes that read with no data (0 to
    5 runs, whole numbers) and with 90 days (at most MAX_TICKS dated ticks, the latest day
    always one)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in any thread of a worker
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    days = [d for d, _, _ in data.daily]
    runs = [n for _, n, _ in data.daily]
    count = len(days)
    end = data.period.end.astimezone(data.tz)
    partial = bool(days) and days[-1] == end.date() and end.time() != time(0)
    figure = Figure(figsize=(9, 4), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    positions: list[float] = list(range(count))
    bars = axes.bar(positions, runs, width=0.8, color=_BAR, zorder=2)
    if partial:  # as wide as the hours it holds: it ends where the period does
        bar = bars[-1]
        bar.set_width(max(0.08, _position(days, end, data.tz) - bar.get_x()))
        bar.set_facecolor(_BAR_PARTIAL)
        bar.set_hatch("//")
        positions[-1] = bar.get_x() + bar.get_width() / 2
    axes.set_xlim(-0.6, count - 0.4)
    axes.set_ylim(0, max(5.0, max(runs, default=0) * 1.15))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    axes.grid(axis="y", color="#e5e7eb", zorder=0)
    axes.set_axisbelow(True)
    axes.set_ylabel("runs per day")
    axes.set_xlabel(f"day ({data.tz.key})")
    step = max(1, -(-count // MAX_TICKS))
    ticks = list(range(count - 1, -1, -step))[::-1]  # counted back from the latest day
    axes.set_xticks(ticks, [days[i].strftime("%d %b") for i in ticks])
    axes.tick_params(labelsize=9)
    first, last = _position(days, data.period.start, data.tz), _position(days, end, data.tz)
    axes.axvspan(max(first, -0.6), min(last, count - 0.4), color=_PERIOD, zorder=0, lw=0)
    if not sum(runs):
        axes.text(
            0.5,
            0.5,
            f"No runs in these {count} days",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color="#6b7280",
            fontsize=12,
        )
    rate_axes = axes.twinx()
    rates = [r * 100 if r is not None else math.nan for _, _, r in data.daily]
    voted = any(r is not None for _, _, r in data.daily)
    rate_axes.plot(
        positions,
        rates,
        color=_RATE,
        marker="o",
        markersize=3 if count > 31 else 5,
        linewidth=1.5,
        zorder=3,
        clip_on=False,  # a 0% or 100% point is drawn whole on the frame
    )
    rate_axes.set_ylim(0, 110)
    rate_axes.set_yticks([0, 25, 50, 75, 100])
    rate_axes.yaxis.set_major_formatter(PercentFormatter(100))
    rate_axes.tick_params(labelsize=9)
    rate_axes.set_ylabel("acceptance (up-votes / all votes)")
    handles = [
        Patch(color=_BAR, label="runs"),
        Line2D(
            [],
            [],
            color=_RATE,
            marker="o",
            label="acceptance" if voted else "acceptance: no votes in these days",
        ),
        Patch(
            color=_PERIOD,
            label=f"this digest: {_moment(data.period.start, data.tz)} – {_moment(end, data.tz)}",
        ),
    ]
    if partial:
        handles.insert(
            1,
            Patch(
                facecolor=_BAR_PARTIAL,
                hatch="//",
                label=f"{days[-1]:%d %b}: 00:00 – {end:%H:%M} only",
            ),
        )
    figure.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=9)
    span = f"{days[0]:%d %b} – {days[-1]:%d %b %Y}" if days else "no days"
    figure.suptitle(f"chatops: runs and acceptance per day, {span}", fontsize=12)
    return figure


def _moment(when: datetime, tz: ZoneInfo) -> str:
    local = when.astimezone(tz)
    return f"{local:%d %b}" if local.time() == time(0) else f"{local:%d %b %H:%M}"


def _position(days: list[date], when: datetime, tz: ZoneInfo) -> float:
    """Where a moment falls on the chart's x axis: day i spans i - 0.5 to i + 0.5."""
    if not days:
        return 0.0
    local = when.astimezone(tz)
    into = (local.hour * 3600 + local.minute * 60 + local.second) / 86400
    return (local.date() - days[0]).days + into - 0.5
