"""The atomic ticket lock store against Rasa's own Redis lock store, in the Rasa venv, on the real Redis.

Each test runs a script in the Rasa virtualenv (where the store lives) with the settings Rasa's stores get
from the endpoints file and a key prefix of its own; whatever it leaves in Redis is deleted afterwards.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from bot.rasa_process import RASA_BIN, TICKET_LOCK_STORE, rasa_env, redis_store
from bot.settings import PROJECT_ROOT
from tests.conftest import REDIS_URL

# What every scenario starts with: argv = the Redis settings (as in endpoints.yml, JSON) and the key prefix.
HEADER = """
import asyncio, json, os, sys, time
import redis
from rasa.core.lock_store import LockError, LockStore, RedisLockStore
from rasa.utils.endpoints import EndpointConfig
from rasa_ext.stores.ticket_lock_store import AtomicRedisLockStore

settings, prefix = json.loads(sys.argv[1]), sys.argv[2]
host = settings.pop("url")
red = redis.Redis(host=host, port=settings["port"], db=settings["db"], username=settings.get("username"),
                  password=settings.get("password"), ssl=settings.get("use_ssl", False))

def store(cls=AtomicRedisLockStore, suffix=""):
    return cls(host=host, key_prefix=prefix + suffix, **settings)

def leftovers(pattern="*"):
    return sorted(key.decode() for key in red.scan_iter(prefix + pattern))

def report(**values):
    print(json.dumps(values))
    sys.stdout.flush()
"""


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of the test's own (letters and digits, as Rasa requires); its keys are deleted afterwards."""
    value = f"t{uuid.uuid4().hex[:12]}"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(f"{value}*"):
            client.delete(key)
    finally:
        client.close()


def run(scenario: str, prefix: str, *extra: str) -> Any:
    """Run HEADER + scenario in the Rasa venv; what it reported last (one JSON line)."""
    settings = json.dumps(redis_store(REDIS_URL))
    done = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", HEADER + scenario, settings, prefix, *extra],
        cwd=PROJECT_ROOT, env=rasa_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


ONE_TURN = """
async def main():
    s = store()
    async with s.lock("webchat:g:r1") as held:
        keys = leftovers()
        ttls = [red.pttl(key) for key in keys]
        tickets = [ticket.number for ticket in held.tickets]
        waiting = s.is_someone_waiting("webchat:g:r1")
    after = leftovers()
    try:
        async with s.lock("webchat:g:r1"):
            raise ValueError("the turn failed")
    except ValueError:
        pass
    report(keys=keys, ttls=ttls, tickets=tickets, waiting=waiting, after=after, after_failure=leftovers(),
           waiting_after=s.is_someone_waiting("webchat:g:r1"), key_prefix=s.key_prefix)

asyncio.run(main())
"""


def test_one_turn_holds_the_lock_and_leaves_nothing_behind(prefix: str) -> None:
    out = run(ONE_TURN, prefix)
    base = f"{prefix}:lock:webchat:g:r1"
    assert out["key_prefix"] == f"{prefix}:lock:"
    assert out["keys"] == sorted([f"{base}#tickets", f"{base}#expiry", f"{base}#next"])
    assert all(0 < ttl <= 60_000 for ttl in out["ttls"])  # every key expires with the ticket (Rasa's 60 s)
    assert out["tickets"] == [0]
    assert out["waiting"] is True
    assert out["after"] == []
    assert out["after_failure"] == []  # a failing turn releases too
    assert out["waiting_after"] is False


ROUND_TRIPS = """
def counting(s):
    commands = []
    original = s.red.execute_command
    def execute(*args, **options):
        commands.append(args[0])
        return original(*args, **options)
    s.red.execute_command = execute
    return commands

async def turn(s, conversation):
    async with s.lock(conversation):
        pass

async def main():
    out = {}
    for name, cls in (("ours", AtomicRedisLockStore), ("rasa", RedisLockStore)):
        s = store(cls, name)
        await turn(s, "warm-up")  # connects, and loads the scripts into Redis once (a later NOSCRIPT reloads them)
        commands = counting(s)
        await turn(s, "resident")
        out[name] = commands
    report(**out, after=leftovers())

asyncio.run(main())
"""


