"""Pictures residents send in chats, kept by the bot: platforms' own copies expire, a ticket's photo must not.

A channel adapter hands over the bytes it downloaded; the store checks that they are a picture (by their first
bytes, whatever the platform or the file name claims) within the size limit, and writes them under a name
made from their SHA-256, so the same picture delivered twice is stored once and no name a platform supplied
ever reaches the file system. The app serves the folder at /media/<name> (bot/api/media.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bot.messages import Media, MediaKind

# First bytes of the picture formats WeChat and WeCom deliver, and the extension and type each is stored as.
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"GIF87a", "gif", "image/gif"),
    (b"GIF89a", "gif", "image/gif"),
)
MIME_BY_EXTENSION = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
# The only names the store writes and the route serves: 32 hex digits and a known picture extension.
NAME_PATTERN = re.compile(r"^[0-9a-f]{32}\.(jpg|png|gif|webp)$")


class MediaRejected(ValueError):
    """The bytes are not a picture we keep (wrong type, empty, too large)."""


def sniff_image(data: bytes) -> tuple[str, str] | None:
    """(extension, MIME type) of a JPEG, PNG, GIF or WebP picture, from its first bytes; None for anything else."""
    for magic, extension, mime in _SIGNATURES:
        if data.startswith(magic):
            return extension, mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    return None


@dataclass(frozen=True)
class MediaStore:
    folder: Path
    max_bytes: int
    base_url: str = ""

    def save_image(self, data: bytes, original_name: str | None = None) -> Media:
        """Store a picture and return it as the `Media` messages carry; MediaRejected if it is not one we keep."""
        if not data:
            raise MediaRejected("empty file")
        if len(data) > self.max_bytes:
            raise MediaRejected(f"{len(data)} bytes, more than the {self.max_bytes} allowed")
        kind = sniff_image(data)
        if kind is None:
            raise MediaRejected("not a JPEG, PNG, GIF or WebP picture")
        extension, mime = kind
        name = f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        if not target.exists():
            # Written beside and renamed: a reader never sees half a picture, two writers end with the same file.
            handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        return Media(MediaKind.IMAGE, self.url_for(name), name=original_name or name, mime=mime, size=len(data))

    def url_for(self, name: str) -> str:
        return f"{self.base_url.rstrip('/')}/media/{name}"

    def path_for(self, name: str) -> Path | None:
        """The stored file of a /media/<name> address, or None when the name is not one this store could have written."""
        if not NAME_PATTERN.fullmatch(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def path_of_url(self, url: str) -> Path | None:
        """The stored file behind one of our own /media/… URLs (to send a stored picture back out), else None."""
        prefix = self.url_for("")
        return self.path_for(url[len(prefix):]) if url.startswith(prefix) else None
