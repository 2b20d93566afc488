"""The WeCom (企业微信) adapter: callbacks in (bot/channels/wecom/routes.py), app API and group robots out.

Inbound, WeCom posts encrypted XML to our callback URL and retries when it has no answer within 5 s, so
each verified message is noted in the database, answered at once and handed to the intake in a background
task (the intake drops WeCom's retries by MsgId). If handling fails, or the process dies before it is done,
the note becomes a held message like one that arrived while Rasa was down, and the deferred job replays it
(bot/channels/receipts.py): a valid message is never lost. With the database down nothing can be noted, so
WeCom gets a 503 and sends the message again.

Outbound, per target:
- a member (contact): the app's `message/send`;
- a group with a robot in WECOM_ROBOTS: the robot webhook, real @ through `mentioned_list` (userids);
- any other group id: an app-created group chat (`appchat/send`). Its text messages cannot @ anybody, so a
  mention is written as "@name " before the text (what `Capabilities.can_mention` covers for WeCom).
Every WeCom text is limited to 2048 bytes of UTF-8; `max_text_chars` keeps any text within that, with room
for the mention names, and the dispatcher and notices split at it. Robots take 20 messages a minute each,
the group limit of both `limits` (notices) and `reply_limits`; a group has one robot, so that is per robot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.base import Capabilities, ChannelBase, Health, HealthStatus, Intake
from bot.channels.dedup import Deduplicator
from bot.channels.receipts import Receipts
from bot.channels.sender import SendError, SendLimits
from bot.channels.wecom.api import WeComApi
from bot.channels.wecom.config import WeComConfig
from bot.channels.wecom.inbound import CHANNEL, Parsed, parse_xml, to_incoming
from bot.channels.wecom.security import CallbackMalformed, CallbackSecurity, CallbackUnavailable
from bot.messages import Media, Mention, TargetType
from bot.texts import text as t

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 2048
# Bytes kept for "@name " prefixes in app group chats; the rest holds any text of MAX_TEXT_CHARS (4 bytes each at most).
MENTION_BYTES = 48
MAX_TEXT_CHARS = (MAX_TEXT_BYTES - MENTION_BYTES) // 4
MAX_BODY_BYTES = 256 * 1024
# Robots: 20 messages a minute each. WeCom is an official API, so there is no need to look like a person (no jitter).
ROBOT_LIMITS = SendLimits(per_account=None, per_group=20, window_seconds=60.0, jitter_seconds=0.0)
# Replies: 20 a minute per group or member (robots' limit; app messages allow 30 per member) and a generous cap per app.
REPLY_LIMITS = SendLimits(per_account=600, per_group=20, window_seconds=60.0, jitter_seconds=0.0)
_STOP_GRACE_SECONDS = 10.0


class WeComChannel(ChannelBase):
    name = CHANNEL
    capabilities = Capabilities(
        max_text_chars=MAX_TEXT_CHARS,
        max_text_bytes=MAX_TEXT_BYTES,
        # Robot groups: a real @ (mentioned_list). App group chats have none: "@名字 " is written before the text.
        can_mention=True,
        can_message_contacts=True,
        # No media upload yet: send_media posts a link instead.
        can_send_media=False,
        limits=ROBOT_LIMITS,
        reply_limits=REPLY_LIMITS,
    )

    def __init__(self, config: WeComConfig, factory: sessionmaker[Session], *, redis_url: str | None, namespace: str) -> None:
        self.config = config
        self.account = f"{config.corp_id}:{config.agent_id}"
        self._receipts = Receipts(factory)
        self._redis_url = redis_url
        self._namespace = namespace
        self._redis: aioredis.Redis | None = None
        self._security: CallbackSecurity | None = None
        self._api: WeComApi | None = None
        self._intake: Intake | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._health = Health(HealthStatus.CONNECTING, "not started", account=self.account)

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, intake: Intake) -> None:
        """Callbacks come in over HTTP; starting wires them to the intake and checks the secret with one gettoken."""
        self._intake = intake
        if self._redis_url:
            self._redis = aioredis.from_url(self._redis_url, socket_timeout=2, socket_connect_timeout=2)
        nonces = Deduplicator(self._redis, self._namespace, ttl_seconds=2 * self.config.replay_window_seconds)
        self._security = CallbackSecurity(self.config, nonces)
        self._api = WeComApi(self.config)
        self._spawn(self._check_token())

    async def stop(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=_STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
        if self._api is not None:
            await self._api.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    def health(self) -> Health:
        api = self._api
        if api is None:
            return self._health
        status = HealthStatus.DOWN if api.token_error else HealthStatus.UP
        detail = api.token_error or api.last_error or ""
        if status != self._health.status or detail != self._health.detail:
            self._health = Health(status, detail, account=self.account)
        return self._health

    async def _check_token(self) -> None:
        try:
            await self.api.access_token()
        except SendError as exc:
            log.error("WeCom: cannot get an access token (check WECOM_CORP_ID/WECOM_SECRET): %s", exc)

    def _spawn(self, work: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def api(self) -> WeComApi:
        if self._api is None:
            raise SendError("the WeCom channel is not started")
        return self._api

    @property
    def security(self) -> CallbackSecurity:
        if self._security is None:
            raise RuntimeError("the WeCom channel is not started")
        return self._security

    # --- callbacks -------------------------------------------------------------------------------------

    async def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The admin console's check of the callback URL: echo the decrypted echostr when the signature holds."""
        return await self.security.verify(msg_signature, timestamp, nonce, echostr, once=False)

    async def receive_callback(self, msg_signature: str, timestamp: str, nonce: str, body: bytes) -> Parsed:
        """Verify and decrypt one callback, then hand its message to the intake in the background."""
        if len(body) > MAX_BODY_BYTES:
            raise CallbackMalformed(f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            encrypt = str(parse_xml(body).get("Encrypt") or "")
        except ValueError as exc:
            raise CallbackMalformed(str(exc)) from None
        if not encrypt:
            raise CallbackMalformed("no <Encrypt> element")
        plaintext = await self.security.verify(msg_signature, timestamp, nonce, encrypt)
        try:
            parsed = to_incoming(parse_xml(plaintext))
        except ValueError as exc:
            raise CallbackMalformed(f"decrypted message: {exc}") from None
        if parsed.message is None:
            log.info("WeCom callback %s acknowledged, nothing to do", parsed.kind)
            return parsed
        try:
            noted = await self._receipts.note(parsed.message)
        except Exception as exc:
            log.error("WeCom message %s not noted, WeCom will send it again: %s", parsed.message.message_id, exc)
            await self.security.forget(timestamp, nonce)  # the retry may carry the same nonce
            raise CallbackUnavailable("cannot store the message now, send it again") from None
        assert self._intake is not None
        self._spawn(self._receipts.handle(self._intake, parsed.message, noted))
        return parsed

    # --- sending ---------------------------------------------------------------------------------------

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        robot = self.config.robots.get(room_id)
        if robot is not None:
            await self.api.send_to_robot(robot, _fit(text), [m.id for m in mentions])
        else:
            await self.api.send_to_appchat(room_id, _fit(_mention_prefix(mentions) + text))

    async def say_to_contact(self, contact_id: str, text: str, *, key: str) -> None:
        await self.api.send_to_user(contact_id, _fit(text))

    async def send_media(self, target_type: TargetType, target_id: str, media: Media, *, key: str) -> None:
        """No media upload yet: the picture or file goes out as a link members can open."""
        link = t("wecom.media_link", kind=t(f"wecom.media_kinds.{media.kind.value}"), url=media.url)
        if target_type is TargetType.ROOM:
            await self.say_to_room(target_id, link, key=key)
        else:
            await self.say_to_contact(target_id, link, key=key)


def _mention_prefix(mentions: Sequence[Mention]) -> str:
    """ "@name " for each mention that fits the bytes kept for them; appchat text has no real @."""
    prefix = ""
    for mention in mentions:
        candidate = f"{prefix}@{mention.name} "
        if len(candidate.encode()) > MENTION_BYTES:
            log.info("WeCom appchat: mention of %s left out, no room in the message", mention.id)
            continue
        prefix = candidate
    return prefix


def _fit(content: str) -> str:
    """WeCom refuses texts over 2048 bytes; the dispatcher's split keeps within it, so more is a bug upstream."""
    size = len(content.encode())
    if size > MAX_TEXT_BYTES:
        raise SendError(f"text of {size} bytes is over WeCom's {MAX_TEXT_BYTES}-byte limit", retryable=False)
    return content
