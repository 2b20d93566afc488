"""The WEBHOOK_TARGETS setting's value: the external systems that receive every ticket event.

Its own module, depending on pydantic only, so bot/settings.py can parse the setting when settings load (a bad
value stops start-up) without importing the delivery engine (grid/delivery.py), which sends to these targets.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, TypeAdapter, ValidationError


class TargetsError(ValueError):
    """The webhook targets setting cannot be used; the message says what is wrong and what is expected."""


class WebhookTarget(BaseModel):
    """One external system that receives every ticket event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Stored in OutboxDelivery.target (String(64)): renaming a target makes it a new one that gets everything again.
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    url: AnyHttpUrl
    secret: SecretStr = Field(min_length=1)


_TARGETS = TypeAdapter(list[WebhookTarget])
_EXPECTED = 'a JSON list like [{"name": "city", "url": "https://…", "secret": "…"}]'


def parse_targets(raw: str | None) -> list[WebhookTarget]:
    """Read the WEBHOOK_TARGETS setting; blank means no targets. Raises TargetsError saying what is wrong."""
    if raw is None or not raw.strip():
        return []
    try:
        targets = _TARGETS.validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}" for error in exc.errors()
        )
        raise TargetsError(f"WEBHOOK_TARGETS must be {_EXPECTED}; {problems}") from None
    names = [target.name for target in targets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TargetsError(f"WEBHOOK_TARGETS names must be unique; repeated: {', '.join(duplicates)}")
    return targets
