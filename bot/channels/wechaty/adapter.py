"""The wechaty channel: personal WeChat groups and chats through a puppet service (gRPC), python-wechaty 0.10.7.

One background task owns the connection: it connects, waits for the login, pings the peer, and when the event
stream ends (the peer restarted, the network dropped, the token was refused) it reconnects after a pause that
doubles up to a cap, resetting once a connection stayed up. Health says which of up / connecting / down it
is, since when and why. Every connection is a fresh `Wechaty` with fresh options and empty object caches, so
nothing of a dead connection is reused.

Inbound events are taken in the order the peer sent them, converted (bot/channels/wechaty/inbound.py) and
handed to the intake, one at a time per conversation (room or private chat) so a resident's "路灯坏了" is
answered before their "在3号楼", while different rooms do not wait for each other. The bot's own messages,
which the platform echoes, are dropped here and again by the intake.

Outbound, `say_to_room` sends a real @ (the mention ids go to the platform, which also writes "@name"),
`say_to_contact` a private text, `send_media` a stored picture. Any failure, including "not connected right
now", raises `SendError`, and the dispatcher retries it after the reconnect. A message key that was already
sent is not sent again.

Only the process holding this connection can send on it: notice jobs for wechaty groups must run in that
app process (NOTICE_WORKER_IN_APP=true, the default), not in separate `gridbot worker` processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.backoff import backoff
from bot.channels.base import Capabilities, ChannelBase, Health, HealthStatus, Intake, cancel_and_wait
from bot.channels.ordering import ConversationChains
from bot.channels.receipts import Receipts
from bot.channels.sender import SendError, SendLimits
from bot.channels.sent_keys import SentKeys
from bot.channels.wechaty import inbound
from bot.channels.wechaty.shim import FileBox, Message, Wechaty, WechatyOptions, clear_caches, fresh_options, memory_scheduler
from bot.media_store import MediaStore
from bot.messages import Media, MediaKind, Mention, TargetType
from bot.settings import Settings
from bot.texts import text as t
from grid.geography import ChatGroup
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

T = TypeVar("T")

# After this many connection attempts in a row without a login, health says "down" (it keeps trying).
_DOWN_AFTER_FAILURES = 4
# A room where members just joined is greeted at most once in this many seconds (a QR code brings dozens).
_MEMBER_GREETING_SECONDS = 600.0


@dataclass(frozen=True)
class WechatyConfig:
    token: str
    endpoint: str
    bot_name: str
    reconnect_first_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    stable_seconds: float = 30.0
    ping_seconds: float = 20.0
    send_timeout_seconds: float = 15.0
    login_timeout_seconds: float = 30.0

    def backoff(self, failures: int) -> float:
        """Pause before the next attempt: doubling from the first step to the cap, ±20 % so restarts spread out."""
        return backoff(failures, self.reconnect_first_seconds, self.reconnect_max_seconds)


class WechatyChannel(ChannelBase):
    name = "wechaty"
    # A personal WeChat account is restricted for bursts long before any documented limit, so pushes (notices)
    # keep the conservative defaults: 20 a minute per account, 5 a minute into one room, a random pause first.
    # Replies are awaited by people and may come a little faster. 2000 characters: WeChat takes longer texts,
    # but folds them behind "展开全文" and some puppet protocols cut or refuse very long ones; 2000 keeps a notice
    # in one readable message, and the dispatcher splits anything longer into numbered parts.
    capabilities = Capabilities(
        max_text_chars=2000,
        can_mention=True,
        can_message_contacts=True,
        can_send_media=True,
        limits=SendLimits(per_account=20, per_group=5, window_seconds=60.0, jitter_seconds=2.0),
        reply_limits=SendLimits(per_account=30, per_group=10, window_seconds=60.0, jitter_seconds=0.5),
    )

    def __init__(self, config: WechatyConfig, factory: sessionmaker[Session], store: MediaStore) -> None:
        self._config = config
        self._factory = factory
        self._store = store
        self._receipts = Receipts(factory)
        # Until the login names the account, rate limits count per token (one token is one WeChat account).
        self.account = "token-" + hashlib.sha256(config.token.encode()).hexdigest()[:8]
        self._health = Health(HealthStatus.DOWN, "not started", account=self.account)
        self._intake: Intake | None = None
        self._bot: Wechaty | None = None
        self._self_id: str | None = None
        self._logged_in: asyncio.Event | None = None
        self._scanning = False
        self._up_since: float | None = None
        self._last_heard = 0.0
        self._runner: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[tuple[str, Any]] | None = None
        self._chains = ConversationChains("wechaty")
        self._sent_keys = SentKeys()
        self._greeted: dict[str, float] = {}

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, intake: Intake) -> None:
        self._intake = intake
        self._logged_in = asyncio.Event()
        self._events = asyncio.Queue()
        self._set_health(HealthStatus.CONNECTING, f"connecting to {self._config.endpoint}")
        self._reader = asyncio.create_task(self._read_events(), name="wechaty-events")
        self._runner = asyncio.create_task(self._run(), name="wechaty-connection")

    async def stop(self) -> None:
        await cancel_and_wait([self._runner, self._reader, *self._chains.tasks()])
        self._runner = self._reader = None
        self._chains.clear()
        self._set_health(HealthStatus.DOWN, "stopped")

    def health(self) -> Health:
        return self._health

    def _set_health(self, status: HealthStatus, detail: str) -> None:
        since = self._health.since if status is self._health.status else Health(status).since
        self._health = Health(status, detail, since, self.account)
        log.info("wechaty %s: %s", status.value, detail)

    # --- the connection --------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            self._up_since = None
            try:
                reason = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever ended the connection, the answer is to reconnect
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            stayed_up = self._up_since is not None and time.monotonic() - self._up_since >= self._config.stable_seconds
            failures = 1 if stayed_up else failures + 1
            delay = self._config.backoff(failures)
            status = HealthStatus.DOWN if failures >= _DOWN_AFTER_FAILURES else HealthStatus.CONNECTING
            self._set_health(status, f"{reason}; reconnecting in {delay:.1f} s (attempt {failures})")
            await asyncio.sleep(delay)
            self._set_health(status if status is HealthStatus.DOWN else HealthStatus.CONNECTING,
                             f"connecting to {self._config.endpoint} (attempt {failures + 1})")

    async def _connect_once(self) -> str:
        """One connection from connect to its end; returns (or raises) why it ended."""
        assert self._logged_in is not None
        await self._probe()
        clear_caches()
        options = WechatyOptions(
            puppet="wechaty-puppet-service",
            puppet_options=fresh_options(self._config.token, self._config.endpoint),
            scheduler=memory_scheduler(),
        )
        bot = Wechaty(options)
        await bot.init_puppet()  # the puppet and the user classes (Contact, Room…) bound to this connection
        puppet = bot.puppet
        for event in ("message", "room-join", "login", "logout", "scan", "dong", "heartbeat", "error"):
            puppet.on(event, self._listener(event))
        self._bot, self._self_id, self._scanning = bot, None, False
        self._logged_in.clear()
        self._last_heard = time.monotonic()
        stream = asyncio.create_task(puppet.start(), name="wechaty-stream")
        try:
            return await self._watch(stream)
        finally:
            stream.cancel()
            with contextlib.suppress(BaseException):
                await stream
            self._bot = None
            self._self_id = None
            self._logged_in.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(puppet.stop(), 3)

    async def _probe(self) -> None:
        """Refuse fast, without blocking the loop, when nothing listens at the endpoint (the client's own check
        is a blocking telnet with a 3 s timeout)."""
        host, _, port = self._config.endpoint.rpartition(":")
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), self._config.send_timeout_seconds)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _watch(self, stream: asyncio.Task[None]) -> str:
        """Wait while the stream runs: no login in time, or a logged-in peer that stopped answering pings, ends it."""
        assert self._logged_in is not None
        connected_at = time.monotonic()
        interval = min(self._config.ping_seconds, self._config.login_timeout_seconds)
        while True:
            done, _ = await asyncio.wait({stream}, timeout=interval / 4)
            if done:
                stream.result()  # raises what ended it
                return "the puppet service ended the event stream"
            now = time.monotonic()
            if not self._logged_in.is_set():
                if not self._scanning and now - connected_at > self._config.login_timeout_seconds:
                    raise TimeoutError(f"no login within {self._config.login_timeout_seconds:.0f} s")
                continue
            if now - self._last_heard > 3 * self._config.ping_seconds:
                raise ConnectionError(f"the puppet service did not answer for {now - self._last_heard:.0f} s")
            if now - self._last_heard > self._config.ping_seconds:
                bot = self._bot
                if bot is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(bot.puppet.ding("gridbot"), self._config.send_timeout_seconds)

    def _listener(self, event: str) -> Callable[[Any], None]:
        def listen(payload: Any) -> None:
            self._last_heard = time.monotonic()
            if event in ("message", "room-join", "login", "logout", "scan"):
                assert self._events is not None
                self._events.put_nowait((event, payload))
            elif event == "error":
                log.warning("wechaty puppet error: %s", payload)

        return listen

    # --- events, in the order the peer sent them ----------------------------------------------------------

    async def _read_events(self) -> None:
        assert self._events is not None
        while True:
            event, payload = await self._events.get()
            try:
                await self._on_event(event, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wechaty %s event could not be handled: %s", event, payload)

    async def _on_event(self, event: str, payload: Any) -> None:
        bot = self._bot
        if event == "login":
            await self._on_login(payload.contact_id)
        elif event == "logout":
            self._self_id = None
            if self._logged_in is not None:
                self._logged_in.clear()
            self._set_health(HealthStatus.CONNECTING, "logged out by the puppet service; waiting for a login")
        elif event == "scan":
            self._scanning = True
            qrcode = getattr(payload, "qrcode", None) or ""
            self._set_health(
                HealthStatus.CONNECTING, f"waiting for the account to scan the login QR code: https://wechaty.js.org/qrcode/{qrcode}"
            )
        elif bot is None or self._self_id is None:
            log.warning("wechaty %s event before login dropped: %s", event, payload)
        elif event == "message":
            # Loaded here, in arrival order, only to know its conversation; converting it (a picture is downloaded)
            # and handling it happen in that conversation's turn.
            message = bot.Message.load(payload.message_id)
            await message.ready()
            room = message.room()
            talker = message.talker()
            key = room.room_id if room is not None else f"contact:{talker.contact_id if talker else '?'}"
            self._chains.chain(key, self._deliver(message, self._self_id))
        elif event == "room-join":
            joined = self._on_room_join(payload.room_id, list(payload.invited_ids), payload.inviter_id)
            self._chains.chain(payload.room_id, joined)

    async def _on_login(self, contact_id: str) -> None:
        bot = self._bot
        name = contact_id
        if bot is not None:
            with contextlib.suppress(Exception):
                me = bot.Contact.load(contact_id)
                await me.ready()
                name = f"{me.name} ({contact_id})"
        self._self_id = self.account = contact_id
        self._scanning = False
        self._up_since = time.monotonic()
        if self._logged_in is not None:
            self._logged_in.set()
        self._set_health(HealthStatus.UP, f"logged in as {name} at {self._config.endpoint}")

    async def _deliver(self, message: Message, self_id: str) -> None:
        assert self._intake is not None
        incoming = await inbound.convert(message, self_id, self._store, self._config.send_timeout_seconds)
        if incoming is None:
            return
        try:
            noted: int | None = await self._receipts.note(incoming)
        except Exception as exc:  # the puppet will not send it again: handle it anyway, held if that fails
            log.error("wechaty message %s not noted before handling (database down?): %s", incoming.message_id, exc)
            noted = None
        await self._receipts.handle(self._intake, incoming, noted)

    # --- room joins ------------------------------------------------------------------------------------

    async def _on_room_join(self, room_id: str, invited: list[str], inviter_id: str) -> None:
        """The bot added to a room: it introduces itself. Members joining a mapped room: one short greeting."""
        mapped = await asyncio.to_thread(self._is_mapped, room_id)
        key = f"join-{uuid.uuid4().hex}"
        if self._self_id in invited:
            if not mapped:
                log.warning(
                    "wechaty: added to room %s by %s, not mapped to a grid yet: "
                    "gridbot group add '%s' --grid GRID --name NAME --channel wechaty", room_id, inviter_id, room_id,
                )
            welcome = t("wechaty.welcome", bot_name=self._config.bot_name, abilities=t("help.resident"))
            if not mapped:  # it cannot file reports here until an admin maps the room: say so from the start
                welcome += "\n" + t("channels.unmapped_group")
            await self._say_logged(room_id, welcome, (), key)
            return
        now = time.monotonic()
        if not mapped or now - self._greeted.get(room_id, -_MEMBER_GREETING_SECONDS) < _MEMBER_GREETING_SECONDS:
            return
        self._greeted[room_id] = now
        bot = self._bot
        mentions = []
        for member_id in invited[:10]:
            name = member_id
            if bot is not None:
                with contextlib.suppress(Exception):
                    contact = bot.Contact.load(member_id)
                    await contact.ready()
                    name = contact.name
            mentions.append(Mention(member_id, name))
        await self._say_logged(room_id, t("wechaty.member_welcome"), tuple(mentions), key)

    def _is_mapped(self, room_id: str) -> bool:
        with unit_of_work(self._factory) as session:
            return session.get(ChatGroup, room_id) is not None

    async def _say_logged(self, room_id: str, text: str, mentions: Sequence[Mention], key: str) -> None:
        """A greeting is a courtesy, not a delivery: if it cannot go out it is logged, not retried."""
        try:
            await self.say_to_room(room_id, text, mentions, key=key)
        except SendError as exc:
            log.error("wechaty: greeting in room %s not sent: %s", room_id, exc)

    # --- sending ---------------------------------------------------------------------------------------

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        async def send(bot: Wechaty) -> object:
            room = bot.Room.load(room_id)
            await room.ready()
            # The platform writes "@name" before the text and notifies each mentioned member.
            return await room.say(text, mention_ids=[m.id for m in mentions] or None)

        await self._send(f"room {room_id}", key, send)

    async def say_to_contact(self, contact_id: str, text: str, *, key: str) -> None:
        async def send(bot: Wechaty) -> object:
            contact = bot.Contact.load(contact_id)
            await contact.ready()
            return await contact.say(text)

        await self._send(f"contact {contact_id}", key, send)

    async def send_media(self, target_type: TargetType, target_id: str, media: Media, *, key: str) -> None:
        box = await asyncio.to_thread(self._file_box, media)

        async def send(bot: Wechaty) -> object:
            if target_type is TargetType.ROOM:
                room = bot.Room.load(target_id)
                await room.ready()
                return await room.say(box)
            contact = bot.Contact.load(target_id)
            await contact.ready()
            return await contact.say(box)

        await self._send(f"{target_type.value} {target_id}", key, send)

    def _file_box(self, media: Media) -> FileBox:
        """A stored picture goes inline (the peer cannot reach our /media/ URLs); anything else by its URL."""
        path = self._store.path_of_url(media.url)
        if path is not None:
            return FileBox.from_base64(base64.b64encode(path.read_bytes()), name=path.name)
        if media.url.startswith(("http://", "https://")):
            return FileBox.from_url(media.url, name=media.name or media.url.rsplit("/", 1)[-1])
        kind = media.kind.value if isinstance(media.kind, MediaKind) else str(media.kind)
        raise SendError(f"{kind} at {media.url!r} is neither stored here nor a URL", retryable=False)

    async def _send(self, target: str, key: str, send: Callable[[Wechaty], Awaitable[T]]) -> None:
        if key in self._sent_keys:
            log.info("wechaty: message %s to %s was already sent, not sending it again", key, target)
            return
        bot = self._bot
        if bot is None or self._self_id is None:
            raise SendError(f"wechaty is not connected ({self._health.status.value}: {self._health.detail})")
        try:
            sent = await asyncio.wait_for(send(bot), self._config.send_timeout_seconds)
        except SendError:
            raise
        except Exception as exc:  # gRPC errors, a dropped stream, a timeout: the dispatcher retries
            raise SendError(f"wechaty send to {target} failed: {type(exc).__name__}: {exc}") from exc
        if sent is None:
            raise SendError(f"wechaty send to {target}: the puppet service returned no message")
        self._sent_keys.add(key)


def build(settings: Settings, factory: sessionmaker[Session]) -> WechatyChannel:
    """The channel from settings (bot/settings.py, the wechaty block); a half-done configuration stops start-up."""
    token, endpoint = settings.wechaty_puppet_service_token.get_secret_value(), settings.wechaty_puppet_service_endpoint
    if not token or not endpoint:
        raise ValueError(
            "WECHATY_PUPPET_SERVICE_TOKEN and WECHATY_PUPPET_SERVICE_ENDPOINT are needed together "
            "(the endpoint is the puppet service's host:port)"
        )
    if ":" not in endpoint or not endpoint.rpartition(":")[2].isdigit():
        raise ValueError(f"WECHATY_PUPPET_SERVICE_ENDPOINT must be host:port, not {endpoint!r}")
    config = WechatyConfig(
        token=token,
        endpoint=endpoint,
        bot_name=settings.bot_name,
        reconnect_first_seconds=settings.wechaty_reconnect_first_seconds,
        reconnect_max_seconds=settings.wechaty_reconnect_max_seconds,
        stable_seconds=settings.wechaty_stable_seconds,
        ping_seconds=settings.wechaty_ping_seconds,
        send_timeout_seconds=settings.wechaty_send_timeout_seconds,
        login_timeout_seconds=settings.wechaty_login_timeout_seconds,
    )
    store = MediaStore(settings.media_dir, settings.media_max_bytes, settings.media_base_url)
    return WechatyChannel(config, factory, store)


__all__ = ["WechatyChannel", "WechatyConfig", "build"]
