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
the first time it is read. Select it in endpoints.yml with
`tracker_store: {type: rasa_channels.session_tracker_store.SessionRedisTrackerStore, …}` and the usual
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


def sessions_of(events: list[Event]) -> list[list[Event]]:
    """Events split where each session starts (what precedes the first start is a session of its own)."""
    return split_events(events, ActionExecuted, {"action_name": ACTION_SESSION_START_NAME}, include_splitting_event=True)


def _dialogue_json(sender_id: str, events: list[Event]) -> str:
    return json.dumps(Dialogue(sender_id, events).as_dict())


class SessionRedisTrackerStore(RedisTrackerStore):
    """Same settings and latest-session answers as `RedisTrackerStore`; earlier sessions in a list beside it."""

    def _keys(self, sender_id: str) -> tuple[str, str]:
        latest = self.key_prefix + sender_id
        return latest, latest + PAST_SUFFIX

    async def save(self, tracker: DialogueStateTracker, timeout: float | None = None) -> None:
        await self.stream_events(tracker)
        sessions = sessions_of(list(tracker.events)) or [[]]  # a tracker with no events yet is one empty session
        with self.red.pipeline(transaction=True) as pipe:
            self._queue_write(pipe, tracker.sender_id, sessions, timeout or self.record_exp)
            pipe.execute()

    def _queue_write(self, pipe: Any, sender_id: str, sessions: list[list[Event]], ttl: float | None) -> None:
        """Queue on a MULTI pipeline: earlier sessions' new events onto the list, the latest session into the key."""
        latest_key, past_key = self._keys(sender_id)
        unarchived = self._not_yet_archived(past_key, [event for session in sessions[:-1] for event in session])
        if unarchived:
            pipe.rpush(past_key, *(json.dumps(event.as_dict()) for event in unarchived))
        pipe.set(latest_key, _dialogue_json(sender_id, sessions[-1]), ex=int(ttl) if ttl else None)
        if ttl:
            pipe.expire(past_key, int(ttl))  # the history lives as long as the conversation's latest turn

    def _not_yet_archived(self, past_key: str, earlier: list[Event]) -> list[Event]:
        """Earlier-session events newer than the list's last one: a tracker may hold sessions already moved."""
        if not earlier:
            return []
        last = self.red.lindex(past_key, -1)
        if last is None:
            return earlier
        archived_until = float(json.loads(last).get("timestamp") or 0.0)
        return [event for event in earlier if event.timestamp > archived_until]

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
                self._queue_write(pipe, sender_id, sessions, ttl if ttl > 0 else None)
                pipe.execute()
            except redis.WatchError:
                logger.debug("tracker %s changed while its earlier sessions were being moved; next read retries", sender_id)

    async def keys(self) -> Iterable[str]:
        return [key for key in self.red.keys(self.key_prefix + "*") if not key.endswith(PAST_SUFFIX)]

