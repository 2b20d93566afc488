"""The smart robot channel's settings, read once and checked: half a configuration stops start-up with why."""

from __future__ import annotations

from dataclasses import dataclass

from bot.channels.backoff import backoff
from bot.settings import Settings


@dataclass(frozen=True)
class AibotConfig:
    bot_id: str
    secret: str
    ws_url: str = "wss://openws.work.weixin.qq.com"
    heartbeat_seconds: float = 30.0
    reconnect_first_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    stable_seconds: float = 30.0
    request_timeout_seconds: float = 10.0
    reply_window_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AibotConfig | None:
        """None when the robot is not configured (the channel is then not built)."""
        bot_id, secret = settings.wecom_aibot_bot_id.strip(), settings.wecom_aibot_secret.get_secret_value().strip()
        if not bot_id and not secret:
            return None
        if not bot_id or not secret:
            missing = "WECOM_AIBOT_BOT_ID" if not bot_id else "WECOM_AIBOT_SECRET"
            raise ValueError(
                f"the WeCom smart robot is half configured: {missing} missing (set WECOM_AIBOT_BOT_ID and WECOM_AIBOT_SECRET)"
            )
        if not settings.wecom_aibot_ws_url.startswith(("wss://", "ws://")):
            raise ValueError(f"WECOM_AIBOT_WS_URL must be a ws:// or wss:// address, not {settings.wecom_aibot_ws_url!r}")
        return cls(
            bot_id=bot_id,
            secret=secret,
            ws_url=settings.wecom_aibot_ws_url,
            heartbeat_seconds=settings.wecom_aibot_heartbeat_seconds,
            reconnect_first_seconds=settings.wecom_aibot_reconnect_first_seconds,
            reconnect_max_seconds=settings.wecom_aibot_reconnect_max_seconds,
            stable_seconds=settings.wecom_aibot_stable_seconds,
            request_timeout_seconds=settings.wecom_aibot_request_timeout_seconds,
            reply_window_seconds=settings.wecom_aibot_reply_window_seconds,
        )

    def backoff(self, failures: int) -> float:
        """Pause before the next attempt: doubling from the first step to the cap, ±20 % so restarts spread out."""
        return backoff(failures, self.reconnect_first_seconds, self.reconnect_max_seconds)
