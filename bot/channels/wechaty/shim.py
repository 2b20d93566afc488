"""python-wechaty 0.10.7 made importable on Python 3.11; the rest of the adapter imports the library from here.

wechaty 0.10.7 declares `puppet_options: PuppetOptions = PuppetOptions()` in a dataclass; Python 3.11 refuses
a mutable (unhashable) default there with "ValueError: mutable default … is not allowed". No release fixes it
and no pin avoids it, so PuppetOptions is made hashable (by identity) *before* `wechaty` is imported, which is
why the library is imported below the patch and nowhere else. The shared default instance is never used: every
connection gets a fresh `PuppetOptions()` (`fresh_options`). Python 3.13 removes telnetlib, which
wechaty-puppet-service imports: this client then needs replacing, which the adapter's isolation keeps small.
"""

from __future__ import annotations

import os

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from wechaty_puppet.schemas.puppet import PuppetOptions

from bot.settings import PROJECT_ROOT

# Importing `wechaty` creates its cache folder (CACHE_DIR, default ".wechaty" in the working directory): keep it
# under var/ with the rest of the app's runtime files.
os.environ.setdefault("CACHE_DIR", str(PROJECT_ROOT / "var" / "wechaty"))

if PuppetOptions.__hash__ is None:  # eq=True without frozen=True: unhashable, hence "mutable default"
    PuppetOptions.__hash__ = object.__hash__  # type: ignore[assignment,method-assign]

# The library is imported after the patch, on purpose.
from wechaty import Wechaty, WechatyOptions
from wechaty.user import Contact, Message, Room, Tag
from wechaty_puppet import FileBox, MessageType
from wechaty_puppet.file_box.type import FileBoxType


def fresh_options(token: str, endpoint: str) -> PuppetOptions:
    """Options of one connection: a new instance each time, never the dataclass' shared default."""
    return PuppetOptions(token=token, end_point=endpoint)


def memory_scheduler() -> AsyncIOScheduler:
    """Wechaty's plugin scheduler, never started here; passed explicitly because the default one opens an SQLite
    job store (.wechaty/job.db) for every Wechaty instance, that is for every reconnect."""
    return AsyncIOScheduler()


def clear_caches() -> None:
    """python-wechaty caches Contact, Room and Tag objects at class level, bound to the puppet that loaded them:
    a new connection must not reuse objects of the old one."""
    for cls in (Contact, Room, Tag):
        cls._pool.clear()


__all__ = [
    "Contact", "FileBox", "FileBoxType", "Message", "MessageType", "Room", "Wechaty", "WechatyOptions",
    "clear_caches", "fresh_options", "memory_scheduler",
]
