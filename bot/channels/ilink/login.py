"""Binding a person's WeChat by QR code, the way Tencent's client logs in, driven from the console.

An admin asks for a code (`start`): the app fetches one (`get_bot_qrcode`) and a background task long-polls its
status while the console shows the QR image and polls `state`. Whoever scans it with WeChat and confirms binds
their own WeChat to a bot identity of ours: `confirmed` carries the bot token, bot id, API base and the scanner's
user id, which `on_confirmed` stores (bot/channels/ilink/store.py) and starts polling. As in the npm client: an
expired code is replaced by a new one up to 3 times, `scaned_but_redirect` moves the status poll to the host it
names, `need_verifycode` waits for the number WeChat shows on the phone (typed into the console, `verify`),
`binded_redirect` means this WeChat is already bound (nothing new to store), and the whole login gives up after
`timeout_seconds`. States live in this process's memory: the process that runs the channel serves the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.channels.ilink.protocol import IlinkApi

log = logging.getLogger(__name__)

MAX_CODES = 3
_KEPT_SECONDS = 600.0  # a finished login stays readable this long, so the console sees how it ended
_RETRY_SECONDS = 1.0


@dataclass
class LoginState:
    id: str
    status: str = "starting"  # starting, wait, scaned, need_verifycode, confirmed, already_bound, failed
    qr_url: str = ""
    codes: int = 0
    message: str = ""
    bot_id: str = ""
    user_id: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    verify_code: str | None = None
    grid_code: str | None = None  # where the person's private reports will go
    code_given: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.finished is not None


Confirmed = Callable[[str, str, str, str, str | None], Awaitable[None]]  # bot id, user id, token, base URL, grid


class Logins:
    def __init__(
        self, api: IlinkApi, base_url: str, bot_type: str, timeout_seconds: float, poll_timeout_seconds: float,
        known_tokens: Callable[[], Awaitable[list[str]]], on_confirmed: Confirmed, pause_seconds: float = 1.0,
    ) -> None:  # fmt: skip
        self._pause = pause_seconds
        self._api = api
        self._base_url = base_url
        self._bot_type = bot_type
        self._timeout = timeout_seconds
        self._poll_timeout = poll_timeout_seconds
        self._known_tokens = known_tokens
        self._on_confirmed = on_confirmed
        self._states: dict[str, LoginState] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, grid_code: str | None = None) -> LoginState:
        """A new login with its first QR code (raises ProtocolError/ApiError when none can be had)."""
        self._forget_old()
        state = LoginState(id=uuid.uuid4().hex, grid_code=grid_code)
        code = await self._new_code(state)
        self._states[state.id] = state
        task = asyncio.create_task(self._follow(state, code), name=f"ilink-login-{state.id[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return state

    def state(self, login_id: str) -> LoginState | None:
        return self._states.get(login_id)

    def verify(self, login_id: str, code: str) -> LoginState | None:
        state = self._states.get(login_id)
        if state is not None and not state.done:
            state.verify_code = code
            state.code_given.set()
        return state

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _new_code(self, state: LoginState) -> str:
        code, url = await self._api.bot_qrcode(self._base_url, self._bot_type, await self._known_tokens())
        state.codes += 1
        state.qr_url, state.status, state.message = url, "wait", ""
        return code

    async def _follow(self, state: LoginState, code: str) -> None:
        base = self._base_url
        deadline = state.started + self._timeout
        try:
            while time.monotonic() < deadline:
                sent = state.verify_code  # the number typed in may change while this poll is out
                try:
                    answer = await self._api.qrcode_status(base, code, sent, self._poll_timeout)
                except Exception as exc:  # a gateway timeout, a dropped poll, an odd answer: the npm client waits on
                    log.warning("iLink login %s: status poll failed, trying again: %s", state.id[:8], exc)
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                status = str(answer.get("status") or "wait")
                if status == "confirmed":
                    await self._confirmed(state, answer, base)
                    return
                if status == "binded_redirect":
                    self._finish(state, "already_bound", "this WeChat is already bound to the bot; nothing new to store")
                    return
                if status in ("expired", "verify_code_blocked"):
                    if state.codes >= MAX_CODES:
                        self._finish(state, "failed", f"the QR code expired {MAX_CODES} times; start again")
                        return
                    code = await self._new_code(state)
                    state.verify_code = None
                    base = self._base_url
                    continue
                if status == "scaned_but_redirect":
                    host = answer.get("redirect_host")
                    if isinstance(host, str) and host:
                        base = f"{urlsplit(self._base_url).scheme}://{host}"
                    status = "scaned"
                if status == "need_verifycode":
                    state.status = status
                    if sent is not None and state.verify_code == sent:  # the number sent was wrong: ask again
                        state.message = "the number did not match; type the number WeChat shows again"
                        state.verify_code = None
                    await self._wait_for_code(state, deadline)
                    continue
                if status == "scaned" and sent is not None and state.verify_code == sent:
                    state.verify_code, state.message = None, ""  # accepted
                state.status = status if status in ("wait", "scaned") else state.status
                await asyncio.sleep(self._pause)  # the npm client's pause between status polls
            self._finish(state, "failed", "nobody confirmed the QR code in time; start again")
        except asyncio.CancelledError:
            self._finish(state, "failed", "the app stopped")
            raise
        except Exception as exc:
            log.exception("iLink login %s failed", state.id[:8])
            self._finish(state, "failed", f"{type(exc).__name__}: {exc}")

    @staticmethod
    async def _wait_for_code(state: LoginState, deadline: float) -> None:
        state.code_given.clear()
        if state.verify_code is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.code_given.wait(), max(deadline - time.monotonic(), 0.0))

    async def _confirmed(self, state: LoginState, answer: dict[str, object], base: str) -> None:
        token, bot_id, user_id = answer.get("bot_token"), answer.get("ilink_bot_id"), answer.get("ilink_user_id")
        if not all(isinstance(v, str) and v and len(v) <= 4096 for v in (token, bot_id, user_id)):
            self._finish(state, "failed", "the login was confirmed without a bot token, bot id or user id")
            return
        assert isinstance(token, str) and isinstance(bot_id, str) and isinstance(user_id, str)
        if len(bot_id) > 128 or len(user_id) > 128:
            self._finish(state, "failed", "the bot id or user id is longer than 128 characters")
            return
        base_url = answer.get("baseurl")
        api_base = base_url if isinstance(base_url, str) and base_url.startswith(("https://", "http://")) else base
        await self._on_confirmed(bot_id, user_id, token, api_base, state.grid_code)
        state.bot_id, state.user_id = bot_id, user_id
        self._finish(state, "confirmed", "bound")
        log.info("iLink: WeChat user %s bound as %s", user_id, bot_id)

    @staticmethod
    def _finish(state: LoginState, status: str, message: str) -> None:
        state.status, state.message, state.finished = status, message, time.monotonic()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._states.items() if s.finished is not None and now - s.finished > _KEPT_SECONDS]:
            del self._states[key]
