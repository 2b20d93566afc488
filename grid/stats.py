"""Ticket statistics (工单统计) for community leads and the street office: what was reported, where, how well it was handled.

One query fetches the few columns of the tickets created in the period and every figure is computed in Python.
That keeps the arithmetic, and above all the local-time week buckets, identical on SQLite and PostgreSQL (their
date functions and time-zone handling differ), at the cost of reading one small row per ticket, which a
neighbourhood's volume (hundreds a month) affords easily.

Which tickets count where:

- Totals (total, by category, by grid, by week) count every ticket reported in the period, merged and cancelled
  ones included: each was a report a resident made, and the workload of receiving it is real.
- Recurring problems (举一反三) are groups of tickets about one problem at one place (grid/problems.py: the spot
  normalised, the descriptions alike in meaning; without a meaning model, one category there), each with its count
  per week, so a lead reads "3号楼地下室：渗水（4周7次）" where identical (category, place) pairs split the wordings.
  A group counts tickets (occurrences), not co-reporters (voices about one occurrence).
- Rates, handling time, overdue and recurring problems leave out merged and cancelled tickets. A merged ticket is
  a second report of a problem another ticket handles (counting it would count one repair twice, or hold a
  duplicate that was never worked against the deadline); a cancelled one was withdrawn, so nobody was due to
  finish or rate it. A reopened ticket that is then cancelled keeps its `resolved_at`, which is why the
  exclusion is by status and not left to the null checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from grid.categories import load_categories
from grid.clock import LOCAL_TZ
from grid.geography import Grid
from grid.problems import ProblemJudge, Report, most_said
from grid.problems import summary as problem_summary
from grid.ratings import Rating
from grid.tickets import Ticket
from grid.workflow import OPEN_STATUSES, Status
from storage.base import utcnow

NOT_WORKED = frozenset({Status.MERGED.value, Status.CANCELLED.value})
OPEN = frozenset(s.value for s in OPEN_STATUSES)
SATISFIED = frozenset({Rating.SATISFIED.value, Rating.MOSTLY_SATISFIED.value})
RECURRING_MIN = 2
RECURRING_TOP = 5


class UnknownGrid(LookupError):
    """Asked for a grid that does not exist: an empty answer would read as 'no problems there'."""

    def __init__(self, grid_code: str) -> None:
        super().__init__(grid_code)
        self.grid_code = grid_code


@dataclass(frozen=True)
class CategoryCount:
    category: str
    count: int


@dataclass(frozen=True)
class GridCount:
    grid_code: str
    grid_name: str
    count: int


@dataclass(frozen=True)
class WeekCount:
    week: str  # ISO week in local time, "2026-W48"
    count: int


@dataclass(frozen=True)
class RatingCount:
    rating: str
    count: int


@dataclass(frozen=True)
class RecurringProblem:
    category: str  # the category most of its tickets were filed under
    location: str  # the place as residents wrote it most often (spaces removed)
    count: int  # tickets
    summary: str = ""  # the problem in a resident's words, the place taken out (渗水)
    weeks: tuple[WeekCount, ...] = ()  # tickets per ISO week, weeks with none left out


@dataclass(frozen=True)
class CategoryWeekCount:
    week: str
    category: str
    count: int


@dataclass(frozen=True)
class GridRecurringProblem:
    grid_code: str
    grid_name: str
    category: str
    location: str
    count: int
    summary: str = ""
    weeks: tuple[WeekCount, ...] = ()


@dataclass(frozen=True)
class TicketStats:
    """Figures over the tickets created in [start, end); rates are fractions in 0..1, None when nothing to divide."""

    start: datetime
    end: datetime
    grid_code: str | None
    total: int
    excluded_from_rates: int
    by_category: tuple[CategoryCount, ...]
    by_grid: tuple[GridCount, ...]
    by_week: tuple[WeekCount, ...]
    resolved: int
    resolved_on_time: int
    on_time_rate: float | None
    rated: int
    satisfied: int
    satisfaction_rate: float | None
    by_rating: tuple[RatingCount, ...]
    average_handling_hours: float | None
    overdue_now: int
    top_recurring: tuple[RecurringProblem, ...]
    # The console's charts: volume by week split by category, and where each grid's problems keep coming back.
    by_category_week: tuple[CategoryWeekCount, ...] = ()
    recurring_by_grid: tuple[GridRecurringProblem, ...] = ()


def local_day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """Local calendar days first..last (both included) as the UTC half-open range the columns are compared in.

    Residents and leads speak of local days; a ticket reported at 07:00 on the 1st in Shanghai was stored
    as 23:00 on the 31st UTC and still belongs to the 1st.
    """
    start = datetime.combine(first, time.min, LOCAL_TZ).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, LOCAL_TZ).astimezone(UTC)
    return start, end


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def ticket_stats(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    grid_code: str | None = None,
    now: datetime | None = None,
    within: Collection[str] | None = None,
    problems: ProblemJudge | None = None,
    recurring_since: datetime | None = None,
) -> TicketStats:
    """Statistics of the tickets created in [start, end), in one grid or all; `now` decides what is overdue.

    `within` narrows "all" to the grids a reader may see (a worker's own, a lead's community's): an empty
    collection counts nothing, it never means every grid. `problems` groups recurring problems (None: by place and
    category); `recurring_since` (before `start`) looks further back for them — the weekly report looks back
    several weeks — and lists only the problems reported again within the period.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end < start:
        raise ValueError("end is before start")
    grids = _grids(session, grid_code, within)
    rows = _ticket_rows(session, start, end, grid_code, within)
    worked = [r for r in rows if r.status not in NOT_WORKED]
    resolved = [r for r in worked if r.resolved_at is not None]
    on_time = sum(1 for r in resolved if r.resolved_at <= r.deadline_at)
    rated = [r for r in worked if r.rating is not None]
    satisfied = sum(1 for r in rated if r.rating in SATISFIED)
    moment = now or utcnow()
    history = worked
    if recurring_since is not None and recurring_since < start:
        earlier = _ticket_rows(session, recurring_since, start, grid_code, within)
        history = [r for r in earlier if r.status not in NOT_WORKED] + worked
    recurring = _recurring(history, problems or ProblemJudge(), start)
    return TicketStats(
        start=start,
        end=end,
        grid_code=grid_code,
        total=len(rows),
        excluded_from_rates=len(rows) - len(worked),
        by_category=_by_category(rows),
        by_grid=_by_grid(rows, grids),
        by_week=_by_week(rows, start, end),
        resolved=len(resolved),
        resolved_on_time=on_time,
        on_time_rate=_share(on_time, len(resolved)),
        rated=len(rated),
        satisfied=satisfied,
        satisfaction_rate=_share(satisfied, len(rated)),
        by_rating=_by_rating(rated),
        average_handling_hours=_average_hours(resolved),
        overdue_now=sum(1 for r in worked if r.status in OPEN and r.deadline_at < moment),
        top_recurring=_top_recurring(recurring),
        by_category_week=_by_category_week(rows),
        recurring_by_grid=_recurring_by_grid(recurring, grids),
    )


def _grids(session: Session, grid_code: str | None, within: Collection[str] | None) -> dict[str, str]:
    """Grid code → name of the grids reported on; every one, so a grid without tickets shows as a zero."""
    query = select(Grid.code, Grid.name).order_by(Grid.code)
    if grid_code is not None:
        query = query.where(Grid.code == grid_code)
    if within is not None:
        query = query.where(Grid.code.in_(sorted(within)))
    grids = {code: name for code, name in session.execute(query)}
    if grid_code is not None and not grids:
        raise UnknownGrid(grid_code)
    return grids


def _ticket_rows(
    session: Session, start: datetime, end: datetime, grid_code: str | None, within: Collection[str] | None
) -> Sequence[Any]:
    query = select(
        Ticket.id,
        Ticket.number,
        Ticket.colour,
        Ticket.description,
        Ticket.category,
        Ticket.grid_code,
        Ticket.location,
        Ticket.status,
        Ticket.rating,
        Ticket.created_at,
        Ticket.deadline_at,
        Ticket.resolved_at,
    ).where(Ticket.created_at >= start, Ticket.created_at < end)
    if grid_code is not None:
        query = query.where(Ticket.grid_code == grid_code)
    if within is not None:
        query = query.where(Ticket.grid_code.in_(sorted(within)))
    return session.execute(query).all()


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most first, then by name: a stable order for tables and charts."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _by_category(rows: Iterable[Any]) -> tuple[CategoryCount, ...]:
    """Every configured category, zeros included, so a chart's axis does not change from one period to the next.

    Equal counts keep the order of categories.yml (safety first), which reads better than code-point order.
    """
    table = {c.name: i for i, c in enumerate(load_categories())}
    counts: Counter[str] = Counter(dict.fromkeys(table, 0))
    counts.update(r.category for r in rows)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], table.get(item[0], len(table)), item[0]))
    return tuple(CategoryCount(name, count) for name, count in ranked)


