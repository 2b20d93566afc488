"""The WeCom smart robot (企业微信智能机器人) channel: one long connection out to WeCom, no public address needed.

One background task owns the connection: it connects to WECOM_AIBOT_WS_URL, subscribes with the robot's id and
secret, pings, and when the connection ends (network, WeCom restarting, two pings unanswered) connects again
after a pause that doubles up to a cap, back to the first step once a connection stayed up. There is no
session to resume in this protocol: a new connection subscribes afresh, and what the old one left undone is
the outbound queue's (failed sends are retried) and the receipt book's (a turn that never finished is replayed).
WeCom keeps one connection per robot: a newer one takes over and the older gets `disconnected_event`. The channel
then stops (health down, saying why) instead of taking it back, which would make two processes push each other
out for ever: only one app process may run the channel.

Inbound, each message callback is noted in the receipt book (bot/channels/receipts.py) before it is handled, so a
process that dies mid-turn loses nothing: the note goes stale and the deferred job replays it. Callbacks are
handled in arrival order per conversation (a group, or a member's private chat), different conversations side by
side; the reader never waits for a turn. The intake drops a redelivered msgid.

Outbound: the first message a turn says back to where it came from is the robot's reply to that message
(`aibot_respond_msg` with the callback's req_id, one finished stream), within WECOM_AIBOT_REPLY_WINDOW_SECONDS and
on the connection the callback came over; the turn is known from a context variable the delivery sets, so retries
and replays (other tasks) never reuse an old req_id. Everything else — further messages of the turn, a worker's
private notice, a rating request in a group, notices, answers after a reconnect or a replay — is pushed with
`aibot_send_msg` into the chat (a group's chatid, a member's userid). WeCom only lets the robot push into chats
that have talked to it: a group where it was @-mentioned, a member who wrote to it. Texts go out as markdown
(bot/channels/wecom_aibot/markdown.py), mentions as `<@userid>`. A failure raises `SendError` and the dispatcher
retries; a message key already sent is not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker
from websockets.asyncio.client import connect

from bot.channels.base import Capabilities, ChannelBase, Health, HealthStatus, Intake, cancel_and_wait
from bot.channels.ordering import ConversationChains
from bot.channels.receipts import Receipts
from bot.channels.sender import SendError, SendLimits
from bot.channels.sent_keys import SentKeys
from bot.channels.wecom_aibot import inbound, protocol
from bot.channels.wecom_aibot.config import AibotConfig
from bot.channels.wecom_aibot.connection import AibotError, Connection, ConnectionLost
from bot.channels.wecom_aibot.inbound import CHANNEL, MalformedCallback, Origin
from bot.channels.wecom_aibot.markdown import compose
from bot.channels.wecom_aibot.media import fetch_picture
from bot.channels.wecom_aibot.protocol import Frame
from bot.media_store import MediaStore
from bot.messages import IncomingMessage, Media, Mention, TargetType
from bot.texts import text as t

log = logging.getLogger(__name__)

# WeCom's markdown messages are at most 4096 bytes (its group robots' documented limit; a reply stream takes 20480,
# but a push is markdown, and the same text may go either way). Any text of MAX_TEXT_CHARS fits after escaping
# (at most 4 bytes a character), with MENTION_BYTES kept for `<@userid> ` mentions.
MAX_TEXT_BYTES = 4096
MENTION_BYTES = 160
MAX_TEXT_CHARS = (MAX_TEXT_BYTES - MENTION_BYTES) // 4
# WeCom publishes no send rate for the smart robot that we could find; its group robots take 20 messages a minute
# into a group, and the same pace is kept per chat here, with a generous cap for the robot as a whole. It is an
# official API, so no jitter. NOTICE_RATE_LIMITS can override {"wecom_aibot": {…}}; a refused send is retried.
PUSH_LIMITS = SendLimits(per_account=600, per_group=20, window_seconds=60.0, jitter_seconds=0.0)
REPLY_LIMITS = SendLimits(per_account=600, per_group=20, window_seconds=60.0, jitter_seconds=0.0)
# After this many connection attempts in a row that did not stay up, health says "down" (it keeps trying).
_DOWN_AFTER_FAILURES = 4


@dataclass
class Turn:
    """A callback being handled: what its first answer back to the same chat replies to."""

    req_id: str
    origin: Origin
    generation: int
    arrived: float
    answered: bool = False

    def answers(self, target_type: TargetType, target_id: str) -> bool:
        if self.origin.group_id is not None:
            return target_type is TargetType.ROOM and target_id == self.origin.group_id
        return target_type is TargetType.CONTACT and target_id == self.origin.sender_id


# Set while a callback is handled (the intake's dispatch runs in the same task), unset in retries and replays.
_turn: ContextVar[Turn | None] = ContextVar("wecom_aibot_turn", default=None)


class TakenOver(Exception):
    """WeCom moved the robot to a newer connection (another process with the same robot)."""


class Refused(Exception):
    """WeCom refused the subscription (wrong id or secret, robot not in long-connection mode)."""


class AibotChannel(ChannelBase):
    name = CHANNEL
    capabilities = Capabilities(
        max_text_chars=MAX_TEXT_CHARS,
        max_text_bytes=MAX_TEXT_BYTES,
        can_mention=True,  # <@userid> in markdown; a reply in place needs none for the member it answers
        can_message_contacts=True,  # members who have written to the robot
        can_send_media=False,  # no media upload yet: a picture goes out as a link
        hears_only_mentions=True,  # a group message reaches the robot only when it @s it
        limits=PUSH_LIMITS,
        reply_limits=REPLY_LIMITS,
    )

    def __init__(self, config: AibotConfig, factory: sessionmaker[Session], store: MediaStore) -> None:
        self.config = config
        self.account = config.bot_id
        self._receipts = Receipts(factory)
        self._store = store
        self._health = Health(HealthStatus.DOWN, "not started", account=self.account)
        self._intake: Intake | None = None
        self._http: httpx.AsyncClient | None = None
        self._connection: Connection | None = None
        self._generation = 0
        self._taken_over = False
        self._up_since: float | None = None
        self._runner: asyncio.Task[None] | None = None
        self._chains = ConversationChains("WeCom smart robot")
        self._closing: set[asyncio.Task[None]] = set()
        self._sent_keys = SentKeys()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, intake: Intake) -> None:
        self._intake = intake
        self._http = httpx.AsyncClient(timeout=self.config.request_timeout_seconds, follow_redirects=True)
        self._set_health(HealthStatus.CONNECTING, f"connecting to {self.config.ws_url}")
        self._runner = asyncio.create_task(self._run(), name="wecom-aibot-connection")

    async def stop(self) -> None:
        await cancel_and_wait([self._runner, *self._chains.tasks()])
        self._runner = None
        self._chains.clear()
        if self._http is not None:
            await self._http.aclose()
        self._set_health(HealthStatus.DOWN, "stopped")

    def health(self) -> Health:
        return self._health

    def _set_health(self, status: HealthStatus, detail: str) -> None:
        since = self._health.since if status is self._health.status else Health(status).since
        self._health = Health(status, detail, since, self.account)
        level = logging.WARNING if status is HealthStatus.DOWN else logging.INFO
        log.log(level, "WeCom smart robot %s: %s", status.value, detail)

    # --- the connection --------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            self._up_since = None
            try:
                reason = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except TakenOver:
                self._set_health(
                    HealthStatus.DOWN,
                    "WeCom handed this robot to a newer connection (another process with the same WECOM_AIBOT_BOT_ID?); "
                    "not reconnecting, so the two do not push each other out: run the channel in one process and restart",
                )
                return
            except Exception as exc:  # whatever ended the connection, the answer is to connect again
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            stayed_up = self._up_since is not None and time.monotonic() - self._up_since >= self.config.stable_seconds
            failures = 1 if stayed_up else failures + 1
            delay = self.config.backoff(failures)
            status = HealthStatus.DOWN if failures >= _DOWN_AFTER_FAILURES else HealthStatus.CONNECTING
            self._set_health(status, f"{reason}; reconnecting in {delay:.1f} s (attempt {failures})")
            await asyncio.sleep(delay)
            self._set_health(status, f"connecting to {self.config.ws_url} (attempt {failures + 1})")

    async def _connect_once(self) -> str:
        """One connection from connect to its end; returns (or raises) why it ended."""
        timeout = self.config.request_timeout_seconds
        async with connect(self.config.ws_url, open_timeout=timeout, close_timeout=3, ping_interval=None) as ws:
            connection = Connection(ws, self._on_push, timeout=timeout)
            reader = asyncio.create_task(connection.read(), name="wecom-aibot-reader")
            beat: asyncio.Task[str] | None = None
            try:
                req_id, frame = protocol.subscribe(self.config.bot_id, self.config.secret)
                try:
                    await connection.request("subscribe", req_id, frame)
                except AibotError as exc:
                    raise Refused(f"WeCom refused the robot's subscription (check WECOM_AIBOT_BOT_ID/SECRET): {exc}") from None
                self._generation += 1
                self._connection = connection
                self._up_since = time.monotonic()
                self._set_health(HealthStatus.UP, f"subscribed at {self.config.ws_url}")
                beat = asyncio.create_task(connection.heartbeat(self.config.heartbeat_seconds), name="wecom-aibot-heartbeat")
                done, _ = await asyncio.wait({reader, beat}, return_when=asyncio.FIRST_COMPLETED)
                if self._taken_over:
                    raise TakenOver()
                return await reader if reader in done else await beat
            finally:
                if self._connection is connection:
                    self._connection = None
                for task in (reader, beat):
                    if task is not None and not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task

    def _on_push(self, frame: Frame) -> None:
        """A callback or event, in the order WeCom sent them (called by the reader: queues, never waits)."""
        if frame.cmd == protocol.EVENT_CALLBACK:
            event = frame.body.get("event")
            kind = event.get("eventtype") if isinstance(event, dict) else None
            if kind == protocol.TAKEN_OVER_EVENT:
                self._taken_over = True
                connection = self._connection
                if connection is not None:  # WeCom closes it too; closing first ends the reader at once
                    closing = asyncio.get_running_loop().create_task(connection.close())
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
            else:
                log.debug("WeCom smart robot: event %r acknowledged and ignored", kind)
            return
        if frame.cmd != protocol.MESSAGE_CALLBACK:
            log.info("WeCom smart robot: frame with cmd %r ignored", frame.cmd)
            return
        try:
            origin = inbound.origin_of(frame.body)
        except MalformedCallback as exc:
            log.warning("WeCom smart robot: malformed message callback %s skipped: %s", frame.req_id, exc)
            return
        turn = Turn(frame.req_id, origin, self._generation, time.monotonic())
        self._chains.chain(origin.conversation, self._deliver(frame.body, turn))

    # --- messages, in order per conversation -------------------------------------------------------------

    async def _deliver(self, body: dict[str, object], turn: Turn) -> None:
        assert self._intake is not None
        # The words are noted before any picture is downloaded (seconds, up to the request timeout): WeCom will not
        # send the message again, so a crash while downloading must not lose it. A bare picture has nothing a
        # replay could use (bot/channels/receipts.py), so it is noted with its picture, as before.
        notes = {m.message_id: await self._note(m) for m in await inbound.convert(body, turn.origin, _no_picture)}
        for message in await inbound.convert(body, turn.origin, self._fetch):
            noted = notes.pop(message.message_id) if message.message_id in notes else await self._note(message)
            token = _turn.set(turn)
            try:
                await self._receipts.handle(self._intake, message, noted)
            finally:
                _turn.reset(token)

    async def _note(self, message: IncomingMessage) -> int | None:
        try:
            return await self._receipts.note(message)
        except Exception as exc:  # WeCom will not send it again: handle it anyway, held if that fails
            log.error("WeCom smart robot message %s not noted before handling (database down?): %s", message.message_id, exc)
            return None

    async def _fetch(self, url: str, aes_key: str | None) -> Media | None:
        assert self._http is not None
        return await fetch_picture(self._http, self._store, url, aes_key)

    # --- sending ---------------------------------------------------------------------------------------

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        await self._say(TargetType.ROOM, room_id, text, mentions, key)

    async def say_to_contact(self, contact_id: str, text: str, *, key: str) -> None:
        await self._say(TargetType.CONTACT, contact_id, text, (), key)

    async def send_media(self, target_type: TargetType, target_id: str, media: Media, *, key: str) -> None:
        """No media upload yet: the picture or file goes out as a link members can open."""
        link = t("wecom.media_link", kind=t(f"wecom.media_kinds.{media.kind.value}"), url=media.url)
        await self._say(target_type, target_id, link, (), key)

    async def _say(self, target_type: TargetType, target_id: str, text: str, mentions: Sequence[Mention], key: str) -> None:
        if key in self._sent_keys:
            log.info("WeCom smart robot: message %s to %s was already sent, not sending it again", key, target_id)
            return
        connection = self._connection
        if connection is None:
            raise ConnectionLost(f"the WeCom smart robot is not connected ({self._health.status.value}: {self._health.detail})")
        turn = _turn.get()
        if turn is not None and self._may_answer_in_place(turn, target_type, target_id):
            turn.answered = True
            others = [m for m in mentions if m.id != turn.origin.sender_id]  # the reply itself answers its sender
            content = _fit(compose(text, others, mention_bytes=MENTION_BYTES))
            try:
                await connection.request("reply", turn.req_id, protocol.stream_reply(turn.req_id, content))
            except AibotError as exc:
                if exc.errcode not in protocol.REPLY_GONE:
                    raise
                log.info("WeCom smart robot: %s can no longer be answered in place (%s): pushing", turn.origin.message_id, exc)
            else:
                self._remember(key)
                return
        req_id, frame = protocol.push(target_id, _fit(compose(text, mentions, mention_bytes=MENTION_BYTES)))
        await connection.request("push", req_id, frame)
        self._remember(key)

    def _may_answer_in_place(self, turn: Turn, target_type: TargetType, target_id: str) -> bool:
        return (
            not turn.answered
            and turn.answers(target_type, target_id)
            and turn.generation == self._generation  # a req_id is only good on the connection it came over
            and time.monotonic() - turn.arrived < self.config.reply_window_seconds
        )

    def _remember(self, key: str) -> None:
        self._sent_keys.add(key)


async def _no_picture(url: str, aes_key: str | None) -> Media | None:
    """What `inbound.convert` fetches when only the words are wanted (to note them before the downloads)."""
    return None


def _fit(content: str) -> str:
    """The dispatcher's split keeps any text within the limit, so more is a bug upstream: refused, not retried."""
    size = len(content.encode())
    if size > MAX_TEXT_BYTES:
        raise SendError(f"markdown of {size} bytes is over the {MAX_TEXT_BYTES}-byte limit", retryable=False)
    return content


__all__ = ["MAX_TEXT_BYTES", "MAX_TEXT_CHARS", "AibotChannel"]
