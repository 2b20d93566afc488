"""One polled iLink message (a `WeixinMessage`) as the bot's `IncomingMessage`, or why it is skipped.

What arrives, and what becomes of it:
- a person's message (`message_type` 1) to the bot: a private message from `from_user_id`, with the platform's
  `message_id` (redeliveries are dropped by it) and the `context_token` every reply must carry;
- text items: the text; a voice item: WeChat's transcription (`voice_item.text`) as the text, marked as a voice
  note; a picture: downloaded at once from WeChat's CDN (`full_url`, else `<cdn>/download?encrypted_query_param=`),
  AES-128-ECB decrypted with its key (`image_item.aeskey`, hex, else `media.aes_key`, base64 of the raw key or of
  its hex) and kept in the media store; files and videos by kind only, so the bot asks for text;
- the bot's own messages (`message_type` 2, echoed) and group messages (the route delivers none; if it ever did,
  the bot could not answer in the group) are skipped; so is anything without a sender or without content.
A message that is not what the protocol describes raises `Malformed`: the poller logs it and goes on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.channels.ilink.protocol import FILE, FROM_BOT, IMAGE, TEXT, VIDEO, VOICE, IlinkApi
from bot.channels.ilink.store import Arrival
from bot.media_store import MediaRejected, MediaStore
from bot.messages import IncomingMessage, Media, MediaKind
from bot.texts import text as t
from storage.base import utcnow

log = logging.getLogger(__name__)

CHANNEL = "ilink"
_MAX_ID = 128


class Malformed(ValueError):
    pass


class Skipped(Exception):
    """A well-formed message the bot does not take (its own echo, a group message, nothing in it)."""


async def convert(raw: object, api: IlinkApi, store: MediaStore, cdn_base: str, grid_code: str | None = None) -> Arrival:
    if not isinstance(raw, dict):
        raise Malformed(f"a message is {type(raw).__name__}, not an object")
    if raw.get("message_type") == FROM_BOT:
        raise Skipped("the bot's own message")
    if raw.get("group_id"):
        raise Skipped(f"a group message ({str(raw['group_id'])[:64]}): this route answers one-to-one only")
    sender = raw.get("from_user_id")
    if not isinstance(sender, str) or not sender.strip() or len(sender) > _MAX_ID:
        raise Malformed(f"no usable from_user_id ({sender!r:.80})")
    items = raw.get("item_list") or []
    if not isinstance(items, list):
        raise Malformed(f"item_list is {type(items).__name__}, not a list")
    text, media = await _content([item for item in items if isinstance(item, dict)], api, store, cdn_base)
    if not text and not media:
        raise Skipped("nothing the bot can read in it")
    token = raw.get("context_token")
    message = IncomingMessage(
        channel=CHANNEL,
        sender_id=sender,
        sender_name=t("ilink.sender_name", short=sender.split("@", 1)[0][-6:]),
        text=text,
        message_id=_message_id(raw, items, sender),
        media=tuple(media),
        grid_code=grid_code,
    )
    return Arrival(message, token if isinstance(token, str) and token else None, _sent_at(raw.get("create_time_ms")))


def _message_id(raw: dict[str, Any], items: list[Any], sender: str) -> str | None:
    """The platform's message id (uint64, kept as a string), else an item's, else sender + sequence number."""
    for value in (raw.get("message_id"), *(item.get("msg_id") for item in items if isinstance(item, dict))):
        if isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()[:_MAX_ID]
    seq = raw.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool):
        return f"{sender}:{seq}"[:_MAX_ID]
    return None


def _sent_at(value: object) -> datetime:
    """When the person wrote (the window runs from then); a missing or future time counts as now."""
    now = utcnow()
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return min(datetime.fromtimestamp(value / 1000, UTC), now)
        except (OverflowError, OSError, ValueError):
            return now
    return now


async def _content(items: list[dict[str, Any]], api: IlinkApi, store: MediaStore, cdn_base: str) -> tuple[str, list[Media]]:
    texts: list[str] = []
    media: list[Media] = []
    for item in items:
        kind = item.get("type")
        if kind == TEXT:
            body = (item.get("text_item") or {}).get("text") if isinstance(item.get("text_item"), dict) else None
            if isinstance(body, str) and body.strip():
                texts.append(body)
        elif kind == VOICE:
            voice = item.get("voice_item") if isinstance(item.get("voice_item"), dict) else {}
            words = voice.get("text")
            if isinstance(words, str) and words.strip():
                texts.append(words.strip())
            media.append(Media(MediaKind.VOICE, ""))
        elif kind == IMAGE:
            picture = await _picture(item.get("image_item"), api, store, cdn_base)
            if picture is not None:
                media.append(picture)
        elif kind in (FILE, VIDEO):
            media.append(Media(MediaKind.FILE if kind == FILE else MediaKind.VIDEO, ""))
    return " ".join(texts).strip(), media


async def _picture(image: object, api: IlinkApi, store: MediaStore, cdn_base: str) -> Media | None:
    """The picture, downloaded and decrypted now (CDN links expire); None, logged, when that fails."""
    if not isinstance(image, dict) or not isinstance(image.get("media"), dict):
        log.warning("iLink picture without a media reference skipped")
        return None
    ref = image["media"]
    url = ref.get("full_url")
    if not isinstance(url, str) or not url:
        param = ref.get("encrypt_query_param")
        if not isinstance(param, str) or not param:
            log.warning("iLink picture with neither full_url nor encrypt_query_param skipped")
            return None
        url = f"{cdn_base.rstrip('/')}/download?encrypted_query_param={quote(param, safe='')}"
    try:
        key = _aes_key(image.get("aeskey"), ref.get("aes_key"))
        data = await api.download(url, store.max_bytes + 32)
        if key is not None:
            data = _decrypt(data, key)
        return await asyncio.to_thread(store.save_image, data)  # hashing and writing the file: off the loop
    except MediaRejected as exc:
        log.warning("iLink picture not kept: %s", exc)
    except Exception as exc:  # a CDN that fails or bytes that do not decrypt must not cost the message its text
        log.warning("iLink picture could not be fetched or decrypted: %s: %s", type(exc).__name__, exc)
    return None


def _aes_key(hex_key: object, b64_key: object) -> bytes | None:
    """The raw 16-byte key: `image_item.aeskey` (hex) first, else `media.aes_key` (base64 of 16 bytes, or of 32 hex
    characters); None when the picture is not encrypted."""
    try:
        if isinstance(hex_key, str) and hex_key:
            key = bytes.fromhex(hex_key)
        elif isinstance(b64_key, str) and b64_key:
            decoded = base64.b64decode(b64_key, validate=True)
            key = bytes.fromhex(decoded.decode("ascii")) if len(decoded) == 32 else decoded
        else:
            return None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Malformed("the picture's AES key is neither hex nor base64") from None
    if len(key) != 16:
        raise Malformed(f"the picture's AES key has {len(key)} bytes, not 16")
    return key


def _decrypt(data: bytes, key: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()
