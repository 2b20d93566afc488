"""The iLink channel's settings, read once from bot/settings.py and checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.channels.backoff import backoff
from bot.settings import Settings


@dataclass(frozen=True)
class IlinkConfig:
    api_base: str
    cdn_base: str
    bot_type: str
    bot_agent: str
    reply_window: timedelta
    messages_per_inbound: int
    long_poll_seconds: float
    retry_first_seconds: float
    retry_max_seconds: float
    stale_pause_seconds: float
    login_timeout_seconds: float
    send_timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> IlinkConfig | None:
        """None when the channel is off; settings the platform would refuse stop start-up with why."""
        if not settings.ilink_enabled:
            return None
        for name in ("ilink_api_base", "ilink_cdn_base"):
            if not str(getattr(settings, name)).startswith(("https://", "http://")):
                raise ValueError(f"{name.upper()} must be an http(s) URL, not {getattr(settings, name)!r}")
        if not 0 < settings.ilink_reply_window_hours <= 24:
            raise ValueError("ILINK_REPLY_WINDOW_HOURS must be more than 0 and at most 24 (WeChat's window)")
        if not 1 <= settings.ilink_messages_per_inbound <= 10:
            raise ValueError("ILINK_MESSAGES_PER_INBOUND must be 1 to 10 (WeChat takes at most 10 per message)")
        return cls(
            api_base=settings.ilink_api_base.rstrip("/"),
            cdn_base=settings.ilink_cdn_base.rstrip("/"),
            bot_type=settings.ilink_bot_type,
            bot_agent=settings.ilink_bot_agent,
            reply_window=timedelta(hours=settings.ilink_reply_window_hours),
            messages_per_inbound=settings.ilink_messages_per_inbound,
            long_poll_seconds=settings.ilink_long_poll_seconds,
            retry_first_seconds=settings.ilink_retry_first_seconds,
            retry_max_seconds=settings.ilink_retry_max_seconds,
            stale_pause_seconds=settings.ilink_stale_pause_seconds,
            login_timeout_seconds=settings.ilink_login_timeout_seconds,
            send_timeout_seconds=settings.ilink_send_timeout_seconds,
        )

    def backoff(self, failures: int) -> float:
        """Pause after `failures` failed polls in a row: doubling from the first step to the cap, ±20 %."""
        return backoff(failures, self.retry_first_seconds, self.retry_max_seconds)
