"""A wechaty message as the bot's `IncomingMessage`: who, where, whether it @-mentions the bot, what it carries.

The mention flag comes from the platform's mention list (`mention_ids` of the message payload, what
`Message.mention_self()` reads), never from "@name" typed in the text; the bot's own mention is then cut out
of the text so the router sees the request alone. A picture is downloaded at once (the puppet's copy is only
kept for a while) into the media store; voice notes, videos and files are passed on by kind only, so the bot
can ask for text instead.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Iterable

import httpx

from bot.channels.download import download_capped
from bot.channels.wechaty.shim import FileBox, FileBoxType, Message, MessageType
from bot.media_store import MediaRejected, MediaStore
from bot.messages import IncomingMessage, Media, MediaKind

log = logging.getLogger(__name__)

CHANNEL = "wechaty"

_OTHER_MEDIA = {
    MessageType.MESSAGE_TYPE_AUDIO: MediaKind.VOICE,
    MessageType.MESSAGE_TYPE_VIDEO: MediaKind.VIDEO,
    MessageType.MESSAGE_TYPE_ATTACHMENT: MediaKind.FILE,
}


def strip_mentions(text: str, names: Iterable[str]) -> str:
    """The text without "@name" for each of `names`; WeChat ends a mention with U+2005 (or a space)."""
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = re.sub(rf"@{re.escape(name)}(?:\u2005|\s|$)", "", text)
    return text.strip()


async def convert(message: Message, self_id: str, store: MediaStore, timeout: float) -> IncomingMessage | None:
    """The message as the intake takes it; None for the bot's own messages and kinds the bot ignores
    (stickers, links, mini programs, transfers, recalls…)."""
    await message.ready()
    talker = message.talker()
    if talker is None or talker.contact_id == self_id:
        return None  # the platform echoes what the bot itself said
    kind = message.type()
    room = message.room()
    topic: str | None = None
    sender_name = talker.name
    mention_ids: tuple[str, ...] = ()
    if room is not None:
        await room.ready()
        topic = await room.topic()
        sender_name = await room.alias(talker) or talker.name
        mention_ids = tuple(message.payload.mention_ids or ())
    mentions_bot = room is not None and self_id in mention_ids
    text = ""
    media: tuple[Media, ...] = ()
    if kind == MessageType.MESSAGE_TYPE_TEXT:
        text = message.text()
        if mentions_bot and room is not None:
            me = message.wechaty.Contact.load(self_id)
            await me.ready()
            text = strip_mentions(text, [me.name, await room.alias(me) or ""])
    elif kind == MessageType.MESSAGE_TYPE_IMAGE:
        picture = await _download_image(message, store, timeout)
        media = (picture,) if picture is not None else ()
        if not media:
            return None  # nothing the bot could use; the download problem is logged
    elif kind in _OTHER_MEDIA:
        media = (Media(_OTHER_MEDIA[kind], url=""),)
    else:
        log.debug("wechaty message %s of type %s ignored", message.message_id, kind)
        return None
    return IncomingMessage(
        channel=CHANNEL,
        sender_id=talker.contact_id,
        sender_name=sender_name,
        text=text,
        group_id=room.room_id if room is not None else None,
        mentions_bot=mentions_bot,
        message_id=message.message_id,
        room_topic=topic,
        mentioned_ids=mention_ids,
        media=media,
    )


async def _download_image(message: Message, store: MediaStore, timeout: float) -> Media | None:
    try:
        box = await asyncio.wait_for(message.to_file_box(), timeout)
        data = await _bytes_of(box, store.max_bytes, timeout)
        return await asyncio.to_thread(store.save_image, data, box.name)
    except MediaRejected as exc:
        log.warning("picture in wechaty message %s not kept: %s", message.message_id, exc)
    except Exception as exc:  # a picture the puppet cannot hand over must not cost the message its handling
        log.warning("picture in wechaty message %s could not be downloaded: %s: %s", message.message_id, type(exc).__name__, exc)
    return None


async def _bytes_of(box: FileBox, max_bytes: int, timeout: float) -> bytes:
    """The file's content, whichever way the puppet service packed it (inline base64 or a URL to fetch)."""
    box_type = box.type()
    if box_type == FileBoxType.Base64:
        return base64.b64decode(box.base64)
    if box_type == FileBoxType.Buffer:
        return bytes(box.buffer)
    if box_type == FileBoxType.Stream:
        return bytes(box.stream)
    if box_type == FileBoxType.Url:
        return await _fetch(box.remoteUrl, max_bytes, timeout)
    raise MediaRejected(f"file box of type {box_type.name} carries no picture")


async def _fetch(url: str, max_bytes: int, timeout: float) -> bytes:
    """Download from the puppet's file URL; MediaRejected when larger than `max_bytes`."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
        return await download_capped(client, url, max_bytes)
