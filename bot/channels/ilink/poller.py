"""The long-poll of one binding: fetch what its person wrote, note it with the cursor, hand it to the intake.

Each round asks `getupdates` for what follows the stored cursor. The server holds the request until there is
something or its long-poll time is up (a client timeout is just an empty round). A batch is converted first
(pictures downloaded), then noted in one transaction with the new cursor (bot/channels/ilink/store.accept), then
handled in order, one message at a time: a person's "路灯坏了" is answered before their "在3号楼". What goes
wrong is handled where it happens:
- the server unreachable, an HTTP error, an answer that is not the protocol's JSON: logged, tried again after a
  pause doubling from `ILINK_RETRY_FIRST_SECONDS` to the cap, with the same cursor (nothing is skipped);
- one malformed message in a batch: logged and skipped, the rest of the batch handled, the cursor moves on;
- the token called stale (-14): the binding pauses (`ILINK_STALE_PAUSE_SECONDS`, an hour like the npm client),
  recorded in the database so a restart keeps the pause, then polls again;
- the database down when noting: logged, and the same batch fetched again later (it was not acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.base import Health, HealthStatus, Intake
from bot.channels.ilink import inbound, store
from bot.channels.ilink.config import IlinkConfig
from bot.channels.ilink.protocol import ApiError, IlinkApi
from bot.channels.receipts import Receipts
from bot.media_store import MediaStore
from storage.base import utcnow
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

_DOWN_AFTER_FAILURES = 4
_CLIENT_MARGIN_SECONDS = 5.0  # the client waits this much longer than the server may hold a long-poll


class Poller:
    def __init__(
        self, binding: store.Binding, api: IlinkApi, config: IlinkConfig, factory: sessionmaker[Session],
        intake: Intake, media: MediaStore,
    ) -> None:  # fmt: skip
        self.binding = binding
        self._api = api
        self._config = config
        self._factory = factory
        self._intake = intake
        self._media = media
        self._receipts = Receipts(factory)
        self.health = Health(HealthStatus.CONNECTING, "starting", account=binding.bot_id)
        self.last_poll_at: float | None = None

    def _set(self, status: HealthStatus, detail: str) -> None:
        if status is not self.health.status or detail != self.health.detail:
            since = self.health.since if status is self.health.status else Health(status).since
            self.health = Health(status, detail, since, self.binding.bot_id)

    async def run(self) -> None:
        await self._wait_out_pause()
        await self._notify(online=True)
        failures = 0
        timeout = self._config.long_poll_seconds
        while True:
            binding = self.binding
            try:
                wait = timeout + _CLIENT_MARGIN_SECONDS
                updates = await self._api.updates(binding.base_url, binding.bot_token, binding.cursor, wait)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.stale_token:
                    await self._pause(str(exc))
                    failures = 0
                    continue
                failures = await self._failed(failures, str(exc))
                continue
            except Exception as exc:  # unreachable, HTTP error, not the protocol's JSON: the same cursor again
                failures = await self._failed(failures, f"{type(exc).__name__}: {exc}")
                continue
            self.last_poll_at = time.monotonic()
            if updates.next_timeout_seconds is not None:
                timeout = min(updates.next_timeout_seconds, 120.0)
            try:
                await self._take(updates.messages, updates.cursor)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database, mostly: the batch was not noted, so it is fetched again
                log.error("iLink %s: a batch could not be noted, fetching it again: %s", binding.bot_id, exc)
                failures = await self._failed(failures, f"cannot note messages: {type(exc).__name__}: {exc}")
                continue
            failures = 0
            self._set(HealthStatus.UP, f"polling as {binding.bot_id} for {binding.user_id}")

    async def _take(self, raw_messages: list[object], cursor: str) -> None:
        arrivals: list[store.Arrival] = []
        for raw in raw_messages:
            try:
                converted = await inbound.convert(raw, self._api, self._media, self._config.cdn_base, self.binding.grid_code)
                arrivals.append(converted)
            except inbound.Malformed as exc:
                log.warning("iLink %s: malformed message skipped: %s: %.300r", self.binding.bot_id, exc, raw)
            except inbound.Skipped as exc:
                log.info("iLink %s: message skipped: %s", self.binding.bot_id, exc)
            except Exception:  # a shape nobody foresaw must not block the stream behind it: skipped like a malformed one
                log.exception("iLink %s: malformed message skipped (unexpected shape): %.300r", self.binding.bot_id, raw)
        if not arrivals and cursor == self.binding.cursor:
            return
        notes = await asyncio.to_thread(self._accept, cursor, arrivals)
        self.binding = replace(self.binding, cursor=cursor)
        for arrival, note in zip(arrivals, notes, strict=True):
            await self._receipts.handle(self._intake, arrival.message, note)

    def _accept(self, cursor: str, arrivals: list[store.Arrival]) -> list[int]:
        with unit_of_work(self._factory) as session:
            return store.accept(session, self.binding.bot_id, cursor, arrivals)

    async def _failed(self, failures: int, reason: str) -> int:
        failures += 1
        delay = self._config.backoff(failures)
        status = HealthStatus.DOWN if failures >= _DOWN_AFTER_FAILURES else HealthStatus.CONNECTING
        log.warning("iLink %s: poll failed (%d in a row), again in %.1f s: %s", self.binding.bot_id, failures, delay, reason)
        self._set(status, f"{reason}; polling again in {delay:.1f} s (attempt {failures})")
        await asyncio.sleep(delay)
        return failures

    async def _pause(self, reason: str) -> None:
        until = utcnow() + timedelta(seconds=self._config.stale_pause_seconds)
        log.error("iLink %s: the bot token is stale (%s); pausing until %s", self.binding.bot_id, reason, until)
        await asyncio.to_thread(self._record_pause, until, reason)
        self.binding = replace(self.binding, state=store.BindingState.PAUSED, paused_until=until)
        await self._wait_out_pause()

    def _record_pause(self, until: datetime, reason: str) -> None:
        with unit_of_work(self._factory) as session:
            store.pause(session, self.binding.bot_id, until, reason)

    def _record_resume(self) -> None:
        with unit_of_work(self._factory) as session:
            store.resume(session, self.binding.bot_id)

    async def _wait_out_pause(self) -> None:
        until = self.binding.paused_until
        if self.binding.state != store.BindingState.PAUSED or until is None:
            return
        wait = (until - utcnow()).total_seconds()
        if wait > 0:
            self._set(HealthStatus.DOWN, f"the bot token is stale; paused until {until:%Y-%m-%d %H:%M} UTC (or scan again)")
            await asyncio.sleep(wait)
        await asyncio.to_thread(self._record_resume)
        self.binding = replace(self.binding, state=store.BindingState.ACTIVE, paused_until=None)

    async def _notify(self, *, online: bool) -> None:
        """notifystart / notifystop, as the npm client sends them; failures are only logged."""
        try:
            await self._api.notify(self.binding.base_url, self.binding.bot_token, online=online)
        except Exception as exc:
            log.info("iLink %s: notify%s failed (ignored): %s", self.binding.bot_id, "start" if online else "stop", exc)

    async def goodbye(self) -> None:
        await asyncio.wait_for(self._notify(online=False), 3.0)
