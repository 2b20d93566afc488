"""Early warnings (预警) over REST, for the console's 预警 page and city platforms: list, acknowledge, close.

Scoped like the tickets they cover: a worker account reads the warnings of its own community only (another one's
is 404, as if absent) and a lead's account also acknowledges and closes them; viewers read every warning and act on
none; admins do everything. Places and descriptions residents wrote are masked by bot/privacy.py's one policy, as on the ticket
list. Acknowledge (确认: the lead has it in hand) from open; close (关闭: dealt with) from open or acknowledged; a
refused change says why (409), and two leads clicking at once get one success and one conflict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.api.deps import ServicesDep
from bot.auth.accounts import Principal
from bot.auth.deps import AnyAccount, Staff
from bot.auth.models import AccountRole
from bot.privacy import Surface, mask_personal, sees_personal_data
from bot.texts import text
from grid.geography import Region
from grid.tickets import Ticket
from grid.warnings import EarlyWarning, WarningError, WarningState, change_state, community_of_grids, list_warnings
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/warnings", tags=["warnings"])


class WarnedTicketOut(BaseModel):
    number: str
    category: str
    colour: str
    status: str
    location: str
    description: str


class WarningOut(BaseModel):
    id: int
    rule: str = Field(description="problem: reports of one problem; category: reports of one category in the community.")
    community_code: str
    community_name: str
    category: str
    colour: str = Field(description="red when any of its tickets is red (the street is told: its contacts, and the outbox).")
    state: str = Field(description="open, acknowledged or closed.")
    reports: int = Field(description="Reports in its window when it last grew.")
    level: int = Field(description="The step it last warned at: the threshold, then twice it, four times… (3, 6, 12).")
    hours: float = Field(description="The rule's window in hours.")
    summary: str
    places: list[str]
    tickets: list[WarnedTicketOut]
    created_at: datetime
    warned_at: datetime = Field(description="When the lead was last told (raised, or grown past a step).")
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None
    note: str | None


class StateIn(BaseModel):
    note: str = Field(default="", max_length=500, description="What the lead did or decided (optional).")


def _communities(session: Session, principal: Principal) -> set[str] | None:
    """The communities this account's warnings come from; None: every one (admins, viewers)."""
    if principal.role is not AccountRole.WORKER:
        return None
    return community_of_grids(session, principal.grid_codes)


def _out(session: Session, warnings: list[EarlyWarning], principal: Principal) -> list[WarningOut]:
    masked = not sees_personal_data(principal.role, Surface.CONSOLE)
    seen = (lambda value: mask_personal(value)) if masked else (lambda value: value)
    ids = sorted({i for w in warnings for i in w.ticket_ids or []})
    tickets = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_(ids)))} if ids else {}
    names = {r.code: r.name for r in session.scalars(select(Region).where(Region.code.in_({w.community_code for w in warnings})))}
    out = []
    for w in warnings:
        listed = [tickets[i] for i in w.ticket_ids or [] if i in tickets]
        out.append(
            WarningOut(
                id=w.id,
                rule=w.rule,
                community_code=w.community_code,
                community_name=names.get(w.community_code, w.community_code),
                category=w.category,
                colour=w.colour,
                state=w.state,
                reports=w.reports,
                level=w.level,
                hours=w.hours,
                summary=seen(w.summary),
                places=[seen(p) for p in w.places or []],
                tickets=[
                    WarnedTicketOut(
                        number=t.number,
                        category=t.category,
                        colour=t.colour,
                        status=t.status,
                        location=seen(t.location),
                        description=seen(t.description),
                    )
                    for t in listed
                ],
                created_at=w.created_at,
                warned_at=w.warned_at,
                acknowledged_by=w.acknowledged_by,
                acknowledged_at=w.acknowledged_at,
                closed_by=w.closed_by,
                closed_at=w.closed_at,
                note=seen(w.note) if w.note else None,
            )
        )
    return out


def _refusal(status: int, code: str, **params: object) -> HTTPException:
    return HTTPException(status, detail={"code": code, "message": text(f"console.errors.{code}", **params)})


@router.get("", response_model=list[WarningOut])
def warnings(
    principal: AnyAccount,
    services: ServicesDep,
    state: Annotated[list[Literal["open", "acknowledged", "closed"]] | None, Query(description="Default: every state.")] = None,
    community: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[WarningOut]:
    """Warnings, the latest told first; a worker account's own communities only."""
    with unit_of_work(services.session_factory) as session:
        scope = _communities(session, principal)
        chosen = scope if community is None else ({community} & scope if scope is not None else {community})
        found = list_warnings(session, communities=chosen, states=state, limit=limit)
        return _out(session, found, principal)


@router.post("/{warning_id}/{action}", response_model=WarningOut)
def change(
    warning_id: int,
    action: Literal["acknowledge", "close"],
    principal: Staff,
    services: ServicesDep,
    body: StateIn | None = None,
) -> WarningOut:
    """确认 (acknowledge) or 关闭 (close): a lead's account its community's warnings, an admin any; a worker
    account reads them (403 here), a viewer only reads."""
    actor = principal.worker_id or principal.username
    with unit_of_work(services.session_factory) as session:
        warning = session.get(EarlyWarning, warning_id)
        scope = _communities(session, principal)
        if warning is None or (scope is not None and warning.community_code not in scope):
            raise _refusal(404, "warning_not_found", id=warning_id)
        if principal.role is AccountRole.WORKER and principal.worker_role != "lead":
            raise _refusal(403, "warning_lead_only", id=warning_id)
        try:
            changed = change_state(session, warning_id, action, actor, body.note if body else "")
        except WarningError as err:
            status = 404 if err.code == "warning_not_found" else 409
            state = str(err.params.get("state", ""))
            known = state in {s.value for s in WarningState}
            state_name = text(f"console.warning_states.{state}") if known else state
            raise _refusal(status, err.code, id=warning_id, state_name=state_name) from None
        return _out(session, [changed], principal)[0]
