"""The console's view of the iLink channel: who is bound, each person's reply window, what could not go out,
and binding a new person by QR code (admins). 404 when the channel does not run here.

The QR image is drawn here as SVG (python-qrcode, no image library needed) from the URL WeChat gives for the
code, and sent as a data: URL the console page shows (its CSP allows data: images); the URL itself is sent too,
so a worker can forward it to a resident to open in WeChat instead of scanning.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime
from typing import Annotated

import httpx
import qrcode
import qrcode.image.svg
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.api.deps import ServicesDep
from bot.auth.deps import Admin, AnyAccount
from bot.channels.ilink import store
from bot.channels.ilink.channel import IlinkChannel
from bot.channels.ilink.inbound import CHANNEL
from bot.channels.ilink.login import LoginState
from bot.channels.ilink.protocol import ApiError, ProtocolError
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.registry import UnknownChannel
from bot.privacy import Surface, mask_person_id, mask_personal, sees_personal_data
from grid.geography import Grid, Worker
from storage.base import utcnow
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/channels/ilink", tags=["channels"])
_REFUSED_SHOWN = 50


def _channel(request: Request) -> IlinkChannel:
    try:
        channel = request.app.state.services.channels.get(CHANNEL)
    except UnknownChannel:
        raise HTTPException(404, "the iLink channel is not running here (ILINK_ENABLED)") from None
    assert isinstance(channel, IlinkChannel)
    return channel


ChannelDep = Annotated[IlinkChannel, Depends(_channel)]


class BindingOut(BaseModel):
    bot_id: str
    user_id: str = Field(description="The WeChat user who scanned: the contact id the bot talks to.")
    grid_code: str | None = Field(description="Where their private reports are filed (None: they are asked to use a group).")
    state: str
    paused_until: datetime | None
    polling: str = Field(description="The poll's health: up, connecting or down.")
    detail: str


class ContactOut(BaseModel):
    contact_id: str
    worker_name: str | None = Field(description="The worker with this id on the ilink channel, if any.")
    last_inbound_at: datetime | None
    window_until: datetime | None = Field(description="Until when WeChat takes the bot's messages (if they do not write).")
    sent: int
    left: int = Field(description="Messages WeChat still takes before the person writes again (0: none).")
    closed: str | None = Field(description="Why WeChat refused a message before our count said so.")
    last_refusal: str | None
    last_refusal_at: datetime | None


class RefusedOut(BaseModel):
    id: int
    target_id: str
    text: str = Field(description="The start of the message.")
    error: str
    created_at: datetime


class OverviewOut(BaseModel):
    window_hours: float
    messages_per_inbound: int
    bindings: list[BindingOut]
    contacts: list[ContactOut]
    refused: list[RefusedOut] = Field(description="Messages that could not go out, newest first.")


class LoginOut(BaseModel):
    id: str
    status: str = Field(description="wait, scaned, need_verifycode, confirmed, already_bound or failed.")
    qr_url: str = Field(description="What the QR code encodes: can also be opened in WeChat directly.")
    qr_image: str = Field(description="The QR code as an SVG data: URL.")
    codes: int = Field(description="How many QR codes this login has used (a new one when one expires; at most 3).")
    message: str
    bot_id: str
    user_id: str


class LoginIn(BaseModel):
    grid_code: str | None = Field(
        default=None, max_length=64, description="The grid of the person who will scan: their private reports go there."
    )


class VerifyIn(BaseModel):
    code: str = Field(min_length=1, max_length=16, pattern=r"^[0-9A-Za-z]+$")


@router.get("", response_model=OverviewOut)
async def overview(channel: ChannelDep, services: ServicesDep, principal: AnyAccount) -> OverviewOut:
    """Bindings and their polls, each person's reply window, and the messages that could not go out; people's ids
    and the messages' text masked for an account that may not see personal data (bot/privacy.py)."""
    masked = not sees_personal_data(principal.role, Surface.CONSOLE)
    person = mask_person_id if masked else _as_is
    pollers = {p.binding.bot_id: p for p in channel.pollers()}
    rows, contacts, refused, workers = await asyncio.to_thread(_read, services.session_factory)
    window = channel.config.reply_window
    cap = channel.config.messages_per_inbound
    now = utcnow()
    bindings = []
    for row in rows:
        poller = pollers.get(row.bot_id)
        health = poller.health if poller is not None else None
        bindings.append(
            BindingOut(
                bot_id=row.bot_id, user_id=person(row.user_id), grid_code=row.grid_code, state=row.state,
                paused_until=row.paused_until,
                polling=health.status.value if health else "down",
                detail=health.detail.replace(row.user_id, person(row.user_id)) if health else "not polled here",
            )
        )  # fmt: skip
    contact_rows = []
    for c in contacts:
        until = c.last_inbound_at + window if c.last_inbound_at is not None else None
        open_ = until is not None and until > now and c.closed is None
        contact_rows.append(
            ContactOut(
                contact_id=person(c.contact_id), worker_name=workers.get(c.contact_id), last_inbound_at=c.last_inbound_at,
                window_until=until, sent=c.sent, left=max(cap - c.sent, 0) if open_ else 0, closed=c.closed,
                last_refusal=c.last_refusal, last_refusal_at=c.last_refusal_at,
            )
        )  # fmt: skip
    return OverviewOut(
        window_hours=window.total_seconds() / 3600, messages_per_inbound=cap, bindings=bindings, contacts=contact_rows,
        refused=[_refused_as_seen(r) for r in refused] if masked else refused,
    )  # fmt: skip