def _by_grid(rows: Iterable[Any], grids: dict[str, str]) -> tuple[GridCount, ...]:
    counts: Counter[str] = Counter(dict.fromkeys(grids, 0))
    counts.update(r.grid_code for r in rows)
    return tuple(GridCount(code, grids.get(code, code), count) for code, count in _ranked(counts))


def _by_week(rows: Iterable[Any], start: datetime, end: datetime) -> tuple[WeekCount, ...]:
    """Every ISO week the period touches, in local time and in order; weeks without tickets show as zeros."""
    counts: Counter[str] = Counter()
    if end > start:
        first = start.astimezone(LOCAL_TZ).date()
        last = (end - timedelta(microseconds=1)).astimezone(LOCAL_TZ).date()
        monday = first - timedelta(days=first.weekday())
        while monday <= last:
            counts[iso_week(monday)] = 0
            monday += timedelta(days=7)
    counts.update(iso_week(r.created_at.astimezone(LOCAL_TZ).date()) for r in rows)
    return tuple(WeekCount(week, count) for week, count in sorted(counts.items()))


def _by_rating(rated: Iterable[Any]) -> tuple[RatingCount, ...]:
    """The three answers in their usual order, zeros included; an unexpected stored value is listed after them."""
    counts: Counter[str] = Counter({r.value: 0 for r in Rating})
    counts.update(r.rating for r in rated)
    return tuple(RatingCount(rating, count) for rating, count in counts.items())


