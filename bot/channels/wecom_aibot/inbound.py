"""A smart robot message callback as the bot's `IncomingMessage`s.

WeCom calls the robot back only when it is addressed: every message in a private chat (`chattype` single,
the sender's `from.userid`), and in a group (`chattype` group, `chatid`) only a message that @-mentions it, so
`mentions_bot` is the platform's own word. What each kind carries (SDK types, `message.d.ts`):
- text: `text.content`; in a group it starts with "@<robot name>", cut here so the router reads the request;
- image: `image.url` (five minutes) and `image.aeskey`: fetched, decrypted and stored (bot/channels/wecom_aibot/media.py);
- mixed: `mixed.msg_item[]` of text and image items. Its words and its pictures become two messages, the words
  first (message id `<msgid>`), then the pictures alone (`<msgid>#pictures`): the words may file a report, and a
  picture right after a report is attached to it (bot/photos.py), as when the two are sent one after the other;
- voice: `voice.content`, WeCom's transcript, marked as a voice note (a worker's dictation, bot/worker_evidence.py);
- file, video: passed on by kind only, so the bot asks for words instead.
WeCom sends no display names, so the sender's name is their userid (as the self-built app channel does).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.messages import IncomingMessage, Media, MediaKind

log = logging.getLogger(__name__)

CHANNEL = "wecom_aibot"
_LEADING_MENTION = re.compile(r"^\s*@\S+\s*")
PICTURES_SUFFIX = "#pictures"

# Fetches one picture (url, aeskey) into the media store; None when it cannot be had.
FetchPicture = Callable[[str, str | None], Awaitable[Media | None]]


class MalformedCallback(ValueError):
    pass


@dataclass(frozen=True)
class Origin:
    """Where a callback came from: what a reply in place answers, and what its conversation is."""

    sender_id: str
    group_id: str | None
    message_id: str

    @property
    def conversation(self) -> str:
        return f"group:{self.group_id}" if self.group_id else f"user:{self.sender_id}"


def origin_of(body: dict[str, Any]) -> Origin:
    sender = body.get("from")
    sender_id = sender.get("userid") if isinstance(sender, dict) else None
    if not isinstance(sender_id, str) or not sender_id:
        raise MalformedCallback("no from.userid")
    message_id = body.get("msgid")
    if not isinstance(message_id, str) or not message_id:
        raise MalformedCallback("no msgid")
    chat_id = body.get("chatid")
    group = body.get("chattype") == "group"
    if group and (not isinstance(chat_id, str) or not chat_id):
        raise MalformedCallback("a group message without chatid")
    return Origin(sender_id=sender_id, group_id=chat_id if group else None, message_id=message_id)


async def convert(body: dict[str, Any], origin: Origin, fetch: FetchPicture) -> list[IncomingMessage]:
    """The messages the intake takes, in order; empty for a kind the bot does not take (logged)."""
    kind = body.get("msgtype")
    text = ""
    media: list[Media] = []
    if kind == "text":
        text = _text_of(body.get("text"))
    elif kind == "voice":
        text = _text_of(body.get("voice")).strip()
        media.append(Media(MediaKind.VOICE, ""))
    elif kind == "image":
        picture = await _picture(body.get("image"), fetch)
        if picture is None:
            return []  # nothing the bot could use; why is logged
        media.append(picture)
    elif kind == "mixed":
        text, media = await _mixed(body.get("mixed"), fetch)
    elif kind in ("file", "video"):
        media.append(Media(MediaKind.FILE if kind == "file" else MediaKind.VIDEO, ""))
    else:
        log.info("WeCom smart robot: message %s of type %r ignored", origin.message_id, kind)
        return []
    if origin.group_id is not None:
        text = _LEADING_MENTION.sub("", text, count=1)  # "@网格助手 楼道灯坏了": the robot's own @
    if kind == "mixed" and text.strip() and media:
        words = _message(origin, text, (), origin.message_id)
        return [words, _message(origin, "", tuple(media), origin.message_id + PICTURES_SUFFIX)]
    if not text.strip() and not media:
        return []
    return [_message(origin, text, tuple(media), origin.message_id)]


def _message(origin: Origin, text: str, media: tuple[Media, ...], message_id: str) -> IncomingMessage:
    return IncomingMessage(
        channel=CHANNEL,
        sender_id=origin.sender_id,
        sender_name=origin.sender_id,
        text=text,
        group_id=origin.group_id,
        mentions_bot=origin.group_id is not None,
        message_id=message_id,
        media=media,
    )


def _text_of(node: object) -> str:
    content = node.get("content") if isinstance(node, dict) else None
    return content if isinstance(content, str) else ""


async def _picture(node: object, fetch: FetchPicture) -> Media | None:
    if not isinstance(node, dict) or not isinstance(node.get("url"), str) or not node["url"]:
        return None
    aes_key = node.get("aeskey")
    return await fetch(node["url"], aes_key if isinstance(aes_key, str) and aes_key else None)


async def _mixed(node: object, fetch: FetchPicture) -> tuple[str, list[Media]]:
    items = node.get("msg_item") if isinstance(node, dict) else None
    texts: list[str] = []
    media: list[Media] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("msgtype") == "text":
            texts.append(_text_of(item.get("text")))
        elif item.get("msgtype") == "image":
            picture = await _picture(item.get("image"), fetch)
            if picture is not None:
                media.append(picture)
    return " ".join(t for t in texts if t.strip()), media
