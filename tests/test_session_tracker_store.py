"""The session-keeping tracker store against Rasa's own Redis store, in the Rasa venv, on the real Redis."""

from __future__ import annotations

import json
import subprocess
import uuid

from bot.rasa_process import RASA_BIN, rasa_env, redis_store
from bot.settings import PROJECT_ROOT
from tests.conftest import REDIS_URL

SCRIPT = """
import asyncio, json, sys, time
import redis
from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered
from rasa_ext.stores.session_tracker_store import SessionRedisTrackerStore

host, port, db, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
domain = Domain.from_file("domain.yml")
clock = [1_700_000_000.0]

def at(event):
    clock[0] += 1.0
    event.timestamp = clock[0]
    return event

def session(words):
    events = [at(ActionExecuted("action_session_start")), at(SessionStarted()), at(ActionExecuted("action_listen"))]
    for word in words:
        events += [at(UserUttered(word, {"name": "greet", "confidence": 1.0})), at(BotUttered(word + "!")),
                   at(ActionExecuted("action_listen"))]
    return events

def dump(tracker):  # timestamps aside: a new tracker's first event carries the real clock
    return None if tracker is None else [{k: v for k, v in e.as_dict().items() if k != "timestamp"} for e in tracker.events]

async def scenario(store, sender):
    out = {}
    tracker = await store.get_or_create_tracker(sender)
    tracker.update_with_events(session(["早", "楼道灯坏了"]), domain)
    await store.save(tracker)
    tracker = await store.retrieve(sender)
    tracker.update_with_events([at(UserUttered("3号楼")), at(SlotSet("location", "3号楼"))], domain)
    await store.save(tracker)
    out["one session"] = dump(await store.retrieve(sender))
    tracker = await store.retrieve(sender)  # two idle hours later: a new session on the latest one
    tracker.update_with_events(session(["又坏了"]), domain)
    await store.save(tracker)
    tracker = await store.retrieve(sender)
    tracker.update_with_events([at(BotUttered("好的"))], domain)
    await store.save(tracker)
    out["latest"] = dump(await store.retrieve(sender))
    out["full"] = dump(await store.retrieve_full_tracker(sender))
    tracker = await store.retrieve_full_tracker(sender)  # a whole history saved back (the REST API can do this)
    tracker.update_with_events([at(ActionExecuted("action_listen"))], domain)
    await store.save(tracker)
    out["full after saving full"] = dump(await store.retrieve_full_tracker(sender))
    out["latest after saving full"] = dump(await store.retrieve(sender))
    out["missing"] = dump(await store.retrieve("nobody-" + sender))
    await store.create_tracker("empty-" + sender, append_action_listen=False)  # saved with no events at all
    out["empty"] = dump(await store.retrieve("empty-" + sender))
    return out

async def main():
    red = redis.Redis(host=host, port=port, db=db, decode_responses=True)
    common = dict(domain=domain, host=host, port=port, db=db, record_exp=600)
    rasas = RedisTrackerStore(key_prefix=prefix + "rasa", **common)
    ours = SessionRedisTrackerStore(key_prefix=prefix + "ours", **common)
    start = clock[0]
    theirs_out = await scenario(rasas, "resident")
    clock[0] = start
    ours_out = await scenario(ours, "resident")
    latest_value = json.loads(red.get(ours.key_prefix + "resident"))
    keys = sorted(await ours.keys())

    # A conversation stored by Rasa's own store (all sessions in one value) read by ours: split on first read.
    legacy = RedisTrackerStore(key_prefix=prefix + "legacy", **common)
    tracker = await legacy.get_or_create_tracker("old")
    tracker.update_with_events(session(["一"]) + session(["二"]), domain)
    await legacy.save(tracker)
    switched = SessionRedisTrackerStore(key_prefix=prefix + "legacy", **common)
    legacy_full_before = dump(await legacy.retrieve_full_tracker("old"))
    legacy_latest = dump(await switched.retrieve("old"))
    legacy_value_sessions = sum(
        1 for e in json.loads(red.get(switched.key_prefix + "old"))["events"] if e.get("name") == "action_session_start"
    )
    legacy_full_after = dump(await switched.retrieve_full_tracker("old"))
    ttls = [red.ttl(ours.key_prefix + "resident"), red.ttl(ours.key_prefix + "resident#past")]

    # Round trips of a save that starts a session (a first message: the new tracker's action_listen is history).
    sent = []
    real_send = redis.connection.Connection.send_packed_command
    def counting(self, command, check_health=True):
        sent.append(command)
        return real_send(self, command, check_health)
    redis.connection.Connection.send_packed_command = counting
    round_trips = {}
    for name, store in (("rasa", rasas), ("ours", ours)):
        tracker = await store.get_or_create_tracker("new-" + name)
        tracker.update_with_events(session(["你好"]), domain)
        await store.save(tracker)  # a first save loads the script: not what each turn pays
        tracker.update_with_events(session(["再见"]), domain)
        sent.clear()
        await store.save(tracker)
        round_trips[name] = len(sent)
    redis.connection.Connection.send_packed_command = real_send
    new_full = dump(await ours.retrieve_full_tracker("new-ours"))
    for key in red.scan_iter(prefix + "*"):
        red.delete(key)
    print(json.dumps({
        "rasa": theirs_out, "ours": ours_out, "latest_value_events": len(latest_value["events"]), "keys": keys,
        "legacy_latest": legacy_latest, "legacy_full_before": legacy_full_before, "legacy_full_after": legacy_full_after,
        "legacy_value_sessions": legacy_value_sessions, "ttls": ttls, "round_trips": round_trips,
        "new_full_users": [e.get("text") for e in new_full if e["event"] == "user"],
    }))

asyncio.run(main())
"""


def test_session_store_answers_like_rasas_own_and_keeps_history_apart() -> None:
    store = redis_store(REDIS_URL)  # the settings Rasa's stores get in the endpoints file
    prefix = f"t{uuid.uuid4().hex[:10]}"
    args = [str(store["url"]), str(store["port"]), str(store["db"]), prefix]
    done = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", SCRIPT, *args],
        cwd=PROJECT_ROOT, env=rasa_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    rasa, ours = report["rasa"], report["ours"]

    # Every read gives what Rasa's own store gives for the same conversation.
    assert ours == rasa
    assert [e["event"] for e in ours["latest"]][:2] == ["action", "session_started"]
    assert not any(e.get("text") == "楼道灯坏了" for e in ours["latest"])  # the first session is history now
    assert [e.get("text") for e in ours["full"] if e["event"] == "user"] == ["早", "楼道灯坏了", "3号楼", "又坏了"]
    assert len(ours["full after saving full"]) == len(ours["full"]) + 1  # nothing archived twice
    assert ours["missing"] is None
    assert ours["empty"] == []
    # …while the conversation's value holds the latest session only, its history in the list beside it.
    assert report["latest_value_events"] == len(ours["latest after saving full"])
    assert report["keys"] == [f"{prefix}ours:tracker:empty-resident", f"{prefix}ours:tracker:resident"]
    assert all(0 < ttl <= 600 for ttl in report["ttls"])
    # A value written by Rasa's own store is split on the first read, losing nothing.
    assert [e.get("text") for e in report["legacy_latest"] if e["event"] == "user"] == ["二"]
    assert report["legacy_value_sessions"] == 1
    assert report["legacy_full_after"] == report["legacy_full_before"]
    # A save is one round trip (one script call) where Rasa's own store takes two (read to merge, then write).
    assert report["round_trips"] == {"rasa": 2, "ours": 1}, report["round_trips"]
    assert report["new_full_users"] == ["你好", "再见"]
