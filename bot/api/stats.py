"""Ticket statistics over local calendar days, for dashboards and the street office's weekly report.

Scoped and masked like the tickets they count: a worker account reads its own grids only (a lead its
community's; another grid is 403, as in the ticket list), and the recurring problems' places, which residents
typed, are masked for everyone but admins by bot/privacy.py's policy (a place may name a room).
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from bot.api.deps import ServicesDep
from bot.api.tickets import grid_scope
from bot.auth.deps import AnyAccount
from bot.privacy import Surface, mask_personal, sees_personal_data
from grid.clock import LOCAL_TZ
from grid.stats import GridRecurringProblem, RecurringProblem, UnknownGrid, local_day_range, ticket_stats
from storage.engine import unit_of_work

router = APIRouter(tags=["stats"])
DEFAULT_DAYS = 30
# Each touched week is listed (zeros included): an unbounded range would make an unbounded answer.
MAX_DAYS = 3660


class _FromDomain(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CategoryCountOut(_FromDomain):
    category: str
    count: int


class GridCountOut(_FromDomain):
    grid_code: str
    grid_name: str
    count: int


class WeekCountOut(_FromDomain):
    week: str = Field(description='ISO week in Asia/Shanghai time, e.g. "2026-W48".')
    count: int


class RatingCountOut(_FromDomain):
    rating: str = Field(description="满意, 基本满意 or 不满意.")
    count: int


class RecurringProblemOut(_FromDomain):
    category: str = Field(description="The category most of its tickets were filed under.")
    location: str = Field(description="As reported most often, spaces removed.")
    count: int = Field(description="Tickets about this problem at this place (grouped by meaning, grid/problems.py).")
    summary: str = Field(default="", description="The problem in a resident's words, without the place.")
    weeks: list[WeekCountOut] = Field(default_factory=list, description="Its tickets per ISO week (weeks with none left out).")


class CategoryWeekCountOut(_FromDomain):
    week: str
    category: str
    count: int


class GridRecurringProblemOut(_FromDomain):
    grid_code: str
    grid_name: str
    category: str
    location: str
    count: int
    summary: str = ""
    weeks: list[WeekCountOut] = Field(default_factory=list)


class StatsOut(BaseModel):
    """Rates are fractions in 0..1 and null when there is nothing to divide; values are unrounded."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", description="First local day counted.")
    to: date = Field(description="Last local day counted (included).")
    grid: str | None = Field(description="The grid asked for; null means every grid the account may see.")
    grids: list[str] | None = Field(
        default=None, description="For a worker account without `grid`: the grids counted (its own); null: every grid."
    )
    timezone: str = Field(description="The time zone the days and weeks are in.")
    start: datetime = Field(description="The UTC instant the period starts (included).")
    end: datetime = Field(description="The UTC instant the period ends (excluded).")
    total: int = Field(description="Tickets created in the period, merged and cancelled ones included.")
    excluded_from_rates: int = Field(description="Merged or cancelled tickets: counted in totals, not in rates or times.")
    by_category: list[CategoryCountOut] = Field(description="Every category, most tickets first.")
    by_grid: list[GridCountOut] = Field(description="Every grid asked for, most tickets first.")
    by_week: list[WeekCountOut] = Field(description="Every week the period touches, in order.")
    resolved: int = Field(description="Tickets that reached 办结 (resolved), whatever their status now.")
    resolved_on_time: int = Field(description="Resolved tickets resolved by their deadline.")
    on_time_rate: float | None = Field(description="resolved_on_time / resolved.")
    rated: int = Field(description="Tickets the resident rated.")
    satisfied: int = Field(description="Rated 满意 or 基本满意.")
    satisfaction_rate: float | None = Field(description="satisfied / rated.")
    by_rating: list[RatingCountOut]
    average_handling_hours: float | None = Field(description="Mean hours from report to resolution over resolved tickets.")
    overdue_now: int = Field(description="Tickets of the period still open and past their deadline at the time of asking.")
    top_recurring: list[RecurringProblemOut] = Field(
        description="Up to 5 problems reported at least twice at one place (alike in meaning), most often first."
    )
    by_category_week: list[CategoryWeekCountOut] = Field(
        default_factory=list, description="Tickets per (ISO week, category), non-zero pairs only, in week order."
    )
    recurring_by_grid: list[GridRecurringProblemOut] = Field(
        default_factory=list, description="Per grid, up to 5 problems reported at least twice at one place."
    )


def _masked(problem: RecurringProblem | GridRecurringProblem) -> RecurringProblem | GridRecurringProblem:
    """A place and a resident's words may name a room: masked for readers of figures."""
    return replace(problem, location=mask_personal(problem.location), summary=mask_personal(problem.summary))


@router.get("/api/v1/stats", response_model=StatsOut)
def stats(
    principal: AnyAccount,
    services: ServicesDep,
    from_: Annotated[
        date | None, Query(alias="from", description="First local day, YYYY-MM-DD; default: 29 days before `to`.")
    ] = None,
    to: Annotated[date | None, Query(description="Last local day (included), YYYY-MM-DD; default: today.")] = None,
    grid: Annotated[
        str | None, Query(min_length=1, max_length=64, description="A grid code such as grid-1; default: all.")
    ] = None,
) -> StatsOut:
    """Ticket statistics over local days `from`..`to` (both included), by default the last 30 days.

    A plain (not async) handler: FastAPI runs it in a worker thread, so the blocking query never stalls the chat.
    Any logged-in account may read the figures (viewers are the leaders who watch them); a worker account those of
    its own grids (403 for another grid).
    """
    scope = grid_scope(principal, grid)
    within = scope if grid is None else None
    last = to or datetime.now(LOCAL_TZ).date()
    first = from_ or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise HTTPException(422, f"'from' ({first}) is after 'to' ({last}): give the earlier day first")
    if (last - first).days >= MAX_DAYS:
        raise HTTPException(422, f"the period is {(last - first).days + 1} days long: ask for at most {MAX_DAYS} days at a time")
    try:
        start, end = local_day_range(first, last)
    except OverflowError:
        raise HTTPException(422, f"{first}..{last} is outside the dates the server can count") from None
    with unit_of_work(services.session_factory) as session:
        try:
            figures = ticket_stats(session, start=start, end=end, grid_code=grid, within=within, problems=services.problems)
        except UnknownGrid:
            raise HTTPException(404, f"unknown grid '{grid}': use a grid code such as grid-1") from None
    values = {f.name: getattr(figures, f.name) for f in fields(figures) if f.name != "grid_code"}
    if not sees_personal_data(principal.role, Surface.REPORT):
        values["top_recurring"] = [_masked(r) for r in figures.top_recurring]
        values["recurring_by_grid"] = [_masked(r) for r in figures.recurring_by_grid]
    grids = sorted(within) if within is not None else None
    return StatsOut(from_=first, to=last, grid=grid, grids=grids, timezone=str(LOCAL_TZ), **values)