def _average_hours(resolved: Sequence[Any]) -> float | None:
    if not resolved:
        return None
    seconds = sum((r.resolved_at - r.created_at).total_seconds() for r in resolved)
    return seconds / len(resolved) / 3600


def _place(location: str) -> str:
    """Residents type "3号楼 2单元" and "3号楼2单元" for the same place; the duplicate check ignores spaces too."""
    return "".join(location.split())


@dataclass(frozen=True)
class _Recurring:
    """A problem reported again and again at one place: its tickets, in one grid."""

    grid_code: str
    category: str
    location: str
    summary: str
    weeks: tuple[WeekCount, ...]
    count: int


def _recurring(rows: Sequence[Any], problems: ProblemJudge, start: datetime) -> list[_Recurring]:
    """Each grid's tickets grouped by problem (grid/problems.py, one place only), the groups of RECURRING_MIN or
    more tickets that had one in the period (from `start`), most tickets first."""
    by_grid: dict[str, list[Report]] = {}
    for r in sorted(rows, key=lambda r: (r.created_at, r.id)):
        report = Report(r.id, r.number, r.category, r.colour, r.grid_code, r.location, r.description, r.created_at)
        by_grid.setdefault(r.grid_code, []).append(report)
    found: list[_Recurring] = []
    for grid_code, reports in by_grid.items():
        for group in problems.groups(reports, across_places=False):
            if len(group) < RECURRING_MIN or all(r.at < start for r in group):
                continue
            weeks = Counter(iso_week(r.at.astimezone(LOCAL_TZ).date()) for r in group)
            found.append(
                _Recurring(
                    grid_code=grid_code,
                    category=most_said(r.category for r in group),
                    location=most_said(_place(r.location) for r in group),
                    summary=problem_summary(group),
                    weeks=tuple(WeekCount(week, n) for week, n in sorted(weeks.items())),
                    count=len(group),
                )
            )
    found.sort(key=lambda p: (-p.count, p.category, p.location, p.grid_code))
    return found


def _top_recurring(recurring: Sequence[_Recurring]) -> tuple[RecurringProblem, ...]:
    """The same problem at the same place, reported again after the earlier ticket was handled: where to fix for good."""
    return tuple(RecurringProblem(p.category, p.location, p.count, p.summary, p.weeks) for p in recurring[:RECURRING_TOP])


def _by_category_week(rows: Iterable[Any]) -> tuple[CategoryWeekCount, ...]:
    """(week, category) pairs that had tickets, in week order then most first: a stacked chart's bars.

    Only non-zero pairs are listed: by_week already lists every week and by_category every category."""
    counts = Counter((iso_week(r.created_at.astimezone(LOCAL_TZ).date()), r.category) for r in rows)
    ranked = sorted(counts.items(), key=lambda item: (item[0][0], -item[1], item[0][1]))
    return tuple(CategoryWeekCount(week, category, n) for (week, category), n in ranked)


def _recurring_by_grid(recurring: Sequence[_Recurring], grids: dict[str, str]) -> tuple[GridRecurringProblem, ...]:
    """Each grid's top recurring problems: a street office compares grids, a grid fixes its own."""
    out: list[GridRecurringProblem] = []
    for grid_code in sorted({p.grid_code for p in recurring}):
        name = grids.get(grid_code, grid_code)
        ranked = [p for p in recurring if p.grid_code == grid_code][:RECURRING_TOP]
        out.extend(GridRecurringProblem(grid_code, name, p.category, p.location, p.count, p.summary, p.weeks) for p in ranked)
    return tuple(out)
