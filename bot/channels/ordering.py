"""Messages of one conversation handled in the order they arrived, conversations side by side.

A platform that pushes messages over one connection (wechaty's event stream, WeCom's smart-robot socket) hands them
over faster than a turn takes; handled as they come, a resident's "3号楼" could overtake the "楼道灯坏了" it answers.
Each conversation gets a chain of tasks instead: a new message waits for the one before it in its conversation only.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable

log = logging.getLogger(__name__)


class ConversationChains:
    def __init__(self, label: str) -> None:
        """`label`: the channel, as its log lines name it."""
        self._label = label
        self._tails: dict[str, asyncio.Task[None]] = {}

    def chain(self, key: str, work: Awaitable[None]) -> None:
        """Run `work` after everything already queued for the same conversation, concurrently with the others; a
        failure is logged and does not stop the conversation's later messages."""
        before = self._tails.get(key)

        async def run() -> None:
            try:
                if before is not None:
                    # Waits without taking on the earlier task's outcome, but a cancel of this task still stops it
                    # here (awaiting `before` itself would swallow our own CancelledError with the earlier one's).
                    await asyncio.wait([before])
            except asyncio.CancelledError:
                if inspect.iscoroutine(work):
                    work.close()  # never started: closed, not left to warn "never awaited"
                raise
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: handling a message in %s failed", self._label, key)
            finally:
                if self._tails.get(key) is task:
                    del self._tails[key]

        task = asyncio.create_task(run())
        self._tails[key] = task

    def tasks(self) -> list[asyncio.Task[None]]:
        """The last task of each conversation: cancelling them (and awaiting) stops all queued work."""
        return list(self._tails.values())

    def clear(self) -> None:
        self._tails.clear()
