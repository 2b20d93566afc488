"""The WeCom channel's settings, read once and checked, so a typo in the robot map stops start-up with why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from bot.settings import Settings


@dataclass(frozen=True)
class WeComConfig:
    corp_id: str
    agent_id: int
    secret: str
    token: str
    encoding_aes_key: str
    api_base: str = "https://qyapi.weixin.qq.com"
    replay_window_seconds: int = 300
    # Our group id (chat_groups.id) -> the robot's webhook URL.
    robots: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> WeComConfig | None:
        """None when the app is not configured (the channel is then not built); half a configuration is an error."""
        secret, token = settings.wecom_secret.get_secret_value(), settings.wecom_token.get_secret_value()
        aes_key = settings.wecom_encoding_aes_key.get_secret_value()
        values = {
            "WECOM_CORP_ID": settings.wecom_corp_id,
            "WECOM_AGENT_ID": settings.wecom_agent_id,
            "WECOM_SECRET": secret,
            "WECOM_TOKEN": token,
            "WECOM_ENCODING_AES_KEY": aes_key,
        }
        present = [name for name, value in values.items() if value not in ("", None)]
        if not present:
            return None
        missing = [name for name in values if name not in present]
        if missing:
            raise ValueError(f"WeCom is half configured: {', '.join(missing)} missing (set all of {', '.join(values)})")
        if len(aes_key) != 43:
            raise ValueError("WECOM_ENCODING_AES_KEY must be the 43 characters shown in the admin console")
        assert settings.wecom_agent_id is not None
        api_base = settings.wecom_api_base.rstrip("/")
        return cls(
            corp_id=settings.wecom_corp_id,
            agent_id=settings.wecom_agent_id,
            secret=secret,
            token=token,
            encoding_aes_key=aes_key,
            api_base=api_base,
            replay_window_seconds=settings.wecom_replay_window_seconds,
            robots=parse_robots(settings.wecom_robots, api_base),
        )


def parse_robots(robots: Mapping[str, str], api_base: str) -> dict[str, str]:
    """WECOM_ROBOTS (settings.wecom_robots, checked when settings load): group id -> robot key or full webhook
    URL; here every key becomes the URL on `api_base`."""
    return {group: _webhook_url(value, api_base) for group, value in robots.items()}


def _webhook_url(value: str, api_base: str) -> str:
    if value.startswith(("https://", "http://")):
        return value
    return f"{api_base}/cgi-bin/webhook/send?key={quote(value, safe='')}"
