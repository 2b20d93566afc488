"""Rasa's Redis lock store, with a conversation's ticket taken, polled and released in one atomic call each.

Rasa 3.6's `RedisLockStore` keeps a conversation's ticket lock as one JSON value and edits it from Python:
issuing a ticket is a GET and a SET, each look at a busy lock a GET, and the cleanup after the turn a GET and
a SET, another GET and a DEL: 7 synchronous Redis round trips for an uncontended turn, on the event loop of
the Rasa server (0.4 ms of wall time per turn at best against the local Redis here, 0.8 ms with the machine
busy; 0.2–0.3 ms for this store's 2). The read-modify-write is not atomic either: two Rasa servers sharing
the Redis that issue a ticket for the same conversation at the same moment can both read "no tickets", both
write ticket 0 and both run the conversation's turns side by side, each saving its own tracker over the
other's (two processes issuing 40 tickets each at once got ~45 distinct numbers out of 80 here). And a busy
lock is looked at every second (the default `wait_time_in_seconds`), so a resident's second quick message
waits a second or more behind the first.

Here each step is one Lua script, run by Redis on its own clock (`TIME`), so no step can interleave with
another server's and skewed machine clocks do not matter. A conversation's tickets live in three keys
beside (not in) Rasa's JSON key:

- `<key_prefix>:lock:<conversation>#tickets`: a sorted set of the waiting tickets, scored by ticket number,
  so the lowest score is the ticket being served (FIFO); each member is `"<number>:<expiry ms>"`, unique
  even when the numbering restarts, so a late release can only ever remove its own ticket;
- `…#expiry`: the same members scored by expiry, so expired tickets are found without a scan;
- `…#next`: the counter that numbers the tickets (INCR).

Taking a ticket (drop expired tickets, number, add, "am I first?") is one call, each later look is one call
every `poll_seconds` (0.05 s: a look is one cheap atomic call), releasing is one call, and the keys go when
the last ticket does. A ticket expires `lock_lifetime` seconds after it was taken, so a crashed server's
ticket stops blocking the conversation; all three keys expire with the latest ticket, so nothing is left.
A waiter whose own ticket expired gets Rasa's `LockError`.

Select it in endpoints.yml with `lock_store: {type: rasa_ext.stores.ticket_lock_store.AtomicRedisLockStore, …}`
and the usual Redis settings. Every Rasa server sharing the Redis must use this same class (and key_prefix):
a server with Rasa's own `type: redis` reads and writes the JSON key and would neither see nor respect
these tickets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import redis
from rasa.core.lock import Ticket, TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

TICKETS_SUFFIX = "#tickets"
EXPIRY_SUFFIX = "#expiry"
NEXT_SUFFIX = "#next"

# Shared by the scripts. KEYS are always: the tickets (by number), the same by expiry, the counter.
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(now)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', now))
  for _, member in ipairs(expired) do
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
  end
end
local function drop_if_empty()
  local left = redis.call('ZCARD', KEYS[1])
  if left == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
  return left
end
"""

# ARGV: lifetime ms. Returns the new ticket's member and how many tickets are ahead of it (0: it is served).
_TAKE = (
    _PRELUDE
    + """
local now = now_ms()
purge(now)
local number = redis.call('INCR', KEYS[3]) - 1
local expires = now + tonumber(ARGV[1])
local member = string.format('%d:%d', number, expires)
redis.call('ZADD', KEYS[1], number, member)
redis.call('ZADD', KEYS[2], expires, member)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
for _, key in ipairs(KEYS) do redis.call('PEXPIREAT', key, last[2]) end
return {member, redis.call('ZRANK', KEYS[1], member)}
"""
)

# ARGV: the member. Returns how many tickets are ahead of it, or -1 when it has expired.
_POLL = (
    _PRELUDE
    + """
purge(now_ms())
local ahead = redis.call('ZRANK', KEYS[1], ARGV[1])
if ahead then return ahead end
drop_if_empty()
return -1
"""
)

# ARGV: the member. Returns {1 if it was still there else 0, tickets left}.
_RELEASE = (
    _PRELUDE
    + """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
purge(now_ms())
return {removed, drop_if_empty()}
"""
)

# KEYS: the expiry set only (the prelude's other helpers are not called). Returns how many have not expired.
_UNEXPIRED = _PRELUDE + "return redis.call('ZCOUNT', KEYS[1], now_ms(), '+inf')\n"

_TICKETS_ONLY_IN_LOCK = (
    "AtomicRedisLockStore takes and releases tickets only inside lock(), one atomic script each; "
    "Rasa 3.6 calls nothing else on a lock store (server.py, agent.py and processor.py use lock())"
)


