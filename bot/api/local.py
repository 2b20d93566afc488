"""The web chat channel's HTTP API and the /chat demo page."""

from __future__ import annotations

import asyncio
import base64
import binascii
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from bot.api.deps import ServicesDep
from bot.api.media import store_for
from bot.channels.webchat import render
from bot.media_store import MediaRejected
from bot.messages import IncomingMessage, Media, MediaKind, TargetType
from grid.geography import ChatGroup, Grid, StreetContact, Worker
from storage.engine import unit_of_work

router = APIRouter()
CHAT_PAGE = Path(__file__).resolve().parent.parent / "web" / "static" / "chat.html"


class LocalMediaIn(BaseModel):
    """What a platform delivers beside (or instead of) words: a picture, or the mark of a voice note."""

    kind: Literal["image", "voice"]
    data_base64: str | None = Field(
        default=None,
        description="image: the picture's bytes in base64 (JPEG, PNG, GIF or WebP), kept by the media store. "
        "voice: nothing; the words the platform recognised in it are the message's text.",
    )


class LocalMessageIn(BaseModel):
    group_id: str | None = Field(default=None, max_length=128, description="Empty or null: a private chat with the bot.")
    # Stripped before the length checks: "  " would otherwise be accepted and become an empty identity.
    sender_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    sender_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    text: str = ""
    mentions_bot: bool = False
    message_id: str | None = Field(
        default=None, max_length=128, description="The platform's id of the message: a redelivery with the same id is ignored."
    )
    media: list[LocalMediaIn] = Field(
        default_factory=list,
        max_length=1,
        description="A picture (with no text: on WeChat a picture is a message of its own) or a voice note (its "
        "recognised words as the text, possibly none).",
    )


class Reply(BaseModel):
    target_type: Literal["room", "contact"]
    target_id: str
    text: str


class LocalMessageOut(BaseModel):
    replies: list[Reply]


class TranscriptLine(BaseModel):
    id: int
    direction: Literal["in", "out"]
    sender_id: str
    sender_name: str
    text: str
    created_at: str


class TranscriptOut(BaseModel):
    messages: list[TranscriptLine]


@router.post("/api/v1/local/messages", response_model=LocalMessageOut, tags=["web chat"])
async def post_message(body: LocalMessageIn, services: ServicesDep) -> LocalMessageOut:
    """One message from a resident or worker; returns every message the bot sends because of it.

    A message of only emoji, WeChat emoticons ([强][强]) or punctuation is ordinary chat: the group saw it, so it
    goes into the transcript, and the bot says nothing to it (bot/normalise.py leaves Rasa nothing to read).
    """
    text = body.text.strip()
    limit = services.settings.max_text_chars
    if not text and not body.media:
        raise HTTPException(422, "text is empty: send the message's words")
    if len(text) > limit:
        raise HTTPException(413, f"text is too long: {len(text)} characters, at most {limit}")
    media = tuple([await _media(item, text, services) for item in body.media])
    group_id = body.group_id or None
    message = IncomingMessage(
        channel=services.webchat.name,
        sender_id=body.sender_id,
        sender_name=body.sender_name,
        text=text,
        group_id=group_id,
        mentions_bot=body.mentions_bot,
        message_id=body.message_id,
        media=media,
    )
    if not await asyncio.to_thread(services.webchat.record_incoming, message):
        raise HTTPException(404, f"unknown group '{group_id}': map the group to a grid first")
    outgoing = await services.intake.receive(message, group_checked=True)  # record_incoming found the group
    return LocalMessageOut(
        replies=[Reply(target_type=o.target_type.value, target_id=o.target_id, text=render(o)) for o in outgoing]
    )


async def _media(item: LocalMediaIn, text: str, services: ServicesDep) -> Media:
    """A voice note's mark, or a picture kept in the media store like a platform's (bot/media_store.py); a clear 4xx
    for anything else."""
    if item.kind == "voice":
        if item.data_base64:
            raise HTTPException(422, "a voice note carries no data here: send the words recognised in it as the text")
        return Media(MediaKind.VOICE, "")
    if text:
        raise HTTPException(422, "a picture is a message of its own (as on WeChat): send it with no text")
    if not item.data_base64:
        raise HTTPException(422, "image: data_base64 (the picture's bytes) is missing")
    try:
        data = base64.b64decode(item.data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, "image: data_base64 is not base64") from None
    try:
        return await asyncio.to_thread(store_for(services).save_image, data)
    except MediaRejected as exc:
        raise HTTPException(422, f"image not kept: {exc}") from None


@router.get("/api/v1/local/transcript", response_model=TranscriptOut, tags=["web chat"])
async def transcript(
    services: ServicesDep,
    target_type: Literal["room", "contact"],
    target_id: Annotated[str, Query(min_length=1, max_length=128)],
    after: Annotated[int, Query(ge=0)] = 0,
) -> TranscriptOut:
    """What the web chat shows of a group or a contact. A worker of another channel (WeChat, WeCom) is never played
    here (grid/service.py actor_for), so their private messages are not the web chat's to show."""
    if target_type == "contact":
        with unit_of_work(services.session_factory) as session:
            person = session.get(Worker, target_id) or session.get(StreetContact, target_id)
            channel = person.channel if person is not None else None
        if channel is not None and channel != services.webchat.name:
            raise HTTPException(403, f"'{target_id}' is a worker on {channel}: the web chat does not show their messages")
    rows = services.webchat.transcript(TargetType(target_type), target_id, after)
    return TranscriptOut(
        messages=[
            TranscriptLine(
                id=r.id,
                direction=r.direction,
                sender_id=r.sender_id,
                sender_name=r.sender_name,  # type: ignore[arg-type]
                text=r.text,
                created_at=r.created_at.isoformat(),
            )
            for r in rows
        ]
    )


@router.get("/api/v1/local/demo", tags=["web chat"])
async def demo_directory(services: ServicesDep) -> dict[str, list[dict[str, str]] | dict[str, int]]:
    """Groups and workers the demo page offers to play: only web chat workers (no other can act from here); and the
    limits a picture must fit, so the page can shrink one before sending rather than have it refused (the request
    body limit, MAX_REQUEST_BODY_BYTES, is the tighter: a picture travels in base64 inside the JSON body)."""
    with unit_of_work(services.session_factory) as session:
        groups = []
        for group in session.scalars(select(ChatGroup).order_by(ChatGroup.id)):
            worker = next((w for w in group.grid.workers if w.role == "worker" and w.channel == services.webchat.name), None)
            groups.append(
                {
                    "group_id": group.id,
                    "name": group.name,
                    "grid_name": group.grid.name,
                    "worker_id": worker.id if worker else "",
                    "worker_name": worker.name if worker else "",
                }
            )
        workers = [
            {"worker_id": w.id, "name": w.name, "grid_name": grid.name}
            for w, grid in session.execute(
                select(Worker, Grid).join(Grid).where(Worker.channel == services.webchat.name).order_by(Worker.id)
            )
        ]
    limits = {
        "request_body_bytes": services.settings.max_request_body_bytes,
        "picture_bytes": services.settings.media_max_bytes,
    }
    return {"groups": groups, "workers": workers, "limits": limits}


@router.get("/chat", include_in_schema=False)
async def chat_page() -> FileResponse:
    return FileResponse(CHAT_PAGE, media_type="text/html; charset=utf-8")
