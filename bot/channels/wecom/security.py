"""Checks on every WeCom callback before anything in it is believed: signature, age, replay, then decryption.

WeCom signs `sha1(sorted(token, timestamp, nonce, encrypt))` and encrypts the message with AES-256-CBC under
the app's EncodingAESKey (wechatpy implements the cipher; tests rebuild it independently). A captured
request stays validly signed forever, so a callback is also refused when its timestamp is outside the replay
window or its (timestamp, nonce) pair was already accepted within it. The nonce is remembered only after the
signature checks out, so nobody can burn nonces with forged requests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable

from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.utils import WeChatSigner

from bot.channels.dedup import Deduplicator
from bot.channels.wecom.config import WeComConfig


class CallbackRejected(Exception):
    """The request is not (or no longer) WeCom's: answered 403 with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallbackUnavailable(Exception):
    """A genuine callback this process cannot take now (its database is down): WeCom should send it again."""


class CallbackMalformed(Exception):
    """Signed or not, the body cannot be read (bad XML, bad base64, wrong key, wrong corp id): answered 400."""


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, encrypt)
    return signer.signature


class CallbackSecurity:
    def __init__(self, config: WeComConfig, nonces: Deduplicator, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._nonces = nonces
        self._clock = clock
        self._crypto = PrpCrypto(_aes_key(config.encoding_aes_key))

    def check_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        expected = signature(self._config.token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), msg_signature.encode()):
            raise CallbackRejected("invalid msg_signature")

    def check_fresh(self, timestamp: str) -> None:
        try:
            sent = int(timestamp)
        except ValueError:
            raise CallbackRejected("timestamp is not a number") from None
        if abs(self._clock() - sent) > self._config.replay_window_seconds:
            raise CallbackRejected(f"timestamp outside the {self._config.replay_window_seconds} s replay window")

    async def check_not_replayed(self, timestamp: str, nonce: str) -> None:
        if not await self._nonces.first_time("wecom-nonce", f"{timestamp}:{nonce}"):
            raise CallbackRejected("nonce already used: replayed request")

    async def forget(self, timestamp: str, nonce: str) -> None:
        """Accept this (timestamp, nonce) again: its request was refused for a reason of ours, not as a replay."""
        await self._nonces.forget("wecom-nonce", f"{timestamp}:{nonce}")

    def decrypt(self, encrypt: str) -> str:
        """The plaintext XML; anything wrong with the ciphertext or its corp id is malformed, never a crash."""
        try:
            try:
                return str(self._crypto.decrypt(encrypt, self._config.corp_id))
            except InvalidCorpIdException:
                # A group robot's receive-message callback carries no receive id (it belongs to no app).
                return str(self._crypto.decrypt(encrypt, ""))
        except Exception as exc:  # wechatpy raises whatever the bytes lead to: binascii, struct, unicode, corp id
            raise CallbackMalformed(f"cannot decrypt: {type(exc).__name__}") from None

    async def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str, *, once: bool = True) -> str:
        """All checks in order (signature, age, replay) and the decrypted plaintext."""
        self.check_signature(msg_signature, timestamp, nonce, encrypt)
        self.check_fresh(timestamp)
        plaintext = self.decrypt(encrypt)
        if once:
            await self.check_not_replayed(timestamp, nonce)
        return plaintext


def _aes_key(encoding_aes_key: str) -> bytes:
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise ValueError("WECOM_ENCODING_AES_KEY does not decode to a 32-byte AES key")
    return key
