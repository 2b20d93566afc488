"""Personal WeChat through Tencent's official bot route (iLink, the "ClawBot" of OpenClaw): one-to-one chats only.

What the platform allows, and so what this channel declares (`capabilities`):
- **No groups.** A binding is one person's WeChat talking to one bot identity; the route delivers no group
  events and has no way to post into a group. `can_post_to_rooms` is False: notices never pick this channel, no
  group can be mapped to it (bot/channel_cli.py, bot/api/groups.py) and `say_to_room` refuses for good.
- **Everyone who talks to the bot scanned a binding QR code** (console → 群与网格 → 个人微信): each scan binds that
  person; each binding is long-polled by its own task (bot/channels/ilink/poller.py).
- **A reply window.** WeChat takes the bot's message to a person only within 24 h of their last message (with
  that message's `context_token`) and at most 10 per message of theirs. The allowance is tracked per contact in
  the database (bot/channels/ilink/store.py) and taken before each send; a send it does not allow is refused
  here, for good (`SendError(retryable=False)`): the dispatcher marks it failed with the reason, the log says
  so, and the console lists it (GET /api/v1/channels/ilink). That includes a worker's notice: the ticket is
  on the worker's board in the console all the same. The last message the allowance permits ends with a line
  asking the person to write again (`ilink.last_message_hint`), so a worker who reads it can reopen the window.
- Texts: WeChat takes up to 16 KiB of UTF-8 per text; 2000 characters keeps a message readable, longer ones
  are split by the dispatcher (each part counts against the allowance). Pictures are sent as links (uploading
  to WeChat's CDN is not done here).

Only the process running the channel polls and sends (like wechaty): run one app process with ILINK_ENABLED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.base import Capabilities, ChannelBase, Health, HealthStatus, Intake, cancel_and_wait
from bot.channels.ilink import store
from bot.channels.ilink.config import IlinkConfig
from bot.channels.ilink.inbound import CHANNEL
from bot.channels.ilink.login import Logins, LoginState
from bot.channels.ilink.poller import Poller
from bot.channels.ilink.protocol import ApiError, IlinkApi, ProtocolError
from bot.channels.sender import SendError, SendLimits
from bot.channels.sent_keys import SentKeys
from bot.media_store import MediaStore
from bot.messages import Media, Mention, TargetType
from bot.texts import text as t
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
# Replies to one person: its cap (10 per message of theirs) bounds them already; 20 a minute keeps a person who
# writes several messages quickly from bursting, and WeChat's own "rate limited" (ret -2) is retried with backoff.
# No per-account limit: each binding is its own bot identity.
REPLY_LIMITS = SendLimits(per_account=None, per_group=20, window_seconds=60.0, jitter_seconds=0.0)


class IlinkChannel(ChannelBase):
    name = CHANNEL
    account = CHANNEL  # each binding is its own bot identity ("…@im.bot"); none is "the" account
    capabilities = Capabilities(
        max_text_chars=MAX_TEXT_CHARS,
        can_mention=False,
        can_message_contacts=True,
        can_send_media=False,
        can_post_to_rooms=False,
        max_text_bytes=16 * 1024,
        limits=SendLimits(per_account=None, per_group=None, jitter_seconds=0.0),
        reply_limits=REPLY_LIMITS,
    )

    def __init__(
        self, config: IlinkConfig, factory: sessionmaker[Session], media: MediaStore, api: IlinkApi | None = None
    ) -> None:
        self.config = config
        self._factory = factory
        self._media = media
        self._api = api or IlinkApi(config.bot_agent, config.send_timeout_seconds)
        self._intake: Intake | None = None
        self._pollers: dict[str, tuple[Poller, asyncio.Task[None]]] = {}
        self._sent_keys = SentKeys()
        # Keys whose send took a place in the allowance and may have reached WeChat without our hearing back.
        self._taken = SentKeys()
        self._started = False
        self.logins = Logins(
            self._api, config.api_base, config.bot_type, config.login_timeout_seconds, config.long_poll_seconds,
            known_tokens=self._known_tokens, on_confirmed=self._bind,
        )  # fmt: skip

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, intake: Intake) -> None:
        self._intake = intake
        self._started = True
        for binding in await asyncio.to_thread(self._bindings):
            self._poll(binding)
        if not self._pollers:
            log.warning("iLink: no WeChat user is bound yet; bind one in the console (群与网格 → 个人微信)")

    async def stop(self) -> None:
        self._started = False
        await self.logins.stop()
        pollers = list(self._pollers.values())
        self._pollers.clear()
        await cancel_and_wait(task for _poller, task in pollers)
        # notifystop for every binding at once, as the npm client sends it on shutdown; a slow server costs 3 s at most.
        await asyncio.gather(*(poller.goodbye() for poller, _ in pollers), return_exceptions=True)
        await self._api.aclose()

    def health(self) -> Health:
        pollers = [poller for poller, _ in self._pollers.values()]
        if not pollers:
            detail = "no WeChat user is bound yet: 群与网格 → 个人微信 → 生成绑定二维码"
            return Health(HealthStatus.CONNECTING, detail, account=self.account)
        up = [p for p in pollers if p.health.status is HealthStatus.UP]
        if up:
            problems = [f"{p.binding.bot_id}: {p.health.detail}" for p in pollers if p.health.status is not HealthStatus.UP]
            detail = f"{len(up)} of {len(pollers)} bindings polling" + (f"; {'; '.join(problems)}" if problems else "")
            return Health(HealthStatus.UP, detail, min(p.health.since for p in up), self.account)
        worst = HealthStatus.DOWN if all(p.health.status is HealthStatus.DOWN for p in pollers) else HealthStatus.CONNECTING
        detail = "; ".join(f"{p.binding.bot_id}: {p.health.detail}" for p in pollers)
        return Health(worst, detail, min(p.health.since for p in pollers), self.account)

    def pollers(self) -> list[Poller]:
        return [poller for poller, _ in self._pollers.values()]

    def _poll(self, binding: store.Binding) -> None:
        assert self._intake is not None
        poller = Poller(binding, self._api, self.config, self._factory, self._intake, self._media)
        task = asyncio.create_task(self._run(poller), name=f"ilink-poll-{binding.bot_id}")
        self._pollers[binding.bot_id] = (poller, task)

    @staticmethod
    async def _run(poller: Poller) -> None:
        try:
            await poller.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not a platform failure (those are handled in the loop): say so loudly
            log.exception("iLink poller of %s stopped", poller.binding.bot_id)
            raise

    async def _stop_polling(self, bot_id: str) -> None:
        entry = self._pollers.pop(bot_id, None)
        if entry is not None:
            entry[1].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await entry[1]

    # --- binding -----------------------------------------------------------------------------------------

    async def start_login(self, grid_code: str | None = None) -> LoginState:
        return await self.logins.start(grid_code)

    async def _bind(self, bot_id: str, user_id: str, token: str, base_url: str, grid_code: str | None) -> None:
        """A confirmed scan: stored, older bindings of the same person dropped, and its poll started (or restarted
        with the new token)."""
        dropped, binding = await asyncio.to_thread(self._save_binding, bot_id, user_id, token, base_url, grid_code)
        for old in [*dropped, bot_id]:
            await self._stop_polling(old)
        if self._started:
            self._poll(binding)

    def _save_binding(
        self, bot_id: str, user_id: str, token: str, base_url: str, grid_code: str | None
    ) -> tuple[list[str], store.Binding]:
        with unit_of_work(self._factory) as session:
            dropped = store.save_binding(session, bot_id, user_id, token, base_url, grid_code)
            session.flush()
            row = session.get(store.IlinkBinding, bot_id)
            assert row is not None
            return dropped, store.Binding.of(row)

    def _bindings(self) -> list[store.Binding]:
        with unit_of_work(self._factory) as session:
            return store.bindings(session)

    async def _known_tokens(self) -> list[str]:
        """The newest bot tokens we hold, sent with a QR request as the npm client does (WeChat then recognises a
        person already bound and answers binded_redirect instead of issuing a second identity)."""

        def newest() -> list[str]:
            with unit_of_work(self._factory) as session:
                query = select(store.IlinkBinding.bot_token).order_by(store.IlinkBinding.bound_at.desc()).limit(10)
                return list(session.scalars(query))

        return await asyncio.to_thread(newest)

    # --- sending ---------------------------------------------------------------------------------------

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        raise SendError(f"iLink has no groups: cannot post into {room_id!r} (one-to-one chats only)", retryable=False)

    async def send_media(self, target_type: TargetType, target_id: str, media: Media, *, key: str) -> None:
        """No upload to WeChat's CDN: the picture or file goes out as a link the person can open."""
        if target_type is TargetType.ROOM:
            await self.say_to_room(target_id, "", key=key)
        link = t("ilink.media_link", kind=t(f"ilink.media_kinds.{media.kind.value}"), url=media.url)
        await self.say_to_contact(target_id, link, key=key)

    async def say_to_contact(self, contact_id: str, text: str, *, key: str) -> None:
        if key in self._sent_keys:
            log.info("iLink: message %s to %s was already sent, not sending it again", key, contact_id)
            return
        retry = key in self._taken  # an earlier attempt took its place and may have reached WeChat
        try:
            allowance = await asyncio.to_thread(self._take, contact_id, retry)
        except store.Refused as exc:
            log.warning("iLink: message to %s not sent: %s", contact_id, exc)
            raise SendError(f"iLink: not sent: {exc}", retryable=False) from None
        binding = allowance.binding
        if binding.state == store.BindingState.PAUSED:
            await self._release(contact_id, retry)
            raise SendError(f"iLink: the binding {binding.bot_id} is paused (stale token) until {binding.paused_until}")
        if allowance.left == 0:  # the last one WeChat will take until they write: ask them to
            text = f"{text}\n{t('ilink.last_message_hint')}"
        try:
            await self._api.send_text(
                binding.base_url, binding.bot_token, contact_id, text, allowance.context_token, client_id=f"gridbot:{key}"
            )
        except ApiError as exc:
            if exc.stale_token or exc.rate_limited:
                await self._release(contact_id, retry)
                raise SendError(str(exc)) from None  # retried later (the poller pauses a stale binding)
            self._taken.discard(key)
            await asyncio.to_thread(self._close, contact_id, str(exc))
            log.warning("iLink: WeChat refused a message to %s: %s; nothing more until they write", contact_id, exc)
            raise SendError(f"iLink: WeChat refused it: {exc}", retryable=False) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            await self._release(contact_id, retry)  # it never reached WeChat
            raise SendError(f"iLink unreachable: {type(exc).__name__}: {exc}") from None
        except (httpx.HTTPError, ProtocolError) as exc:
            # It may have reached WeChat: its place stays taken, and the retry (same client_id) takes no other.
            self._taken.add(key)
            raise SendError(f"iLink send failed: {type(exc).__name__}: {exc}") from None
        self._taken.discard(key)
        self._sent_keys.add(key)

    async def _release(self, contact_id: str, retry: bool) -> None:
        """Give the place back when this attempt took it; a retry's place was taken by an attempt that may have
        reached WeChat, so it stays."""
        if not retry:
            await asyncio.to_thread(self._give_back, contact_id)

    def _take(self, contact_id: str, retry: bool = False) -> store.Allowance:
        with unit_of_work(self._factory) as session:
            try:
                return store.take(
                    session, contact_id, self.config.reply_window, self.config.messages_per_inbound, retry=retry
                )
            except store.Refused:
                session.commit()  # the refusal is recorded on the contact for the console
                raise

    def _give_back(self, contact_id: str) -> None:
        with unit_of_work(self._factory) as session:
            store.give_back(session, contact_id)

    def _close(self, contact_id: str, reason: str) -> None:
        with unit_of_work(self._factory) as session:
            store.close(session, contact_id, reason)
