"""Personal WeChat through Tencent's official iLink bot route (ClawBot): one-to-one chats. See channel.py."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.ilink.channel import IlinkChannel
from bot.channels.ilink.config import IlinkConfig
from bot.media_store import MediaStore
from bot.settings import Settings

__all__ = ["IlinkChannel", "IlinkConfig", "build_ilink_channel"]


def build_ilink_channel(settings: Settings, factory: sessionmaker[Session]) -> IlinkChannel | None:
    """The channel when ILINK_ENABLED is true, else None; settings WeChat would refuse stop start-up with why."""
    config = IlinkConfig.from_settings(settings)
    if config is None:
        return None
    return IlinkChannel(config, factory, MediaStore(settings.media_dir, settings.media_max_bytes, settings.media_base_url))
