"""Pictures members send the smart robot: a URL good for five minutes, its content AES-256-CBC encrypted.

Each picture carries its own `aeskey` (base64): the key is its 32 bytes, the IV their first 16, and the padding
PKCS#7 to 32-byte blocks (the SDKs' `decryptFile`). The picture is fetched at once, while the URL still works,
decrypted and kept by the media store, so a ticket's photo outlives WeCom's download window.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.channels.download import download_capped
from bot.media_store import MediaRejected, MediaStore
from bot.messages import Media

log = logging.getLogger(__name__)

_BLOCK = 32


class Undecryptable(ValueError):
    pass


def decrypt(data: bytes, aes_key: str) -> bytes:
    try:
        key = base64.b64decode(aes_key + "=" * (-len(aes_key) % 4), validate=True)
    except binascii.Error:
        raise Undecryptable("the aeskey is not base64") from None
    if len(key) != 32:
        raise Undecryptable(f"the aeskey is {len(key)} bytes, not 32")
    if not data or len(data) % 16:
        raise Undecryptable(f"{len(data)} bytes is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise Undecryptable("bad padding: another key, or not this picture")
    return plain[:-pad]


async def fetch_picture(client: httpx.AsyncClient, store: MediaStore, url: str, aes_key: str | None) -> Media | None:
    """The picture kept by the store, or None (logged) when it cannot be had: a picture that cannot be downloaded
    must not cost the message its handling."""
    try:
        data = await download_capped(client, url, store.max_bytes + _BLOCK)  # the padding on top of the picture
        if aes_key:
            data = decrypt(data, aes_key)
        return await asyncio.to_thread(store.save_image, data, url.rsplit("/", 1)[-1].split("?", 1)[0] or None)
    except (MediaRejected, Undecryptable) as exc:
        log.warning("WeCom smart robot: picture not kept: %s", exc)
    except httpx.HTTPError as exc:
        log.warning("WeCom smart robot: picture could not be downloaded: %s: %s", type(exc).__name__, exc)
    return None

