"""Rasa's Redis tracker store, with a conversation's earlier sessions kept apart so a turn never re-reads them.

Rasa 3.6 keeps a whole conversation as one JSON value and, because a turn works on the latest session only,
rebuilds the stored tracker on *every* save to merge the sessions back in: JSON decoding, replaying every
event, comparing every new event with every stored one. In a neighbourhood group a resident's conversation
lives for a week (`record_exp`) and starts a new session after two idle hours, so that cost grows with the
history; py-spy put it at ~6 % of the Rasa server's CPU even for short bench conversations.

Here the usual key holds the latest session only, and earlier sessions are appended, once, to a Redis list
beside it (`<key>#past`). Saving writes the latest session (and moves a finished one to the list when a new
session has begun); the latest-session read is what Rasa's own store returns, from a shorter value; the full
history is the list plus the key. A value written by Rasa's own store (all sessions in one key) is split
the first time it is read.

A save is one Redis call (a Lua script): it reads the list's last archived event, appends only the earlier
sessions' events newer than that, and writes the latest session with its TTL, atomically. Done from Python
it was a read and then a MULTI, two round trips on Rasa's event loop, and a save happens on every turn that
starts a session (most of a group's turns: a resident rarely writes twice within two hours).

Select it in endpoints.yml with
`tracker_store: {type: rasa_ext.stores.session_tracker_store.SessionRedisTrackerStore, …}` and the usual
Redis settings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import redis
from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.constants import ACTION_SESSION_START_NAME
from rasa.shared.core.conversation import Dialogue
from rasa.shared.core.events import ActionExecuted, Event, split_events
from rasa.shared.core.trackers import DialogueStateTracker

logger = logging.getLogger(__name__)

PAST_SUFFIX = "#past"
# KEYS: the latest session's key, the history list. ARGV: TTL in seconds (0: none), the latest session's JSON,
# then (timestamp, event JSON) for every event of the earlier sessions the tracker holds, oldest first.
# Events no newer than the list's last one are there already (a tracker may carry sessions moved before).
_SAVE_SCRIPT = """
local ttl = tonumber(ARGV[1])
local last = redis.call('LINDEX', KEYS[2], -1)
local archived_until = nil
if last then archived_until = tonumber(cjson.decode(last)['timestamp']) or 0 end
local fresh = {}
for i = 3, #ARGV, 2 do
  if archived_until == nil or tonumber(ARGV[i]) > archived_until then fresh[#fresh + 1] = ARGV[i + 1] end
end
for first = 1, #fresh, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(fresh, first, math.min(first + 999, #fresh)))
end
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return #fresh
"""


def sessions_of(events: list[Event]) -> list[list[Event]]:
    """Events split where each session starts (what precedes the first start is a session of its own)."""
    return split_events(events, ActionExecuted, {"action_name": ACTION_SESSION_START_NAME}, include_splitting_event=True)


def _dialogue_json(sender_id: str, events: list[Event]) -> str:
    return json.dumps(Dialogue(sender_id, events).as_dict())


class SessionRedisTrackerStore(RedisTrackerStore):
    """Same settings and latest-session answers as `RedisTrackerStore`; earlier sessions in a list beside it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._save_script = self.red.register_script(_SAVE_SCRIPT)

    def _keys(self, sender_id: str) -> tuple[str, str]:
        latest = self.key_prefix + sender_id
        return latest, latest + PAST_SUFFIX

    async def save(self, tracker: DialogueStateTracker, timeout: float | None = None) -> None:
        await self.stream_events(tracker)
        sessions = sessions_of(list(tracker.events)) or [[]]  # a tracker with no events yet is one empty session
        self._write(self.red, tracker.sender_id, sessions, timeout or self.record_exp)

    def _write(self, client: Any, sender_id: str, sessions: list[list[Event]], ttl: float | None) -> None:
        """Earlier sessions' new events onto the list, the latest session into the key: one script call (queued
        when `client` is a pipeline)."""
        args: list[Any] = [int(ttl) if ttl else 0, _dialogue_json(sender_id, sessions[-1])]
        for event in (event for session in sessions[:-1] for event in session):
            args += [repr(float(event.timestamp)), json.dumps(event.as_dict())]
        self._save_script(keys=list(self._keys(sender_id)), args=args, client=client)

    async def _retrieve(self, sender_id: str, fetch_all_sessions: bool) -> DialogueStateTracker | None:
        latest_key, past_key = self._keys(sender_id)
        stored = self.red.get(latest_key)
        if stored is None:
            return None
        if fetch_all_sessions:
            past = [json.loads(item) for item in self.red.lrange(past_key, 0, -1)]
            dialogue = json.loads(stored)
            return self.deserialise_tracker(sender_id, json.dumps({**dialogue, "events": past + dialogue["events"]}))
        tracker = self.deserialise_tracker(sender_id, stored)
        if tracker is None:
            return None
        sessions = sessions_of(list(tracker.events))
        if len(sessions) <= 1:
            return tracker
        self._split_stored(sender_id, stored, sessions)
        return DialogueStateTracker.from_events(
            sender_id, sessions[-1], tracker.slots.values(), sender_source=tracker.sender_source,
            max_event_history=tracker._max_event_history,
        )  # fmt: skip

    def _split_stored(self, sender_id: str, stored: str, sessions: list[list[Event]]) -> None:
        """Move the earlier sessions of a value with several (Rasa's own format) to the list, unless it changed."""
        latest_key, _ = self._keys(sender_id)
        with self.red.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(latest_key)
                if pipe.get(latest_key) != stored:
                    return
                ttl = pipe.ttl(latest_key)
                pipe.multi()
                self._write(pipe, sender_id, sessions, ttl if ttl > 0 else None)
                pipe.execute()
            except redis.WatchError:
                logger.debug("tracker %s changed while its earlier sessions were being moved; next read retries", sender_id)

    async def keys(self) -> Iterable[str]:
        return [key for key in self.red.keys(self.key_prefix + "*") if not key.endswith(PAST_SUFFIX)]