def test_a_turn_is_one_call_to_take_and_one_to_release(prefix: str) -> None:
    out = run(ROUND_TRIPS, prefix)
    assert out["ours"] == ["EVALSHA", "EVALSHA"]
    assert len(out["rasa"]) > 2, out["rasa"]  # Rasa's own: GET+SET, GET, GET+SET, GET, DEL
    assert out["after"] == []


COROUTINES = """
async def main():
    s = store()
    served, inside, most = [], [0], [0]
    async def turn(i):
        async with s.lock("resident") as held:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            served.append([i, held.tickets[0].number])
            await asyncio.sleep(0.01)
            inside[0] -= 1
    await asyncio.gather(*(turn(i) for i in range(8)))  # each takes its ticket in this order
    report(served=served, most=most[0], after=leftovers())

asyncio.run(main())
"""


def test_turns_of_one_server_take_turns_in_the_order_they_came(prefix: str) -> None:
    out = run(COROUTINES, prefix)
    assert out["served"] == [[i, i] for i in range(8)]
    assert out["most"] == 1
    assert out["after"] == []


# A Rasa server of its own: once both are ready, issue `n` tickets (through lock(), or Rasa's issue_ticket).
SERVER = """
n, kind = int(sys.argv[3]), sys.argv[4]
s = store() if kind == "ours" else store(RedisLockStore, "rasa")

async def turn():
    async with s.lock("resident", lock_lifetime=60) as held:
        order = red.incr(prefix + ":order")  # the order turns are served in, across servers
        inside = red.incr(prefix + ":inside")  # more than 1: two servers in the conversation at once
        await asyncio.sleep(0.002)
        red.decr(prefix + ":inside")
        return [held.tickets[0].number, order, inside]

async def main():
    red.incr(prefix + ":ready")
    while int(red.get(prefix + ":ready")) < 2:
        pass  # both servers start issuing at the same moment
    if kind == "ours":
        report(turns=await asyncio.gather(*(turn() for _ in range(n))))
    else:
        report(tickets=[s.issue_ticket("resident", 60) for _ in range(n)])

asyncio.run(main())
"""

TWO_SERVERS = """
import subprocess
n, kind = int(sys.argv[3]), sys.argv[4]
gate = store()
queue = gate._keys("resident")[0]

def server():
    return subprocess.Popen([sys.executable, "-c", sys.argv[5], sys.argv[1], prefix, str(n), kind],
                            stdout=subprocess.PIPE, text=True)

async def main():
    if kind == "rasa":
        servers = [server(), server()]
        report(servers=[json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in servers])
        return
    async with gate.lock("resident") as held:  # ticket 0: every server's tickets queue behind it
        servers = [server(), server()]
        deadline = time.monotonic() + 60
        while red.zcard(queue) < 2 * n + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    outputs = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in servers]
    report(servers=outputs, after=leftovers(":lock:*"))

asyncio.run(main())
"""


def test_two_servers_issue_distinct_tickets_at_once_and_take_turns_in_order(prefix: str) -> None:
    n = 40
    out = run(TWO_SERVERS, prefix, str(n), "ours", HEADER + SERVER)
    a, b = ([turn[0] for turn in server["turns"]] for server in out["servers"])
    # The two processes issued side by side (their numbers interleave), yet no number was issued twice.
    assert min(a) < max(b) and min(b) < max(a), (a, b)
    assert sorted(a + b) == list(range(1, 2 * n + 1))
    turns = sorted(out["servers"][0]["turns"] + out["servers"][1]["turns"], key=lambda turn: turn[1])
    assert [turn[0] for turn in turns] == list(range(1, 2 * n + 1))  # served in the order issued, across servers
    assert max(turn[2] for turn in turns) == 1  # never two servers in the conversation at once
    assert out["after"] == []


