"""The wechaty channel (personal WeChat through a puppet service). Importing this package does not import the
wechaty library: `build_channel` does, so an app without a token never loads it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from bot.channels.wechaty.adapter import WechatyChannel
    from bot.settings import Settings


def build_channel(settings: Settings, factory: sessionmaker[Session]) -> WechatyChannel | None:
    """The channel when WECHATY_PUPPET_SERVICE_TOKEN is set, else None."""
    if not settings.wechaty_puppet_service_token.get_secret_value():
        return None
    from bot.channels.wechaty.adapter import build

    return build(settings, factory)
