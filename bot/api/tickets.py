"""Tickets over REST: the same use cases as the worker's chat commands, for the console and other systems.

Refusals carry the reason: 404 unknown ticket, 409 when the ticket's state does not allow the action (or
someone changed it first), 403 when this actor may not act on this ticket, 422 for a malformed request.

The actor is the logged-in account (bot/auth): a worker account acts as its grid worker (a lead's as community
lead) and sees only the tickets of its grid (a lead: of its community's grids) — any other is 403, listing another
grid too; viewers read everything, with residents' details masked (bot/privacy.py), and act on nothing; admins
read and act on everything and alone may act for someone else (`actor_id`/`actor_role`, e.g. recording a
department's answer), which is logged.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from bot.api.deps import ServicesDep
from bot.auth.accounts import Principal
from bot.auth.deps import AnyAccount, Staff, refusal
from bot.auth.models import AccountRole
from bot.privacy import Surface, mask_person_id, mask_personal, reporter_as_seen, sees_personal_data
from bot.texts import error_text
from bot.ticket_notices import notices_for
from grid.service import Actor, TicketService
from grid.tickets import Ticket
from grid.workflow import OPEN_STATUSES, Role, TicketError
from storage.base import utcnow
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])
log = logging.getLogger(__name__)

_NOT_FOUND = {"ticket_not_found", "unknown_worker", "unknown_department", "unknown_group", "unknown_grid"}
_FORBIDDEN = {"not_assignee", "not_your_department", "not_your_community", "not_reporter", "role_not_allowed"}


class EventOut(BaseModel):
    action: str
    from_status: str | None
    to_status: str
    actor_id: str
    actor_role: str
    note: str | None
    photos: list[str] | None
    created_at: datetime


class TicketOut(BaseModel):
    number: str
    status: str
    category: str
    colour: str
    description: str
    location: str
    reporter_id: str
    reporter_name: str
    group_id: str | None
    grid_code: str
    assignee_id: str | None
    department_code: str | None
    created_at: datetime
    deadline_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    result: str | None
    rating: str | None
    overdue: bool


class TicketDetail(TicketOut):
    events: list[EventOut]
    co_reporters: list[str]


class ActionIn(BaseModel):
    action: Literal[
        "dispatch", "accept", "transfer", "escalate", "return", "resolve", "review", "reject", "cancel", "merge", "triage"
    ]
    actor_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Admins only: act for this person (default: the logged-in account itself).",
    )
    actor_role: Literal["worker", "lead", "department", "admin", "resident"] | None = Field(
        default=None, description="Admins only, with actor_id; defaults to that person's registered role (worker/lead)."
    )
    department_code: str | None = Field(default=None, description="Admins only: required with actor_role=department.")
    note: str = Field(default="", max_length=2000, description="Result for resolve, reason for transfer/escalate/return/triage.")
    target: str | None = Field(default=None, description="Worker (transfer, dispatch), department (escalate) or ticket (merge).")
    colour: Literal["red", "yellow", "blue"] | None = None
    deadline_at: datetime | None = None
    photos: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(
        default_factory=list, max_length=9, description="With resolve: references (URLs or media ids) to photos of the result."
    )


# Free text residents and workers wrote, where phone, ID and room numbers may stand.
_PERSONAL_FIELDS = ("description", "location", "result")


def _out(ticket: Ticket, principal: Principal, detail: bool = False) -> TicketOut:
    """A ticket as this account may see it, by the one policy of bot/privacy.py: viewers (leaders reading figures)
    get residents' phone, ID and room numbers and the reporters' names and ids masked; workers and admins need
    them to reach the door."""
    now = utcnow()
    values = {name: getattr(ticket, name) for name in TicketOut.model_fields if name != "overdue"}
    masked = not sees_personal_data(principal.role, Surface.CONSOLE)
    if masked:
        values.update({name: mask_personal(values[name]) for name in _PERSONAL_FIELDS if values[name]})
        values["reporter_id"], values["reporter_name"] = reporter_as_seen(
            ticket.reporter_id, ticket.reporter_name, principal.role, Surface.CONSOLE
        )
    overdue = ticket.is_open and ticket.deadline_at < now
    if not detail:
        return TicketOut(**values, overdue=overdue)
    events = [EventOut.model_validate(e, from_attributes=True) for e in ticket.events]
    co_reporters = [c.reporter_id for c in ticket.co_reporters]
    if masked:
        events = [_masked_event(e) for e in events]
        co_reporters = [mask_person_id(c) for c in co_reporters]
    return TicketDetail(**values, overdue=overdue, events=events, co_reporters=co_reporters)


def _masked_event(event: EventOut) -> EventOut:
    """A residents' step names the resident (their id); staff ids and names stay, they act in their office."""
    update: dict[str, str] = {}
    if event.note:
        update["note"] = mask_personal(event.note)
    if event.actor_role == Role.RESIDENT.value:
        update["actor_id"] = mask_person_id(event.actor_id)
    return event.model_copy(update=update) if update else event


def _refusal(err: TicketError) -> HTTPException:
    status = 404 if err.code in _NOT_FOUND else 403 if err.code in _FORBIDDEN else 409
    if err.code in ("reason_required", "unknown_colour", "deadline_before_report", "same_ticket", "same_worker"):
        status = 422
    return HTTPException(status, detail={"code": err.code, "message": error_text(err.code, err.params)})


def visible(principal: Principal, ticket: Ticket) -> bool:
    """Admins and viewers see every ticket; a worker account those of its grid(s) and any assigned to it."""
    if principal.role is not AccountRole.WORKER:
        return True
    assigned = principal.worker_id is not None and ticket.assignee_id == principal.worker_id
    return ticket.grid_code in principal.grid_codes or assigned