def test_rasas_own_store_issues_the_same_ticket_twice_under_the_same_race(prefix: str) -> None:
    """The contrast: Rasa's GET-then-SET loses tickets when two servers issue at once (so both may be served)."""
    n = 40
    out = run(TWO_SERVERS, prefix, str(n), "rasa", HEADER + SERVER)
    issued = out["servers"][0]["tickets"] + out["servers"][1]["tickets"]
    assert len(set(issued)) < len(issued), issued


EXPIRY = """
async def main():
    crashed, fresh = store(), store()
    taken = crashed.lock("resident", lock_lifetime=0.3)
    await taken.__aenter__()  # a server takes the lock and dies mid-turn: its ticket is never released
    start = time.monotonic()
    async with fresh.lock("resident", lock_lifetime=5):
        waited_behind_crash = time.monotonic() - start
    after_crash = leftovers()

    holder, waiter = store(), store()
    async with holder.lock("neighbour", lock_lifetime=5):
        start = time.monotonic()
        try:
            async with waiter.lock("neighbour", lock_lifetime=0.2):
                outcome = "acquired"
        except LockError:
            outcome = "LockError"
        gave_up_after = time.monotonic() - start
        holder_still_holds = [t.number for t in holder.get_lock("neighbour").tickets]
    report(waited_behind_crash=waited_behind_crash, after_crash=after_crash, outcome=outcome,
           gave_up_after=gave_up_after, holder_still_holds=holder_still_holds, after=leftovers())
    os._exit(0)  # the crashed server never comes back to release

asyncio.run(main())
"""


def test_an_expired_ticket_stops_blocking_and_an_expired_waiter_gets_lock_error(prefix: str) -> None:
    out = run(EXPIRY, prefix)
    assert 0.25 <= out["waited_behind_crash"] < 1.0, out  # the crashed turn's 0.3 s, not forever
    assert out["after_crash"] == []
    assert out["outcome"] == "LockError"
    assert 0.15 <= out["gave_up_after"] < 1.0, out
    assert out["holder_still_holds"] == [0]
    assert out["after"] == []


LOADER = """
from rasa.core.utils import _lock_store_is_multi_worker_compatible

async def main():
    s = LockStore.create(EndpointConfig.from_dict({"type": sys.argv[3], "url": host, **settings, "key_prefix": prefix}))
    async with s.lock("webchat:g:r1") as held:
        keys = leftovers()
        tickets = [t.number for t in held.tickets]
    report(cls=f"{type(s).__module__}.{type(s).__qualname__}", key_prefix=s.key_prefix, keys=keys, tickets=tickets,
           after=leftovers(), multi_worker=_lock_store_is_multi_worker_compatible(s))

asyncio.run(main())
"""


def test_rasas_loader_builds_it_from_endpoint_settings(prefix: str) -> None:
    out = run(LOADER, prefix, TICKET_LOCK_STORE)
    assert out["cls"] == TICKET_LOCK_STORE
    assert out["key_prefix"] == f"{prefix}:lock:"
    assert out["keys"] and all(key.startswith(f"{prefix}:lock:webchat:g:r1#") for key in out["keys"])
    assert out["tickets"] == [0]
    assert out["after"] == []
    assert out["multi_worker"] is True


QUICK_SECOND_TURN = """
async def main():
    out = {}
    for name, cls in (("ours", AtomicRedisLockStore), ("rasa", RedisLockStore)):
        s = store(cls, name)
        released = {}
        async def first():
            async with s.lock("resident"):
                await asyncio.sleep(0.1)
            released["at"] = time.monotonic()
        async def second():
            await asyncio.sleep(0.01)  # the resident's next message, right behind the first
            async with s.lock("resident"):
                return time.monotonic()
        _, entered = await asyncio.gather(first(), second())
        out[name] = entered - released["at"]
    report(**out, after=leftovers())

asyncio.run(main())
"""


def test_a_quick_second_turn_waits_a_poll_not_a_second(prefix: str) -> None:
    out = run(QUICK_SECOND_TURN, prefix)
    assert out["ours"] < 0.3, out
    assert out["rasa"] > 0.5, out  # Rasa's own looks again after 1 s
    assert out["after"] == []
