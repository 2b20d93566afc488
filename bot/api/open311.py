"""Open311 GeoReport v2 (JSON only): how the 12345 hotline and city platforms file and follow tickets.

Services are the issue categories and requests are tickets (service_request_id is the ticket number). A
request filed here goes through TicketService.file_report like a chat report, so it is classified,
deduplicated, dispatched to the grid's worker and written to the outbox the same way. The worker hears of a
hotline ticket as of a chat one (新工单 privately, the lead copied when red or unstaffed; a later report that raises
an open ticket tells them why), and the lead of the early warning (预警) a filing raises: sent after the commit
through the app's dispatcher, as the deadline job sends its notices, so a channel that is down only delays them.

Errors follow GeoReport: a list of {"code", "description"} with the same HTTP status (403 for the API key,
404 for an unknown request, 400 for everything else the caller can fix). Query arguments are read as plain
strings and checked here, so a bad one is answered in that form rather than as FastAPI's 422.

Reads are a public surface: deploy/nginx.conf serves them to the internet, so what residents and workers wrote
(description, address, status notes) goes out through bot/privacy.py's policy for the public, phone, ID card and
room numbers masked, and no reporter is ever named. A city that does not publish requests at all sets
OPEN311_READ_REQUIRES_KEY=true: then GET services and requests need an api_key from OPEN311_API_KEYS as POST does.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bot.api.deps import ServicesDep
from bot.messages import OutgoingMessage
from bot.privacy import Surface, text_as_seen
from bot.settings import Settings
from bot.texts import local_time
from bot.ticket_notices import filing_notices
from bot.warning_notices import warning_notices
from grid import open311 as mapping
from grid.categories import load_categories
from grid.duplicates import DuplicateJudge
from grid.geography import Department, Grid
from grid.service import TicketService
from grid.tickets import Ticket
from grid.warnings import WarningWatch
from grid.workflow import TicketError
from storage.base import utcnow
from storage.engine import unit_of_work


class GeoReportJSON(JSONResponse):
    """GeoReport asks for the charset on every JSON response."""

    media_type = "application/json; charset=utf-8"


router = APIRouter(prefix="/open311/v2", tags=["open311"], default_response_class=GeoReportJSON)

MAX_REQUESTS = 1000
MAX_SPAN = timedelta(days=90)  # GeoReport: the default window, and the widest a query may ask for
MAX_DESCRIPTION_CHARS = 4000  # GeoReport's limit for description
MAX_ADDRESS_CHARS = 256  # Ticket.location
REPORTER_PREFIX_CHARS = len("open311:")
MAX_REPORTER_CHARS = 128  # Ticket.reporter_id / reporter_name


class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool = False  # no service definitions: description and address are all a request needs
    type: Literal["realtime"] = "realtime"  # the ticket number comes back in the POST response
    keywords: str  # comma-separated, as GeoReport defines it
    group: str


class RequestOut(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str
    service_code: str
    description: str
    agency_responsible: str | None
    service_notice: str | None = None
    requested_datetime: str | None
    updated_datetime: str | None
    expected_datetime: str | None
    address: str
    address_id: str | None = None
    zipcode: str | None = None
    lat: float | None = None  # tickets carry a place description, never coordinates
    long: float | None = None
    media_url: str | None = None


class CreatedOut(BaseModel):
    service_request_id: str
    service_notice: str
    account_id: str | None = None


class ErrorOut(BaseModel):
    code: int
    description: str


ERRORS = {
    400: {"model": list[ErrorOut], "description": "Invalid argument"},
    403: {"model": list[ErrorOut], "description": "Missing or invalid api_key"},
    404: {"model": list[ErrorOut], "description": "Unknown service request"},
}


class Refusal(Exception):
    """A request the caller has to change; carries every problem found, as GeoReport allows several."""

    def __init__(self, status: int, *descriptions: str) -> None:
        super().__init__("; ".join(descriptions))
        self.status = status
        self.descriptions = descriptions

    def response(self) -> JSONResponse:
        body = [{"code": self.status, "description": d} for d in self.descriptions]
        return GeoReportJSON(body, status_code=self.status)


def _require_json(fmt: str) -> None:
    if fmt.lower() != "json":
        raise Refusal(400, f"format not supported: use .json (got .{fmt})")


# --- GET services -------------------------------------------------------------------------------


@router.get("/services.{fmt}", response_model=list[ServiceOut], responses=ERRORS)
def list_services(fmt: str, services: ServicesDep, api_key: str | None = None) -> list[ServiceOut] | JSONResponse:
    """One service per issue category, in the categories table's order."""
    try:
        _require_json(fmt)
        _check_read_key(api_key, services.settings, "get_service_list")
    except Refusal as refusal:
        return refusal.response()
    return [
        ServiceOut(
            service_code=mapping.service_code(c.name),
            service_name=c.name,
            description=mapping.service_description(c),
            keywords=", ".join(c.keywords),
            group=mapping.service_group(c.name),
        )
        for c in load_categories()
    ]


