"""The keys of messages this process already sent, so a dispatcher retry after a lost answer is not sent twice."""

from __future__ import annotations

from collections import OrderedDict


class SentKeys:
    """A bounded memory of keys: the oldest are forgotten first (a retry comes within minutes, not 10 000 sends)."""

    def __init__(self, kept: int = 10_000) -> None:
        self._kept = kept
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._kept:
            self._keys.popitem(last=False)

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)
