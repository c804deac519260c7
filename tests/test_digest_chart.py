"""The digest chart as a reader sees it, checked by its structure (matplotlib's own objects after a
real draw), not by its pixels: a legend, axes that read with no data and with 90 days of it,
dated ticks that never overlap, and nothing drawn outside the image. Its data comes from a real
SQLite store through `collect()`."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from bot.core.digest import MAX_TICKS, DigestData, chart_days, chart_figure, chart_png, collect
from bot.schedule import Period
from bot.store.db import make_engine, session_scope, upgrade
from bot.store.models import FeedbackRow, Run
from bot.store.stats import Stats

UTC_ZONE = ZoneInfo("UTC")
# Tuesday 2026-11-24 09:00 UTC, when a weekday 09:00 digest covers the day before.
END = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
DAY = Period(END - timedelta(days=1), END)


def store(tmp_path: Path, days: dict[int, tuple[int, int, int]]) -> Stats:
    """A store with, per day back from END's day: (runs, up-votes, down-votes) at 08:00."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        for back, (runs, up, down) in days.items():
            at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC) - timedelta(days=back)
            for n in range(runs):
                session.add(
                    Run(
                        id=f"r{back:03d}x{n:04d}",
                        requester="U1",
                        surface="slack",
                        repo="shop",
                        target="f",
                        status="done",
                        created_at=at,
                    )
                )
            session.flush()
            for n, vote in enumerate([1] * up + [-1] * down):
                session.add(
                    FeedbackRow(
                        run_id=f"r{back:03d}x0000",
                        fingerprint=f"f{n}",
                        user="U1",
                        vote=vote,
                        agent="code_review",
                        at=at,
                    )
                )
    return Stats(engine)


def drawn(data: DigestData) -> tuple[Figure, Axes, Axes]:
    figure = chart_figure(data)
    FigureCanvasAgg(figure).draw()  # type: ignore[no-untyped-call]  # laid out as the PNG is
    runs, rate = figure.axes
    return figure, runs, rate


def bars(axes: Axes) -> list[Rectangle]:
    [container] = axes.containers
    return list(container)


def ydata(line: Line2D) -> list[float]:
    return [float(y) for y in np.asarray(line.get_ydata(), dtype=float)]


def data_for(stats: Stats, period: Period = DAY) -> DigestData:
    return collect(
        stats, period, UTC_ZONE, proposal_ttl_s=3600, daily_budget_usd=None, now=period.end
    )


def extents(figure: Figure, artists: list[object]) -> list[Bbox]:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    return [a.get_window_extent(renderer) for a in artists if a.get_text()]  # type: ignore[attr-defined]


def assert_readable(figure: Figure, runs: Axes, rate: Axes) -> None:
    """What every chart must be: labelled axes, a legend of what is drawn, dated ticks that do
    not overlap, every text inside the image."""
    assert runs.get_ylabel() == "runs per day"
    assert rate.get_ylabel() == "acceptance (up-votes / all votes)"
    assert runs.get_xlabel() == "day (UTC)"
    [legend] = figure.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0] == "runs"
    assert any(label.startswith("acceptance") for label in labels)
    assert any(label.startswith("this digest: ") for label in labels)
    ticks = extents(figure, list(runs.get_xticklabels()))
    assert 3 <= len(ticks) <= MAX_TICKS
    for left, right in zip(ticks, ticks[1:], strict=False):
        assert left.x1 < right.x0, "x tick labels overlap"
    whole = figure.bbox
    texts = [legend, *legend.get_texts(), runs.xaxis.label, runs.yaxis.label, rate.yaxis.label]
    texts += figure.texts  # the title
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    for artist in texts:
        box = artist.get_window_extent(renderer)
        assert whole.x0 <= box.x0 and box.x1 <= whole.x1, f"{artist} is cut off"
        assert whole.y0 <= box.y0 and box.y1 <= whole.y1, f"{artist} is cut off"
    assert all(
        float(t).is_integer() and t >= 0 for t in runs.get_yticks() if t <= runs.get_ylim()[1]
    )
    assert [t.get_text() for t in rate.get_yticklabels()] == ["0%", "25%", "50%", "75%", "100%"]


