"""Per-group bot behaviour: extra trigger prefixes, how sure NLU must be to speak unasked, quiet hours.

Groups differ: a busy 300-member group wants the bot to speak only when asked; a small one tolerates
more. Stored per group (edited from the CLI now, the console later); a group without a row uses the
app-wide defaults from Settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime

from sqlalchemy import Float, ForeignKey, String, Time
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.settings import Settings
from storage.base import Base
from storage.engine import unit_of_work


class GroupBotSettings(Base):
    __tablename__ = "group_bot_settings"

    group_id: Mapped[str] = mapped_column(ForeignKey("chat_groups.id"), primary_key=True)
    trigger_prefixes: Mapped[str | None] = mapped_column(String(256), default=None)  # separated by "|"
    request_confidence: Mapped[float | None] = mapped_column(Float, default=None)
    quiet_start: Mapped[dtime | None] = mapped_column(Time, default=None)
    quiet_end: Mapped[dtime | None] = mapped_column(Time, default=None)


@dataclass(frozen=True)
class GroupPolicy:
    """What the router applies to one group's unaddressed messages."""

    prefixes: tuple[str, ...]
    request_confidence: float
    quiet_start: dtime | None = None
    quiet_end: dtime | None = None

    def strip_prefix(self, text: str) -> str | None:
        """The text after the trigger prefix that starts it, or None when no prefix of this group does."""
        return next((text[len(p) :].strip() for p in self.prefixes if text.startswith(p)), None)

    def is_quiet(self, local_now: datetime) -> bool:
        """Inside quiet hours the bot speaks only when asked; a window may wrap past midnight (22:00–07:00)."""
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return False
        now = local_now.time()
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= now < self.quiet_end
        return now >= self.quiet_start or now < self.quiet_end


class GroupPolicies:
    """Reads each group's policy from the database, cached briefly so a busy group costs one query per interval."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, ttl_seconds: float = 10.0) -> None:
        self._factory = factory
        self._settings = settings
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, GroupPolicy]] = {}

    def default(self) -> GroupPolicy:
        return GroupPolicy(self._settings.command_prefixes, self._settings.request_confidence)

    def cached(self, group_id: str) -> GroupPolicy | None:
        """The policy if it was read within the interval: no database, so an event loop may ask inline."""
        cached = self._cache.get(group_id)
        return cached[1] if cached and cached[0] > time.monotonic() else None

    def for_group(self, group_id: str) -> GroupPolicy:
        cached = self.cached(group_id)
        if cached is not None:
            return cached
        with unit_of_work(self._factory) as session:
            row = session.get(GroupBotSettings, group_id)
            policy = self._from_row(row)
        self._cache[group_id] = (time.monotonic() + self._ttl, policy)
        return policy

    def _from_row(self, row: GroupBotSettings | None) -> GroupPolicy:
        default = self.default()
        if row is None:
            return default
        extra = tuple(p for p in (row.trigger_prefixes or "").split("|") if p)
        return GroupPolicy(
            prefixes=default.prefixes + extra,
            request_confidence=row.request_confidence if row.request_confidence is not None else default.request_confidence,
            quiet_start=row.quiet_start,
            quiet_end=row.quiet_end,
        )