def _ticket(member: bytes | str) -> Ticket:
    """The Ticket a member `"<number>:<expiry ms>"` stands for (expiry in seconds, on Redis' clock)."""
    text = member.decode() if isinstance(member, bytes) else member
    number, expires_ms = text.split(":")
    return Ticket(int(number), int(expires_ms) / 1000)


class AtomicRedisLockStore(RedisLockStore):
    """Same settings, key prefix and FIFO ticket semantics as `RedisLockStore`; one atomic call per step."""

    # How often a waiting turn looks again: each look is one cheap atomic call, so look often (Rasa: 1 s).
    poll_seconds: float = 0.05

    def __init__(self, endpoint_config: EndpointConfig | None = None, **settings: Any) -> None:
        """Rasa builds a lock store named by its class as `cls(endpoint_config=…)`: `url` is the Redis host and
        the rest (`port`, `db`, `key_prefix`, `password`, …) are `RedisLockStore`'s arguments, passed on the way
        Rasa passes them for `type: redis`. Built directly, it takes `RedisLockStore`'s arguments."""
        if endpoint_config is not None:
            settings = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **settings}
        super().__init__(**settings)
        self._take = self.red.register_script(_TAKE)
        self._poll = self.red.register_script(_POLL)
        self._release = self.red.register_script(_RELEASE)
        self._unexpired = self.red.register_script(_UNEXPIRED)

    def _keys(self, conversation_id: str) -> list[str]:
        base = self.key_prefix + conversation_id
        return [base + TICKETS_SUFFIX, base + EXPIRY_SUFFIX, base + NEXT_SUFFIX]

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncGenerator[TicketLock, None]:
        """Hold the conversation's lock for the body; yields a `TicketLock` holding just this turn's ticket.

        `wait_time_in_seconds` is accepted for Rasa's signature but unused: a waiting turn looks again every
        `poll_seconds`, since a look is one atomic call rather than Rasa's read of the whole lock.
        """
        keys = self._keys(conversation_id)
        lifetime_ms = max(1, round(lock_lifetime * 1000))
        try:
            member, ahead = self._take(keys=keys, args=[lifetime_ms])
        except redis.RedisError as error:  # as Rasa's issue_ticket reports it
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error
        held = True  # our ticket is in the queue (served or waiting)
        acquired = False
        try:
            while ahead != 0:
                if ahead < 0:
                    held = False
                    raise LockError(
                        f"Could not acquire lock for conversation_id '{conversation_id}': its ticket expired after "
                        f"{lock_lifetime} s while waiting."
                    )
                logger.debug("conversation %s: %d turn(s) ahead of this one", conversation_id, ahead)
                await asyncio.sleep(self.poll_seconds)
                ahead = int(self._poll(keys=keys, args=[member]))
            acquired = True
            logger.debug("Acquired lock for conversation '%s'.", conversation_id)
            yield TicketLock(conversation_id, deque([_ticket(member)]))
        finally:
            if held:
                removed, _left = self._release(keys=keys, args=[member])
                if acquired and not removed:
                    logger.warning(
                        "conversation %s: a turn outlived its ticket lock (lock_lifetime %s s); another turn may have "
                        "run alongside it",
                        conversation_id,
                        lock_lifetime,
                    )

    def is_someone_waiting(self, conversation_id: str) -> bool:
        """Whether the conversation has a ticket that has not expired (the one being served counts, as in Rasa)."""
        return int(self._unexpired(keys=[self._keys(conversation_id)[1]])) > 0

    def get_lock(self, conversation_id: str) -> TicketLock | None:
        """A snapshot of the conversation's tickets in serving order (for inspection), or None when it has none."""
        members = self.red.zrange(self._keys(conversation_id)[0], 0, -1)
        return TicketLock(conversation_id, deque(_ticket(member) for member in members)) if members else None

    def delete_lock(self, conversation_id: str) -> None:
        """Drop all of the conversation's tickets: a held turn finishes, and waiting turns get `LockError`."""
        self._log_deletion(conversation_id, bool(self.red.delete(*self._keys(conversation_id))))

    def save_lock(self, lock: TicketLock) -> None:
        raise NotImplementedError(_TICKETS_ONLY_IN_LOCK)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        raise NotImplementedError(_TICKETS_ONLY_IN_LOCK)

    def update_lock(self, conversation_id: str) -> None:
        raise NotImplementedError(_TICKETS_ONLY_IN_LOCK)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        raise NotImplementedError(_TICKETS_ONLY_IN_LOCK)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        raise NotImplementedError(_TICKETS_ONLY_IN_LOCK)