def grid_scope(principal: Principal, grid: str | None) -> frozenset[str] | None:
    """The grids this account's reads cover, or None for every grid (admins, viewers); 403 for a grid not its own.

    One rule for the ticket list, the statistics and the weekly report: a worker account reads its grid (a lead
    its community's grids); asking for another grid is refused rather than answered empty, and asking for none
    means its own. What it is assigned elsewhere is for the ticket list alone (`list_tickets`).
    """
    if principal.role is not AccountRole.WORKER:
        return None if grid is None else frozenset({grid})
    if grid is None:
        return principal.grid_codes
    if grid not in principal.grid_codes:
        raise refusal(403, "grid_not_yours", grid=grid)
    return frozenset({grid})


def _require_visible(principal: Principal, ticket: Ticket) -> None:
    if not visible(principal, ticket):
        raise refusal(403, "not_your_grid", number=ticket.number)


@router.get("", response_model=list[TicketOut])
async def list_tickets(
    principal: AnyAccount,
    services: ServicesDep,
    status: str | None = None,
    grid: str | None = None,
    category: str | None = None,
    colour: str | None = None,
    assignee: str | None = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[TicketOut]:
    query = select(Ticket).order_by(Ticket.id.desc())
    for column, value in (
        (Ticket.status, status),
        (Ticket.grid_code, grid),
        (Ticket.category, category),
        (Ticket.colour, colour),
        (Ticket.assignee_id, assignee),
    ):
        if value is not None:
            query = query.where(column == value)
    if overdue is not None:
        late = Ticket.status_in(OPEN_STATUSES) & (Ticket.deadline_at < utcnow())
        query = query.where(late if overdue else ~late)
    scope = grid_scope(principal, grid)
    if principal.role is AccountRole.WORKER and scope is not None:
        mine = Ticket.grid_code.in_(sorted(scope))
        query = query.where(or_(mine, Ticket.assignee_id == principal.worker_id) if principal.worker_id else mine)
    with unit_of_work(services.session_factory) as session:
        return [_out(t, principal) for t in session.scalars(query.limit(limit).offset(offset))]


@router.get("/{number}", response_model=TicketDetail)
async def get_ticket(number: str, principal: AnyAccount, services: ServicesDep) -> TicketOut:
    with unit_of_work(services.session_factory) as session:
        try:
            ticket = TicketService(session).get(number)
        except TicketError as err:
            raise _refusal(err) from None
        _require_visible(principal, ticket)
        return _out(ticket, principal, detail=True)


@router.post("/{number}/actions", response_model=TicketDetail)
async def act(number: str, body: ActionIn, principal: Staff, services: ServicesDep) -> TicketOut:
    """One step of the loop as the logged-in account; whoever it concerns is told in chat, as in chat."""
    try:
        with unit_of_work(services.session_factory) as session:
            service = TicketService(session)
            actor = _actor(service, principal, body)
            _require_visible(principal, service.get(number))
            if body.action == "merge" and body.target:
                _require_visible(principal, service.get(body.target))
            ticket = _apply(service, number, actor, body)
            notices = notices_for(session, ticket, body.action, actor.id, body.note)
            result = _out(ticket, principal, detail=True)
    except TicketError as err:
        raise _refusal(err) from None
    await services.router.expect_ratings(services.webchat.name, notices)
    await services.webchat.deliver(notices)
    return result


def _actor(service: TicketService, principal: Principal, body: ActionIn) -> Actor:
    """Who the step is recorded as: the account's worker, the admin, or (admins only) the person named."""
    acting_for = body.actor_role is not None or body.department_code is not None
    if principal.role is AccountRole.WORKER:
        if acting_for or (body.actor_id is not None and body.actor_id != principal.worker_id) or not principal.worker_id:
            raise refusal(403, "act_for_others")
        return service.actor_for(principal.worker_id)
    if body.actor_id is None:
        if acting_for:
            raise HTTPException(422, "actor_role and department_code go with actor_id (the person acted for)")
        return Actor(principal.username, Role.ADMIN)
    log.info("admin %s acts on a ticket for %s (%s)", principal.username, body.actor_id, body.actor_role or "registered role")
    if body.actor_role == "department":
        if not body.department_code:
            raise HTTPException(422, "actor_role department needs department_code")
        return Actor(body.actor_id, Role.DEPARTMENT, body.department_code)
    if body.actor_role is not None:
        return Actor(body.actor_id, Role(body.actor_role))
    return service.actor_for(body.actor_id)


def _apply(service: TicketService, number: str, actor: Actor, body: ActionIn) -> Ticket:
    if body.photos and body.action != "resolve":
        raise HTTPException(422, "photos are recorded with resolve (the result); reports bring theirs when filed")
    match body.action:
        case "dispatch":
            return service.dispatch(number, actor, body.target)
        case "accept":
            return service.accept(number, actor)
        case "transfer":
            return service.transfer(number, actor, _needs(body.target, "target worker"), body.note)
        case "escalate":
            return service.escalate(number, actor, _needs(body.target, "target department"), body.note)
        case "return":
            return service.return_ticket(number, actor, body.note)
        case "resolve":
            return service.resolve(number, actor, _needs(body.note or None, "note (the result)"), photos=body.photos)
        case "review" | "reject":
            return service.review(number, actor, approve=body.action == "review", note=body.note)
        case "cancel":
            return service.cancel(number, actor, body.note)
        case "merge":
            return service.merge(number, _needs(body.target, "target ticket"), actor)
        case "triage":
            return service.change_triage(number, actor, colour=body.colour, deadline_at=body.deadline_at, reason=body.note)
    raise HTTPException(422, f"unknown action {body.action}")


def _needs(value: str | None, what: str) -> str:
    if not value:
        raise HTTPException(422, f"this action needs {what}")
    return value
