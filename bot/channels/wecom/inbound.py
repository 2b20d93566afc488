"""Decrypted WeCom callback XML -> IncomingMessage.

What arrives, and what the adapter does with it:
- App messages (the common case): a member writes to the app in its single chat. `FromUserName` is the
  member's userid, `MsgId` the message id; text, image (`PicUrl`, a URL WeCom keeps) and voice (its
  `Recognition` text when speech recognition is on for the app) become private messages.
- WeCom does NOT call an app back with what members write in an app-created group chat (appchat): those
  chats are send-only for the app. Customer groups (客户群) are reachable only through the 客户联系 API and
  会话内容存档, which this adapter does not use.
- A callback that carries a `ChatId` (a group robot with its receive-message URL set to ours, which WeCom calls
  only when a member @-mentions the robot; sender under `From/UserId`, `From/Name`) becomes a group message
  with `group_id = ChatId` and `mentions_bot = True` — the platform's own signal that the bot was addressed.
- Events (enter_agent, subscribe, group chat changes…) are acknowledged and ignored: entering the app happens
  every time a member opens it, so greeting then would be noise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import xmltodict

from bot.messages import IncomingMessage, Media, MediaKind

CHANNEL = "wecom"
_LEADING_MENTION = re.compile(r"^\s*@\S+\s*")


class MalformedXML(ValueError):
    pass


def parse_xml(body: str | bytes) -> dict[str, Any]:
    """The `<xml>` element as a dict; anything else (not XML, entities, another root) is malformed."""
    try:
        document = xmltodict.parse(body, disable_entities=True)
    except Exception as exc:  # expat errors, encoding errors, entity declarations refused
        raise MalformedXML(f"not XML: {type(exc).__name__}") from None
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise MalformedXML("no <xml> root element")
    return root


@dataclass(frozen=True)
class Parsed:
    """One decrypted callback: a message for the intake, or something acknowledged and ignored (`kind`)."""

    kind: str
    message: IncomingMessage | None = None


def _text(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, dict):  # <Content attr="…">text</Content>
        return str(node.get("#text") or "")
    return str(node)


def to_incoming(root: dict[str, Any]) -> Parsed:
    msg_type = _text(root.get("MsgType")).lower()
    if not msg_type:
        raise MalformedXML("no MsgType")
    if msg_type == "event":
        return Parsed(f"event:{_text(root.get('Event')).lower() or '?'}")
    sender_id, sender_name = _sender(root)
    if not sender_id:
        raise MalformedXML("no sender (FromUserName or From/UserId)")
    chat_id = _text(root.get("ChatId")) or None
    chat_type = _text(root.get("ChatType")).lower()
    group_id = chat_id if chat_id and chat_type != "single" else None
    message_id = _text(root.get("MsgId")) or None
    text, media = _content(msg_type, root)
    if text is None:
        return Parsed(f"unsupported:{msg_type}")
    if group_id is not None:
        text = _LEADING_MENTION.sub("", text, count=1)  # the "@robot" WeCom puts before what was said to it
    message = IncomingMessage(
        channel=CHANNEL,
        sender_id=sender_id,
        sender_name=sender_name or sender_id,
        text=text,
        group_id=group_id,
        mentions_bot=group_id is not None,
        message_id=message_id,
        media=media,
    )
    return Parsed(msg_type, message)


def _sender(root: dict[str, Any]) -> tuple[str, str]:
    sender = root.get("From")
    if isinstance(sender, dict):
        return _text(sender.get("UserId")), _text(sender.get("Name"))
    return _text(root.get("FromUserName")), ""


def _content(msg_type: str, root: dict[str, Any]) -> tuple[str | None, tuple[Media, ...]]:
    """The text and media of a message; (None, ()) for a type the bot does not take."""
    if msg_type == "text":
        node = root.get("Text")
        content = _text(node.get("Content")) if isinstance(node, dict) else _text(root.get("Content"))
        return content, ()
    if msg_type == "image":
        node = root.get("Image") if isinstance(root.get("Image"), dict) else root
        url = _text(node.get("PicUrl") or node.get("ImageUrl"))
        return "", ((Media(MediaKind.IMAGE, url),) if url else ())
    if msg_type == "voice":
        # The words, when speech recognition is on for the app; marked as a voice note either way (a worker's dictated
        # note on a ticket, bot/worker_evidence.py; with no words, the bot asks for text instead of saying nothing).
        return _text(root.get("Recognition")).strip(), (Media(MediaKind.VOICE, ""),)
    if msg_type == "mixed":  # a robot callback with text and pictures in one message
        return _mixed(root)
    return None, ()


def _mixed(root: dict[str, Any]) -> tuple[str, tuple[Media, ...]]:
    items = (root.get("MixedMessage") or {}).get("MsgItem") or []
    if isinstance(items, dict):
        items = [items]
    texts: list[str] = []
    media: list[Media] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = _text(item.get("MsgType")).lower()
        if kind == "text" and isinstance(item.get("Text"), dict):
            texts.append(_text(item["Text"].get("Content")))
        elif kind == "image" and isinstance(item.get("Image"), dict) and item["Image"].get("ImageUrl"):
            media.append(Media(MediaKind.IMAGE, _text(item["Image"]["ImageUrl"])))
    return " ".join(t for t in texts if t), tuple(media)
