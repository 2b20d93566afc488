"""The street office's weekly report as an XLSX workbook: the week's figures, categories, grids, recurring problems
and every ticket reported in it.

`GET /api/v1/reports/weekly?week=2026-W48[&grid=grid-1]`: ISO week in local time (Asia/Shanghai), by default the
current one. The figures are the same as `GET /api/v1/stats` for that week's seven days (grid/stats.py), so the
download and the dashboard never disagree. Any logged-in account may download it (viewers are its readers).

A workbook leaves the console: it is mailed, printed and opened on other machines. So it is built to be safe there:
- scoped like the ticket list: a worker account gets its own grids (a lead its community's), another grid is 403;
- masked for everyone but admins by bot/privacy.py's one policy (phone, ID and room numbers in what residents and
  workers wrote), and it names no reporter at all;
- every text cell that a spreadsheet would read as a formula (= + - @, or a leading tab or CR) is prefixed with
  an apostrophe, as OWASP's CSV-injection advice has it, so `=HYPERLINK(…)` in a resident's description stays
  text in Excel and WPS; numbers stay numbers. Characters an XLSX cannot hold (control characters) are dropped.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.api.deps import ServicesDep
from bot.api.tickets import grid_scope
from bot.auth.deps import AnyAccount
from bot.privacy import Surface, text_as_seen
from bot.texts import colour_name, status_name, text
from grid.clock import LOCAL_TZ
from grid.geography import Grid, Worker
from grid.problems import ProblemJudge
from grid.stats import GridRecurringProblem, TicketStats, UnknownGrid, iso_week, local_day_range, ticket_stats
from grid.tickets import Ticket
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
# What makes a spreadsheet read a cell as a formula (OWASP, CSV injection), tab and CR included.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# How far back the recurring problems look: the report's week and the seven before it.
RECURRING_WEEKS = 8


@dataclass(frozen=True)
class Reader:
    """Who the workbook is for: which grids it covers (None: all) and whether it shows personal data."""

    within: frozenset[str] | None  # None: every grid
    role: str | None  # AccountRole's value; None: nobody logged in (masked, like any non-admin)

    def sees(self, text_value: str) -> str:
        return text_as_seen(text_value, self.role, Surface.REPORT)


@dataclass(frozen=True)
class Week:
    label: str
    first: date
    last: date


def parse_week(value: str | None, today: date) -> Week:
    """ISO week "2026-W48" as Monday..Sunday; None: the week of `today`. 422 for anything else or a non-existent week."""
    if value is None:
        monday = today - timedelta(days=today.weekday())
    else:
        match = _WEEK.match(value.strip())
        if match is None:
            raise _bad_week(value)
        try:
            monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise _bad_week(value) from None
    return Week(iso_week(monday), monday, monday + timedelta(days=6))


def _bad_week(value: str) -> HTTPException:
    return HTTPException(422, detail={"code": "bad_week", "message": text("console.errors.bad_week", week=value)})


def _t(key: str, **params: object) -> str:
    return text(f"console.report.{key}", **params)


def _local(moment: datetime | None) -> str:
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if moment else ""


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def safe_cell(value: object) -> object:
    """A value as a cell that stays what it is: text never becomes a formula, numbers stay numbers."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def _append(sheet: Worksheet, row: list[object]) -> None:
    sheet.append([safe_cell(value) for value in row])


def _table(sheet: Worksheet, header: list[str], rows: list[list[object]]) -> None:
    _append(sheet, header)
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)
    for row in rows:
        _append(sheet, row)
    for column, title in zip(sheet.columns, header, strict=False):
        width = max([len(str(title)) * 2, *(min(len(str(c.value or "")), 40) * 2 for c in column)]) + 2
        sheet.column_dimensions[column[0].column_letter].width = min(width, 60)


