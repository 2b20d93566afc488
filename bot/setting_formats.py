"""The text formats of the structured settings (JSON, comma-separated lists, a clock time), parsed when settings load.

Each setting keeps the format .env.example documents; bot/settings.py turns the text into a typed value once, so
a malformed value stops start-up naming its variable instead of failing (or silently turning a feature off) where
it is first used. The types are `Annotated[..., NoDecode]`: pydantic-settings hands the raw text to the field's
validator instead of trying JSON itself (TRUSTED_PROXIES and OPEN311_API_KEYS are not JSON).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, fields
from datetime import datetime, time
from typing import Annotated

from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic_settings import NoDecode

from bot.channels.sender import SendLimits
from grid.webhook_targets import WebhookTarget, parse_targets

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A channel's overrides of its send limits: SendLimits field -> value (None: no limit).
LimitOverrides = dict[str, int | float | None]

WebhookTargets = Annotated[tuple[WebhookTarget, ...], NoDecode]
ApiKeys = Annotated[tuple[SecretStr, ...], NoDecode]
Networks = Annotated[tuple[Network, ...], NoDecode]
RateLimits = Annotated[dict[str, LimitOverrides], NoDecode]
RobotMap = Annotated[dict[str, str], NoDecode]
ClockTime = Annotated[time | None, NoDecode]

_LIMITS = TypeAdapter(SendLimits)


def webhook_targets(raw: object) -> object:
    """WEBHOOK_TARGETS: a JSON list of {"name", "url", "secret"}; blank: none."""
    return tuple(parse_targets(raw)) if isinstance(raw, str) else raw


def comma_separated(raw: object) -> object:
    """A comma-separated list (OPEN311_API_KEYS); blanks between commas are skipped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip()) if isinstance(raw, str) else raw


def networks(raw: object) -> object:
    """TRUSTED_PROXIES: comma-separated addresses or CIDR blocks; a typo stops the app rather than trusting nobody
    (or everybody) by accident."""
    if not isinstance(raw, str):
        return raw
    found = []
    for item in (part.strip() for part in raw.split(",")):
        if item:
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"TRUSTED_PROXIES: {item!r} is not an IP address or CIDR block") from None
    return tuple(found)


def rate_limits(raw: object) -> object:
    """NOTICE_RATE_LIMITS: {"channel": {SendLimits field: value}}; every name and value checked against SendLimits
    now, although which channels run is known only later (an override of a channel not running is ignored)."""
    if not isinstance(raw, str):
        return raw
    if not raw.strip():
        return {}
    try:
        overrides = json.loads(raw)
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ValueError("expected an object of objects")
    except ValueError as exc:
        raise ValueError(
            f'NOTICE_RATE_LIMITS must be JSON like {{"webchat": {{"per_account": 20, "window_seconds": 60}}}}: {exc}'
        ) from None
    known = {f.name for f in fields(SendLimits)}
    for channel, values in overrides.items():
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"NOTICE_RATE_LIMITS for {channel}: unknown rate-limit setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            _LIMITS.validate_python(asdict(SendLimits()) | values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"NOTICE_RATE_LIMITS for {channel}: {problems}") from None
    return overrides


def robots(raw: object) -> object:
    """WECOM_ROBOTS: {"group id": "robot key" or "https://…/webhook/send?key=…"}; blank: none."""
    if not isinstance(raw, str):
        return raw
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f'WECOM_ROBOTS must be JSON like {{"group-id": "robot-key"}}: {exc}') from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise ValueError('WECOM_ROBOTS must map group ids to robot keys or webhook URLs: {"group-id": "robot-key"}')
    return data


def clock_time(raw: object) -> object:
    """MORNING_DIGEST_AT: HH:MM local time; empty: never."""
    if not isinstance(raw, str):
        return raw
    value = raw.strip()
    if not value:
        return None
    try:
        return datetime.strptime(value, "%H:%M").time()
    except ValueError:
        raise ValueError(f"MORNING_DIGEST_AT must be HH:MM (local time) or empty, not {value!r}") from None