def test_with_no_data_the_chart_says_so_on_sensible_axes(tmp_path: Path) -> None:
    figure, runs, rate = drawn(data_for(store(tmp_path, {})))
    assert_readable(figure, runs, rate)
    assert runs.get_ylim() == (0.0, 5.0)  # whole runs from 0, not -0.04 to 0.04
    assert [t.get_text() for t in runs.texts] == ["No runs in these 14 days"]
    assert len(bars(runs)) == 14 and all(p.get_height() == 0 for p in bars(runs))
    [line] = rate.get_lines()
    assert all(math.isnan(y) for y in ydata(line))
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "acceptance: no votes in these days" in labels


def test_a_few_days_show_gaps_where_nobody_voted_and_the_day_not_over(tmp_path: Path) -> None:
    stats = store(tmp_path, {0: (3, 2, 1), 1: (1, 0, 0), 2: (5, 4, 0)})
    figure, runs, rate = drawn(data_for(stats))
    assert_readable(figure, runs, rate)
    heights = [p.get_height() for p in bars(runs)][-3:]
    assert heights == [5, 1, 3]
    assert runs.get_ylim()[0] == 0 and runs.get_ylim()[1] >= 5
    assert list(runs.texts) == []
    [line] = rate.get_lines()
    ys = ydata(line)
    assert ys[-3] == 100 and math.isnan(ys[-2]) and round(ys[-1]) == 67  # no line through 23 Nov
    # The last bar is 24 Nov until the period's end at 09:00: hatched, and the legend says so.
    last = bars(runs)[-1]
    assert last.get_hatch() == "//" and bars(runs)[-2].get_hatch() is None
    # 9 of its 24 hours: as wide as that, ending where the shaded period ends (day 13, 09:00).
    assert last.get_x() + last.get_width() == pytest.approx(13 - 0.5 + 9 / 24)
    assert last.get_width() < bars(runs)[-2].get_width()
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "24 Nov: 00:00 – 09:00 only" in labels
    assert "this digest: 23 Nov 09:00 – 24 Nov 09:00" in labels
    assert runs.get_xticklabels()[-1].get_text() == "24 Nov"  # the latest day is always dated


def test_ninety_days_stay_readable(tmp_path: Path) -> None:
    days = {back: (back % 7, back % 3, 1) if back % 7 else (0, 0, 0) for back in range(91)}
    period = Period(END - timedelta(days=90), END)
    figure, runs, rate = drawn(data_for(store(tmp_path, days), period))
    assert_readable(figure, runs, rate)
    assert chart_days(period, UTC_ZONE) == 91 == len(bars(runs))
    assert [p.get_height() for p in bars(runs)][:3] == [90 % 7, 89 % 7, 88 % 7]
    assert runs.get_ylim()[1] >= 6
    labels = [t.get_text() for t in runs.get_xticklabels()]
    assert labels[-1] == "24 Nov"
    first = date(2026, 11, 24) - timedelta(days=90)
    assert figure.get_suptitle() == (
        f"chatops: runs and acceptance per day, {first:%d %b} – 24 Nov 2026"
    )


@pytest.mark.parametrize(
    ("period", "days"),
    [
        (DAY, 14),  # a daily digest still shows two weeks
        (Period(END - timedelta(days=31), END), 32),  # a monthly one its whole month
        (Period(END - timedelta(days=400), END), 92),  # never more than a quarter
        (Period(END - timedelta(days=1), END.replace(hour=0)), 14),
    ],
)
def test_the_chart_covers_the_period_within_bounds(period: Period, days: int) -> None:
    assert chart_days(period, UTC_ZONE) == days


def test_the_png_is_a_png(tmp_path: Path) -> None:
    png = chart_png(data_for(store(tmp_path, {0: (2, 1, 0)})))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