# --- GET requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestQuery:
    numbers: list[str] | None  # service_request_id given: overrides every other argument
    categories: list[str] | None
    statuses: list[str] | None
    start: datetime
    end: datetime


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _parse_when(name: str, value: str | None) -> datetime | None:
    """A w3 date-time; an unencoded "+08:00" arrives as " 08:00" in a query string and is read as meant."""
    if not value or not value.strip():
        return None
    text = re.sub(r" (\d{2}:?\d{2})$", r"+\1", value.strip())
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Refusal(400, f"{name} is not an ISO 8601 date-time: use e.g. 2026-01-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise Refusal(400, f"{name} has no time zone: add Z or an offset such as +08:00")
    return parsed


def _read_query(
    service_request_id: str | None, service_code: str | None, start_date: str | None, end_date: str | None, status: str | None
) -> RequestQuery:
    numbers = [n.upper() for n in _split(service_request_id)]
    if len(numbers) > MAX_REQUESTS:
        raise Refusal(400, f"too many service_request_id values: at most {MAX_REQUESTS}")
    problems: list[str] = []
    by_code = mapping.categories_by_code()
    codes = _split(service_code)
    problems += [f"unknown service_code '{c}': see services.json" for c in codes if c not in by_code]
    wanted = [s.lower() for s in _split(status)]
    problems += [f"unknown status '{s}': use open or closed" for s in wanted if s not in mapping.OPEN311_STATUSES]
    start, end = _parse_when("start_date", start_date), _parse_when("end_date", end_date)
    if start is not None and end is None:
        end = start + MAX_SPAN
    end = end or utcnow()
    start = start or end - MAX_SPAN
    if start > end:
        problems.append("start_date is after end_date")
    elif end - start > MAX_SPAN:
        problems.append(f"start_date to end_date spans more than {MAX_SPAN.days} days: ask for a shorter range")
    if problems and not numbers:
        raise Refusal(400, *problems)
    valid = {w for w in wanted if w in mapping.OPEN311_STATUSES}
    statuses = sorted({s for w in valid for s in mapping.statuses_for(w)}) if valid else None
    return RequestQuery(
        numbers=numbers or None,
        categories=[by_code[c].name for c in codes] if codes else None,
        statuses=statuses,
        start=start,
        end=end,
    )


def _find(session: Session, query: RequestQuery) -> list[RequestOut]:
    statement = select(Ticket).options(selectinload(Ticket.events))
    if query.numbers is not None:
        statement = statement.where(Ticket.number.in_(query.numbers))
    else:
        statement = statement.where(Ticket.created_at >= query.start, Ticket.created_at <= query.end)
        if query.categories is not None:
            statement = statement.where(Ticket.category.in_(query.categories))
        if query.statuses is not None:
            statement = statement.where(Ticket.status.in_(query.statuses))
    tickets = list(session.scalars(statement.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(MAX_REQUESTS)))
    return _render(session, tickets)


def _public(text: str) -> str:
    """What residents and workers wrote, as the public may read it (bot/privacy.py decides: masked)."""
    return text_as_seen(text, None, Surface.PUBLIC)


def _render(session: Session, tickets: list[Ticket]) -> list[RequestOut]:
    """Tickets as GeoReport requests, masked for the public; grid and department names are read in one query each."""
    grid_codes = {t.grid_code for t in tickets}
    department_codes = {t.department_code for t in tickets if t.department_code}
    grids = {g.code: g.name for g in session.scalars(select(Grid).where(Grid.code.in_(grid_codes)))} if grid_codes else {}
    departments = (
        {d.code: d.name for d in session.scalars(select(Department).where(Department.code.in_(department_codes)))}
        if department_codes
        else {}
    )
    rendered = []
    for ticket in tickets:
        last = ticket.events[-1] if ticket.events else None
        agency = departments.get(ticket.department_code or "") or grids.get(ticket.grid_code)
        rendered.append(
            RequestOut(
                service_request_id=ticket.number,
                status=mapping.open311_status(ticket.status),  # type: ignore[arg-type]
                status_notes=_public(
                    mapping.status_notes(ticket.status, ticket.result, last.action if last else None, last.note if last else None)
                ),
                service_name=ticket.category,
                service_code=mapping.service_code(ticket.category),
                description=_public(ticket.description),
                agency_responsible=agency,
                requested_datetime=mapping.w3_datetime(ticket.created_at),
                updated_datetime=mapping.w3_datetime(last.created_at if last else ticket.created_at),
                expected_datetime=mapping.w3_datetime(ticket.deadline_at),
                address=_public(ticket.location),
                media_url=next((e.photos[0] for e in ticket.events if e.photos), None),
            )
        )
    return rendered


@router.get("/requests.{fmt}", response_model=list[RequestOut], responses=ERRORS)
def list_requests(
    fmt: str,
    services: ServicesDep,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
    jurisdiction_id: str | None = None,  # one jurisdiction per server: accepted and ignored, as GeoReport allows
    api_key: str | None = None,  # needed only with OPEN311_READ_REQUIRES_KEY
) -> list[RequestOut] | JSONResponse:
    """Requests filed in a window (default: the last 90 days), newest first, at most 1000.

    status: open covers every ticket still being worked on or waiting for the resident's rating;
    closed covers closed, cancelled and merged tickets (see grid.open311.CLOSED_STATUSES).
    """
    try:
        _require_json(fmt)
        _check_read_key(api_key, services.settings, "get_service_requests")
        query = _read_query(service_request_id, service_code, start_date, end_date, status)
    except Refusal as refusal:
        return refusal.response()
    with services.session_factory() as session:
        return _find(session, query)


@router.get("/requests/{request_id}.{fmt}", response_model=list[RequestOut], responses=ERRORS)
def get_request(request_id: str, fmt: str, services: ServicesDep, api_key: str | None = None) -> list[RequestOut] | JSONResponse:
    """One request, as a one-element list like every GeoReport answer."""
    try:
        _require_json(fmt)
        _check_read_key(api_key, services.settings, "get_service_request")
        number = request_id.strip().upper()
        with services.session_factory() as session:
            ticket = session.scalar(select(Ticket).options(selectinload(Ticket.events)).where(Ticket.number == number))
            if ticket is None:
                raise Refusal(404, f"service request '{request_id}' not found")
            return _render(session, [ticket])
    except Refusal as refusal:
        return refusal.response()


# --- POST requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewRequest:
    category: str
    description: str
    address: str
    grid_code: str
    reporter_id: str
    reporter_name: str
    media_url: str | None = None


async def _read_fields(request: Request) -> dict[str, str]:
    """Form fields as GeoReport sends them; a JSON object is read the same way, with attribute as an object or flat keys.

    Query-string arguments fill in what the body lacks: some clients put api_key in the URL.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    fields: dict[str, str] = {}
    if content_type == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise Refusal(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refusal(400, "the JSON body must be an object of fields")
        for key, value in data.items():
            if key == "attribute" and isinstance(value, dict):
                fields.update({f"attribute[{k}]": str(v) for k, v in value.items() if v is not None})
            elif value is not None:
                fields[key] = value if isinstance(value, str) else str(value)
    elif content_type in ("application/x-www-form-urlencoded", ""):
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise Refusal(400, "the body is not UTF-8") from None
    else:
        raise Refusal(400, f"unsupported content type {content_type}: send application/x-www-form-urlencoded (or JSON)")
    for key, value in request.query_params.items():
        fields.setdefault(key, value)
    return fields


_NO_KEYS = "this server has no Open311 API keys configured"
_NO_CREATE = f"creating requests is disabled: {_NO_KEYS}"
_NO_READ = f"reading requests is disabled: reads need an api_key and {_NO_KEYS}"


def _check_key(
    given: str | None, keys: Sequence[SecretStr], method: str = "create_request", disabled: str = _NO_CREATE
) -> None:
    """`method` is GeoReport's name of the call, as its example errors put it ("can't proceed with create_request").
    `keys`: OPEN311_API_KEYS, split when settings load."""
    if not keys:
        raise Refusal(403, disabled)
    if not given:
        raise Refusal(403, "api_key is missing")
    if not any(hmac.compare_digest(given.encode(), key.get_secret_value().encode()) for key in keys):
        raise Refusal(403, f"invalid api_key: can't proceed with {method}")


def _check_read_key(given: str | None, settings: Settings, method: str) -> None:
    """Reads are open unless the city keeps its requests to the systems it gave a key."""
    if settings.open311_read_requires_key:
        _check_key(given, settings.open311_api_keys, method, _NO_READ)


def _validate(fields: dict[str, str]) -> NewRequest:
    """Every problem with the fields at once, so a caller fixes them in one round."""
    value = {k: v.strip() for k, v in fields.items()}
    problems: list[str] = []
    code = value.get("service_code", "")
    category = mapping.categories_by_code().get(code)
    if not code:
        problems.append("service_code is required: see services.json")
    elif category is None:
        problems.append(f"unknown service_code '{code}': see services.json")
    description = value.get("description", "")
    if not description:
        problems.append("description is required")
    elif len(description) > MAX_DESCRIPTION_CHARS:
        problems.append(f"description is too long: {len(description)} characters, at most {MAX_DESCRIPTION_CHARS}")
    address = value.get("address_string", "")
    if not address:
        problems.append("address_string is required: requests are placed by address, lat/long alone are not geocoded")
    elif len(address) > MAX_ADDRESS_CHARS:
        problems.append(f"address_string is too long: {len(address)} characters, at most {MAX_ADDRESS_CHARS}")
    grid_code = value.get("attribute[grid]", "")
    if not grid_code:
        problems.append("attribute[grid] is required: the code of the grid (网格) the address lies in")
    reporter_id, reporter_name = mapping.reporter_identity(
        value.get("account_id"), value.get("phone"), value.get("email"), value.get("first_name"), value.get("last_name")
    )
    if len(reporter_id) > MAX_REPORTER_CHARS:
        problems.append(
            f"account_id, phone or email is too long: at most {MAX_REPORTER_CHARS - REPORTER_PREFIX_CHARS} characters"
        )
    media_url = value.get("media_url") or None
    if media_url and not media_url.startswith(("http://", "https://")):
        problems.append("media_url must be an http(s) URL of the photo")
    if problems or category is None:
        raise Refusal(400, *problems)
    return NewRequest(
        media_url=media_url,
        category=category.name,
        description=description,
        address=address,
        grid_code=grid_code,
        reporter_id=reporter_id,
        reporter_name=reporter_name[:MAX_REPORTER_CHARS],
    )


def _file(
    factory: sessionmaker[Session],
    new: NewRequest,
    duplicates: DuplicateJudge | None = None,
    warnings: WarningWatch | None = None,
) -> tuple[CreatedOut, list[OutgoingMessage]]:
    """File the request in one transaction; a duplicate (grid/duplicates.py) answers with the open ticket it joined.
    Also what the worker and lead are told (bot/ticket_notices.py) and the early warnings it raised, to send once the
    transaction committed."""
    try:
        with unit_of_work(factory) as session:
            filing = TicketService(session, duplicates=duplicates, warnings=warnings).file_report(
                group_id=None,
                grid_code=new.grid_code,
                reporter_id=new.reporter_id,
                reporter_name=new.reporter_name,
                description=new.description,
                location=new.address,
                category=new.category,
                photos=[new.media_url] if new.media_url else None,
            )
            ticket = filing.ticket
            grid = session.get(Grid, ticket.grid_code)
            grid_name = grid.name if grid else ticket.grid_code
            if filing.duplicate:
                notice = mapping.NOTICE_DUPLICATE.format(number=ticket.number)
            else:
                template = mapping.NOTICE_DISPATCHED if ticket.assignee_id else mapping.NOTICE_WAITING
                notice = template.format(grid=grid_name, deadline=local_time(ticket.deadline_at))
            created = CreatedOut(service_request_id=ticket.number, service_notice=notice)
            told = [*filing_notices(session, filing), *warning_notices(filing.warnings)]
        return created, told
    except TicketError as error:
        if error.code == "unknown_grid":
            raise Refusal(400, f"unknown grid '{new.grid_code}' in attribute[grid]") from None
        raise Refusal(400, f"the request could not be filed ({error.code}): retry shortly") from None


@router.post("/requests.{fmt}", status_code=201, response_model=list[CreatedOut], responses=ERRORS)
async def create_request(fmt: str, request: Request, services: ServicesDep) -> list[CreatedOut] | JSONResponse:
    """File a request (form-encoded per GeoReport; JSON accepted too). Needs an api_key from OPEN311_API_KEYS.

    Fields: service_code, description, address_string (becomes the ticket's location), attribute[grid] (the
    grid code, required as there is no geocoding), and optionally account_id / phone / email and
    first_name / last_name for the reporter. A report of a problem already open at the same spot (the same
    problem by meaning, grid/duplicates.py) is linked to that ticket, and its number is returned.
    """
    try:
        _require_json(fmt)
        fields = await _read_fields(request)
        _check_key(fields.get("api_key"), services.settings.open311_api_keys)
        new = _validate(fields)
        created, told = await run_in_threadpool(_file, services.session_factory, new, services.duplicates, services.warnings)
        await services.dispatcher.send(told, origin=services.webchat.name)  # queued for retry if a channel is down
        return [created]
    except Refusal as refusal:
        return refusal.response()