def _as_is(value: str) -> str:
    return value


def _refused_as_seen(message: RefusedOut) -> RefusedOut:
    return message.model_copy(update={"target_id": mask_person_id(message.target_id), "text": mask_personal(message.text)})


def _read(
    factory: sessionmaker[Session],
) -> tuple[list[store.IlinkBinding], list[store.IlinkContact], list[RefusedOut], dict[str, str]]:
    with unit_of_work(factory) as session:
        rows = list(session.scalars(select(store.IlinkBinding).order_by(store.IlinkBinding.bound_at)))
        for row in rows:
            session.expunge(row)
        contacts = store.contacts(session)
        failed = session.scalars(
            select(OutboundMessage)
            .where(OutboundMessage.channel == CHANNEL, OutboundMessage.status == OutboundStatus.FAILED)
            .order_by(OutboundMessage.id.desc())
            .limit(_REFUSED_SHOWN)
        )
        refused = [
            RefusedOut(id=m.id, target_id=m.target_id, text=m.text[:80], error=m.last_error or "", created_at=m.created_at)
            for m in failed
        ]
        workers = {wid: name for wid, name in session.execute(select(Worker.id, Worker.name).where(Worker.channel == CHANNEL))}
        return rows, contacts, refused, workers


def _grid_exists(factory: sessionmaker[Session], code: str) -> bool:
    with unit_of_work(factory) as session:
        return session.get(Grid, code) is not None


def _login_out(state: LoginState) -> LoginOut:
    return LoginOut(
        id=state.id, status=state.status, qr_url=state.qr_url, qr_image=qr_data_url(state.qr_url) if state.qr_url else "",
        codes=state.codes, message=state.message, bot_id=state.bot_id, user_id=state.user_id,
    )  # fmt: skip


def qr_data_url(content: str) -> str:
    image = qrcode.make(content, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(image.to_string()).decode()


@router.post("/logins", response_model=LoginOut, status_code=201)
async def start_login(channel: ChannelDep, services: ServicesDep, _: Admin, body: LoginIn | None = None) -> LoginOut:
    """A QR code for one person to scan with WeChat and confirm; poll the login until it is confirmed."""
    grid_code = body.grid_code if body is not None and body.grid_code else None
    if grid_code is not None and not await asyncio.to_thread(_grid_exists, services.session_factory, grid_code):
        raise HTTPException(422, f"unknown grid {grid_code!r}")
    try:
        state = await channel.start_login(grid_code)
    except (ApiError, ProtocolError, httpx.HTTPError) as exc:
        raise HTTPException(502, f"WeChat did not give a QR code: {exc}") from None
    return _login_out(state)


def _state(channel: IlinkChannel, login_id: str) -> LoginState:
    state = channel.logins.state(login_id)
    if state is None:
        raise HTTPException(404, "no such login (it ended over 10 minutes ago, or the app restarted)")
    return state


@router.get("/logins/{login_id}", response_model=LoginOut)
async def login_state(login_id: str, channel: ChannelDep, _: Admin) -> LoginOut:
    return _login_out(_state(channel, login_id))


@router.post("/logins/{login_id}/verify", response_model=LoginOut)
async def verify(login_id: str, body: VerifyIn, channel: ChannelDep, _: Admin) -> LoginOut:
    """The number WeChat shows on the phone after the scan, when it asks for one (status need_verifycode)."""
    _state(channel, login_id)
    state = channel.logins.verify(login_id, body.code)
    assert state is not None
    return _login_out(state)
