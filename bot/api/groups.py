"""Groups on the map, for the console: which grid a chat group belongs to, its tags, and its bot settings.

The same changes `gridbot group add|tags|set` make, over REST for admins (any account may read). Settings are
what the router applies to unaddressed messages (bot/group_settings.py); it caches a group's policy for a few
seconds, so a change takes effect within that. Refusals: 404 unknown group or grid, 422 malformed values.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.api.deps import ServicesDep
from bot.auth.deps import Admin, AnyAccount
from bot.group_settings import GroupBotSettings
from bot.texts import text
from grid.geography import ChatGroup, Grid
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/groups", tags=["groups"])

PREFIX_SEPARATOR = "|"
# No control characters in anything stored (PostgreSQL refuses NUL in text; a chat platform shows the rest as junk).
PLAIN = r"^[^\x00-\x1f\x7f]*$"
Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=PLAIN)]
Prefix = Annotated[str, Field(min_length=1, max_length=32, pattern=PLAIN)]
GridCode = Annotated[str, Field(min_length=1, max_length=64, pattern=PLAIN)]


class SettingsOut(BaseModel):
    prefixes: list[str] = Field(description="This group's own trigger prefixes (the app-wide ones always apply too).")
    request_confidence: float | None = Field(description="NLU confidence to answer unaddressed requests; null: default.")
    quiet_start: time | None
    quiet_end: time | None


class GroupOut(BaseModel):
    id: str
    name: str
    grid_code: str
    grid_name: str
    channel: str
    tags: list[str]
    settings: SettingsOut


class GroupsOut(BaseModel):
    default_prefixes: list[str]
    default_confidence: float
    groups: list[GroupOut]


class GroupIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=PLAIN)
    grid_code: GridCode
    channel: Literal["webchat", "wechaty", "wecom", "wecom_aibot"] = "webchat"
    tags: list[Tag] = Field(default_factory=list, max_length=20)

    @field_validator("name")
    @classmethod
    def _stripped(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the name is empty")
        return value.strip()


class SettingsIn(BaseModel):
    prefixes: list[Prefix] = Field(default_factory=list, max_length=10)
    request_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    quiet_start: time | None = None
    quiet_end: time | None = None

    @field_validator("prefixes")
    @classmethod
    def _no_separator(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip() for v in values if v.strip()]
        if any(PREFIX_SEPARATOR in v for v in cleaned):
            raise ValueError(f"a prefix may not contain {PREFIX_SEPARATOR!r}")
        return cleaned


def _refusal(status: int, code: str, **params: object) -> HTTPException:
    return HTTPException(status, detail={"code": code, "message": text(f"console.errors.{code}", **params)})


def _check_id(group_id: str) -> None:
    if not group_id.strip() or len(group_id) > 128 or re.match(PLAIN, group_id) is None:
        raise _refusal(422, "bad_group_id")


def _settings_out(row: GroupBotSettings | None) -> SettingsOut:
    if row is None:
        return SettingsOut(prefixes=[], request_confidence=None, quiet_start=None, quiet_end=None)
    prefixes = [p for p in (row.trigger_prefixes or "").split(PREFIX_SEPARATOR) if p]
    return SettingsOut(
        prefixes=prefixes, request_confidence=row.request_confidence, quiet_start=row.quiet_start, quiet_end=row.quiet_end
    )


def _group_out(session: Session, group: ChatGroup) -> GroupOut:
    return GroupOut(
        id=group.id,
        name=group.name,
        grid_code=group.grid_code,
        grid_name=group.grid.name,
        channel=group.channel,
        tags=list(group.tags or []),
        settings=_settings_out(session.get(GroupBotSettings, group.id)),
    )


@router.get("", response_model=GroupsOut)
def list_groups(
    _account: AnyAccount, services: ServicesDep, grid: Annotated[str | None, Query(max_length=64, pattern=PLAIN)] = None
) -> GroupsOut:
    """Every mapped group with its grid, tags and settings, and the app-wide defaults they add to."""
    query = select(ChatGroup).order_by(ChatGroup.grid_code, ChatGroup.id)
    if grid is not None:
        query = query.where(ChatGroup.grid_code == grid)
    settings = services.settings
    with unit_of_work(services.session_factory) as session:
        groups = [_group_out(session, g) for g in session.scalars(query)]
    return GroupsOut(
        default_prefixes=list(settings.command_prefixes), default_confidence=settings.request_confidence, groups=groups
    )


@router.put("/{group_id}", response_model=GroupOut)
def put_group(group_id: str, body: GroupIn, _admin: Admin, services: ServicesDep) -> GroupOut:
    """Map a room to a grid (new or re-mapped), with its name, platform and tags: from then on the bot works there."""
    _check_id(group_id)
    with unit_of_work(services.session_factory) as session:
        if session.get(Grid, body.grid_code) is None:
            raise _refusal(404, "unknown_grid", grid=body.grid_code)
        group = session.get(ChatGroup, group_id)
        if group is None:
            group = ChatGroup(id=group_id, name=body.name, grid_code=body.grid_code, channel=body.channel)
            session.add(group)
        group.name, group.grid_code, group.channel = body.name, body.grid_code, body.channel
        group.tags = list(dict.fromkeys(t.strip() for t in body.tags if t.strip()))
        session.flush()
        session.refresh(group)
        return _group_out(session, group)


@router.put("/{group_id}/settings", response_model=GroupOut)
def put_settings(group_id: str, body: SettingsIn, _admin: Admin, services: ServicesDep) -> GroupOut:
    """Replace the group's bot settings: own prefixes, confidence (null: default), quiet hours (both or neither)."""
    _check_id(group_id)
    if (body.quiet_start is None) != (body.quiet_end is None):
        raise _refusal(422, "quiet_hours_half")
    with unit_of_work(services.session_factory) as session:
        group = session.get(ChatGroup, group_id)
        if group is None:
            raise _refusal(404, "unknown_group", group=group_id)
        row = session.get(GroupBotSettings, group_id) or GroupBotSettings(group_id=group_id)
        session.add(row)
        row.trigger_prefixes = PREFIX_SEPARATOR.join(body.prefixes) or None
        row.request_confidence = body.request_confidence
        row.quiet_start, row.quiet_end = body.quiet_start, body.quiet_end
        session.flush()
        return _group_out(session, group)
