"""What the console's pages need to draw their forms: categories, grids, regions, workers, street contacts, departments,
group tags.

One read for every page (filters, transfer and escalate targets, notice targets) instead of a request per list.
Any logged-in account may read it: it names places and staff, never residents.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from bot.api.deps import ServicesDep
from bot.auth.deps import AnyAccount
from grid.categories import load_categories
from grid.geography import ChatGroup, Department, Grid, Region, StreetContact, Worker
from grid.labels import labels
from grid.service import COLOURS
from grid.workflow import TRANSITIONS, Role, Status
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/console", tags=["console"])


class CategoryOut(BaseModel):
    name: str
    colour: str
    deadline_hours: int


class RegionOut(BaseModel):
    code: str
    name: str
    level: str
    parent_code: str | None


class GridOut(BaseModel):
    code: str
    name: str
    community_code: str


class WorkerOut(BaseModel):
    id: str
    name: str
    grid_code: str
    role: str
    on_duty: bool


class StreetContactOut(BaseModel):
    id: str
    name: str
    street_code: str
    channel: str


class DepartmentOut(BaseModel):
    code: str
    name: str


class TransitionOut(BaseModel):
    sources: list[str] = Field(description="Statuses the action may be taken from.")
    roles: list[str] = Field(description="Workflow roles that may take it (worker, lead, admin…).")


class MetaOut(BaseModel):
    statuses: dict[str, str] = Field(description="Ticket status → its Chinese name.")
    colours: dict[str, str] = Field(description="Triage colour → its Chinese name.")
    actions: dict[str, str] = Field(description="Ticket event or workflow action → its Chinese name (timeline, buttons).")
    roles: dict[str, str] = Field(description="Workflow role (who took an action) → its Chinese name.")
    transitions: dict[str, TransitionOut] = Field(
        description="The ticket workflow (grid/workflow.py): which buttons a page offers; the server still decides."
    )
    categories: list[CategoryOut]
    regions: list[RegionOut]
    grids: list[GridOut]
    workers: list[WorkerOut]
    street_contacts: list[StreetContactOut] = Field(description="The streets' people (街道), told of red early warnings.")
    departments: list[DepartmentOut]
    tags: list[str]


@router.get("/meta", response_model=MetaOut)
def meta(_account: AnyAccount, services: ServicesDep) -> MetaOut:
    """The lists the console's filters and forms offer, in a stable order."""
    categories = [CategoryOut(name=c.name, colour=c.colour, deadline_hours=c.deadline_hours) for c in load_categories()]
    with unit_of_work(services.session_factory) as session:
        regions = [
            RegionOut(code=r.code, name=r.name, level=r.level, parent_code=r.parent_code)
            for r in session.scalars(select(Region).order_by(Region.code))
        ]
        grids = [
            GridOut(code=g.code, name=g.name, community_code=g.community_code)
            for g in session.scalars(select(Grid).order_by(Grid.code))
        ]
        workers = [
            WorkerOut(id=w.id, name=w.name, grid_code=w.grid_code, role=w.role, on_duty=w.on_duty)
            for w in session.scalars(select(Worker).order_by(Worker.grid_code, Worker.id))
        ]
        street_contacts = [
            StreetContactOut(id=p.id, name=p.name, street_code=p.street_code, channel=p.channel)
            for p in session.scalars(select(StreetContact).order_by(StreetContact.street_code, StreetContact.id))
        ]
        departments = [
            DepartmentOut(code=d.code, name=d.name) for d in session.scalars(select(Department).order_by(Department.code))
        ]
        tags = sorted({tag for group_tags in session.scalars(select(ChatGroup.tags)) for tag in group_tags or ()})
    names = labels()
    return MetaOut(
        # The names of grid/data/ticket_labels.yml, the chat's and Open311's too: the page has no table of its own.
        statuses={s.value: names.statuses[s].name for s in Status},
        colours={c: names.colours[c] for c in COLOURS},
        actions=dict(names.actions),
        roles={r.value: names.roles[r] for r in Role},
        transitions={
            action: TransitionOut(sources=sorted(t.sources), roles=sorted(t.roles)) for action, t in TRANSITIONS.items()
        },
        categories=categories,
        regions=regions,
        grids=grids,
        workers=workers,
        street_contacts=street_contacts,
        departments=departments,
        tags=tags,
    )
