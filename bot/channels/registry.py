"""The channels this process runs, by name: built from settings, started and stopped together."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from bot.channels.base import Channel, Health, Intake

log = logging.getLogger(__name__)


class UnknownChannel(LookupError):
    pass


class ChannelRegistry:
    def __init__(self, channels: list[Channel]) -> None:
        self._channels = {channel.name: channel for channel in channels}

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels.values())

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def get(self, name: str) -> Channel:
        try:
            return self._channels[name]
        except KeyError:
            raise UnknownChannel(f"channel {name!r} is not running here (running: {', '.join(self._channels)})") from None

    async def start_all(self, intake: Intake) -> None:
        for channel in self:
            await channel.start(intake)
            log.info("channel %s started (account %s)", channel.name, channel.account)

    async def stop_all(self) -> None:
        for channel in reversed(list(self)):
            try:
                await channel.stop()
            except Exception:  # one adapter failing to stop must not keep the others running
                log.exception("channel %s did not stop cleanly", channel.name)

    def health(self) -> dict[str, Health]:
        return {channel.name: channel.health() for channel in self}
