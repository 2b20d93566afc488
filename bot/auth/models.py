"""Accounts, their browser sessions and their API tokens.

Secrets are never stored: a session or API token is a random string handed out once and kept as its SHA-256
(they carry 256 bits of randomness, so a fast hash is enough; a slow one would only slow every request);
passwords are kept as argon2id hashes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.base import Base, utcnow
from storage.types import UTCDateTime


class AccountRole(StrEnum):
    ADMIN = "admin"  # everything: knowledge, notices, all tickets, acting for others
    WORKER = "worker"  # the tickets of its grid (its community's, for a lead); reads the rest
    VIEWER = "viewer"  # read-only: leaders watching the numbers


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A worker account acts as this grid worker (or community lead); null for admins and viewers.
    worker_id: Mapped[str | None] = mapped_column(ForeignKey("workers.id"), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)


class AccountSession(Base):
    """A browser login: the cookie holds the token, this row its hash; logout or expiry ends it."""

    __tablename__ = "account_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(256), default=None)

    account: Mapped[Account] = relationship()


class ApiToken(Base):
    """A long-lived token for scripts (Authorization: Bearer …); shown once when made, revocable."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), default=None)

    account: Mapped[Account] = relationship()
