"""The WeCom channel's settings, read once and checked, so a typo in the robot map stops start-up with why."""

from __future__ import annotations

import json
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
        values = {
            "WECOM_CORP_ID": settings.wecom_corp_id,
            "WECOM_AGENT_ID": settings.wecom_agent_id,
            "WECOM_SECRET": settings.wecom_secret,
            "WECOM_TOKEN": settings.wecom_token,
            "WECOM_ENCODING_AES_KEY": settings.wecom_encoding_aes_key,
        }
        present = [name for name, value in values.items() if value not in ("", None)]
        if not present:
            return None
        missing = [name for name in values if name not in present]
        if missing:
            raise ValueError(f"WeCom is half configured: {', '.join(missing)} missing (set all of {', '.join(values)})")
        if len(settings.wecom_encoding_aes_key) != 43:
            raise ValueError("WECOM_ENCODING_AES_KEY must be the 43 characters shown in the admin console")
        assert settings.wecom_agent_id is not None
        api_base = settings.wecom_api_base.rstrip("/")
        return cls(
            corp_id=settings.wecom_corp_id,
            agent_id=settings.wecom_agent_id,
            secret=settings.wecom_secret,
            token=settings.wecom_token,
            encoding_aes_key=settings.wecom_encoding_aes_key,
            api_base=api_base,
            replay_window_seconds=settings.wecom_replay_window_seconds,
            robots=parse_robots(settings.wecom_robots, api_base),
        )


def parse_robots(raw: str, api_base: str) -> dict[str, str]:
    """WECOM_ROBOTS: {"group id": "robot key" or "https://…/webhook/send?key=…"} -> group id to webhook URL."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f'WECOM_ROBOTS must be JSON like {{"group-id": "robot-key"}}: {exc}') from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise ValueError('WECOM_ROBOTS must map group ids to robot keys or webhook URLs: {"group-id": "robot-key"}')
    return {group: _webhook_url(value, api_base) for group, value in data.items()}


def _webhook_url(value: str, api_base: str) -> str:
    if value.startswith(("https://", "http://")):
        return value
    return f"{api_base}/cgi-bin/webhook/send?key={quote(value, safe='')}"
