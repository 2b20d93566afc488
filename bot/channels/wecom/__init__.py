"""WeCom (企业微信): a self-built app's callbacks and API, plus group robot webhooks. See channel.py."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.wecom.channel import WeComChannel
from bot.channels.wecom.config import WeComConfig
from bot.settings import Settings, namespace_for

__all__ = ["WeComChannel", "WeComConfig", "build_wecom_channel"]


def build_wecom_channel(settings: Settings, factory: sessionmaker[Session]) -> WeComChannel | None:
    """The channel when WECOM_* settings are present, else None; a half configuration raises with what is missing."""
    config = WeComConfig.from_settings(settings)
    if config is None:
        return None
    return WeComChannel(config, factory, redis_url=settings.redis_url, namespace=namespace_for(settings))
