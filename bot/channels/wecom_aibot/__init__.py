"""WeCom smart robot (企业微信智能机器人) over its long connection: groups where it is @-mentioned and private chats,
answered in place, pushes into chats that have talked to it. See channel.py."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.wecom_aibot.channel import AibotChannel
from bot.channels.wecom_aibot.config import AibotConfig
from bot.media_store import MediaStore
from bot.settings import Settings

__all__ = ["AibotChannel", "AibotConfig", "build_channel"]


def build_channel(settings: Settings, factory: sessionmaker[Session]) -> AibotChannel | None:
    """The channel when WECOM_AIBOT_BOT_ID and WECOM_AIBOT_SECRET are set, else None; one of them alone raises."""
    config = AibotConfig.from_settings(settings)
    if config is None:
        return None
    store = MediaStore(settings.media_dir, settings.media_max_bytes, settings.media_base_url)
    return AibotChannel(config, factory, store)