def build_workbook(session: Session, week: Week, grid: str | None, reader: Reader, problems: ProblemJudge | None = None) -> bytes:
    """The report as XLSX bytes for this reader; raises UnknownGrid for an unknown grid code.

    Its recurring problems (举一反三) look back RECURRING_WEEKS weeks and list those reported again this week, each
    with its tickets per week: "3号楼地下室：渗水（4周7次）"."""
    start, end = local_day_range(week.first, week.last)
    since = start - timedelta(weeks=RECURRING_WEEKS - 1)
    figures: TicketStats = ticket_stats(
        session, start=start, end=end, grid_code=grid, within=reader.within, problems=problems, recurring_since=since
    )
    c = "columns."
    book = Workbook()
    summary = book.active
    summary.title = _t("sheets.summary")
    _append(summary, [_t("title", week=week.label, first=week.first.isoformat(), last=week.last.isoformat())])
    summary["A1"].font = Font(bold=True, size=14)
    _append(summary, [_scope(session, grid, reader)])
    _append(summary, [_t("generated", time=_local(datetime.now(LOCAL_TZ)))])
    summary.append([])
    f = "figures."
    rows: list[list[object]] = [
        [_t(f + "total"), figures.total],
        [_t(f + "excluded"), figures.excluded_from_rates],
        [_t(f + "resolved"), figures.resolved],
        [_t(f + "resolved_on_time"), figures.resolved_on_time],
        [_t(f + "on_time_rate"), _rate(figures.on_time_rate)],
        [_t(f + "rated"), figures.rated],
        [_t(f + "satisfied"), figures.satisfied],
        [_t(f + "satisfaction_rate"), _rate(figures.satisfaction_rate)],
        [
            _t(f + "average_handling_hours"),
            "" if figures.average_handling_hours is None else round(figures.average_handling_hours, 1),
        ],
        [_t(f + "overdue_now"), figures.overdue_now],
    ]
    _table(summary, [_t(c + "figure"), _t(c + "value")], rows)
    _table(
        book.create_sheet(_t("sheets.categories")),
        [_t(c + "category"), _t(c + "count")],
        [[x.category, x.count] for x in figures.by_category],
    )
    _table(
        book.create_sheet(_t("sheets.grids")),
        [_t(c + "grid_code"), _t(c + "grid"), _t(c + "count")],
        [[x.grid_code, x.grid_name, x.count] for x in figures.by_grid],
    )
    _table(
        book.create_sheet(_t("sheets.recurring")),
        [_t(c + k) for k in ("grid", "category", "location", "count", "problem", "weeks", "per_week", "recurring")],
        [_recurring_row(x, reader) for x in figures.recurring_by_grid],
    )
    _table(book.create_sheet(_t("sheets.tickets")), *_ticket_rows(session, start, end, grid, reader))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _recurring_row(problem: GridRecurringProblem, reader: Reader) -> list[object]:
    """Grid, category, place, tickets, the problem, in how many weeks, per week, and the line a lead reads."""
    location, summary, weeks = reader.sees(problem.location), reader.sees(problem.summary), len(problem.weeks)
    return [
        problem.grid_name,
        problem.category,
        location,
        problem.count,
        summary,
        weeks,
        " ".join(_t("week_count", week=w.week, count=w.count) for w in problem.weeks),
        _t("recurring", location=location, summary=summary, weeks=weeks, count=problem.count),
    ]


def _scope(session: Session, grid: str | None, reader: Reader) -> str:
    """The grids the workbook covers: the one asked for, the reader's own, or all."""
    codes = [grid] if grid else sorted(reader.within) if reader.within is not None else []
    if grid is None and reader.within is None:
        return _t("scope_all")
    names = {code: name for code, name in session.execute(select(Grid.code, Grid.name).where(Grid.code.in_(codes)))}
    return _t("scope_grid", grid="、".join(names.get(code, code) for code in codes))


def _ticket_rows(
    session: Session, start: datetime, end: datetime, grid: str | None, reader: Reader
) -> tuple[list[str], list[list[object]]]:
    c = "columns."
    header = [
        _t(c + k)
        for k in (
            "number", "grid_code", "category", "colour", "status", "location", "description",
            "created_at", "deadline_at", "resolved_at", "assignee", "rating",
        )
    ]  # fmt: skip
    query = select(Ticket).where(Ticket.created_at >= start, Ticket.created_at < end).order_by(Ticket.id)
    if grid is not None:
        query = query.where(Ticket.grid_code == grid)
    if reader.within is not None:
        query = query.where(Ticket.grid_code.in_(sorted(reader.within)))
    names: dict[str, str] = {worker_id: name for worker_id, name in session.execute(select(Worker.id, Worker.name))}
    rows: list[list[object]] = [
        [
            t.number,
            t.grid_code,
            t.category,
            colour_name(t.colour),
            status_name(t.status),
            reader.sees(t.location),
            reader.sees(t.description),
            _local(t.created_at),
            _local(t.deadline_at),
            _local(t.resolved_at),
            names.get(t.assignee_id or "", t.assignee_id or ""),
            t.rating or "",
        ]
        for t in session.scalars(query)
    ]
    return header, rows


@router.get("/weekly", response_class=Response, responses={200: {"content": {XLSX_TYPE: {}}}, 404: {}, 422: {}})
def weekly_report(
    principal: AnyAccount,
    services: ServicesDep,
    week: Annotated[str | None, Query(max_length=16, description="ISO week such as 2026-W48; default: this week.")] = None,
    grid: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$", description="One grid; default: all.")
    ] = None,
) -> Response:
    """The week's report as an .xlsx download (a plain handler: the query and the workbook run in a worker thread).

    A worker account gets its own grids (403 for another); everyone but admins gets residents' details masked.
    """
    scope = grid_scope(principal, grid)
    reader = Reader(within=scope if grid is None else None, role=principal.role.value)
    chosen = parse_week(week, datetime.now(LOCAL_TZ).date())
    with unit_of_work(services.session_factory) as session:
        try:
            content = build_workbook(session, chosen, grid, reader, services.problems)
        except UnknownGrid:
            raise HTTPException(404, f"unknown grid '{grid}'") from None
    name = f"weekly-report-{chosen.label}{'-' + grid if grid else ''}.xlsx"
    return Response(content, media_type=XLSX_TYPE, headers={"Content-Disposition": f'attachment; filename="{name}"'})
