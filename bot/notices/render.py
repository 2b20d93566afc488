"""Notices as residents read them: the pushed message, and the list a resident gets when asking.

Wording lives in bot/texts/zh.yml (`notices.*`). The answer to a question goes back through Rasa, whose
REST channel splits a text at blank lines, so it never contains one; a pushed notice keeps its lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.texts import local_time
from bot.texts import text as t
from grid.notices import Notice, NoticeError

SUMMARY_CHARS = 60
_SPACE = re.compile(r"\s+")


def notice_text(notice: Notice) -> str:
    """The whole message pushed into a group (split later to the channel's limit if it is too long)."""
    lines = [t("notices.message", title=notice.title, body=notice.body)]
    if notice.link:
        lines.append(t("notices.link", link=notice.link))
    if notice.image_url:
        lines.append(t("notices.image", url=notice.image_url))
    if notice.expires_at is not None:
        lines.append(t("notices.expires", expires=local_time(notice.expires_at)))
    return "\n".join(lines)


def summary(body: str, limit: int = SUMMARY_CHARS) -> str:
    flat = _SPACE.sub(" ", body).strip()
    return flat if len(flat) <= limit else flat[:limit].rstrip() + "…"


def current_notices_text(notices: Sequence[Notice]) -> str:
    """The answer to 最近有什么补贴/通知: newest first, a line of title and dates and a short summary each."""
    if not notices:
        return t("notices.current_none")
    lines = [t("notices.current_header", count=len(notices))]
    for index, notice in enumerate(notices, start=1):
        until = t("notices.current_until", expires=local_time(notice.expires_at)) if notice.expires_at else ""
        lines.append(
            t("notices.current_line", index=index, title=notice.title, published=local_time(notice.publish_at), until=until)
        )
        lines.append(summary(notice.body))
        if notice.link:
            lines.append(t("notices.link", link=notice.link))
    return "\n".join(lines)


def error_sentence(err: NoticeError) -> str:
    """The sentence for a refused notice request, for the API and the CLI."""
    params = dict(err.params)
    if "status" in params:
        params["status_name"] = t(f"notice_statuses.{params['status']}")
    return t(f"notice_errors.{err.code}", **params)
