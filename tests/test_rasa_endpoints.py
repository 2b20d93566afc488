"""The endpoints file `gridbot run` writes gets Rasa's stores into a Redis that requires a password.

A real redis-server with `requirepass` on a free port; Rasa's own loader builds the tracker and lock stores
from the file in the Rasa virtualenv, saves and reads a conversation and takes its lock.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from bot.rasa_process import RASA_BIN, rasa_env, redis_store, write_endpoints
from bot.settings import PROJECT_ROOT
from tests.servers import free_port

PASSWORD = "s3cret:@/pw"  # characters a URL must percent-encode

SCRIPT = """
import asyncio, json, sys
from rasa.core.lock_store import LockStore
from rasa.core.tracker_store import TrackerStore
from rasa.core.utils import read_endpoints_from_path
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

async def main():
    endpoints = read_endpoints_from_path(sys.argv[1])
    domain = Domain.load("domain.yml")
    trackers = TrackerStore.create(endpoints.tracker_store, domain)
    locks = LockStore.create(endpoints.lock_store)
    tracker = DialogueStateTracker.from_events("webchat:g:r1", [UserUttered("楼道灯坏了")])
    async with locks.lock("webchat:g:r1"):
        await trackers.save(tracker)
    read = await trackers.retrieve("webchat:g:r1")
    print(json.dumps({"stores": [type(trackers).__name__, type(locks).__name__], "text": read.latest_message.text}))

asyncio.run(main())
"""


@pytest.fixture
def protected_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of our own that refuses clients without the password; its URL with the password in it."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is needed (the machine's Redis package)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, password=PASSWORD)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()  # it really wants the password
        yield f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/2"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def test_redis_url_settings_for_rasas_stores() -> None:
    assert redis_store("redis://127.0.0.1:6379/15") == {"url": "127.0.0.1", "port": 6379, "db": 15}
    assert redis_store("rediss://bot:p%40ss@cache.internal/3") == {
        "url": "cache.internal", "port": 6379, "db": 3, "username": "bot", "password": "p@ss", "use_ssl": True,
    }  # fmt: skip


def test_rasas_stores_reach_a_redis_that_requires_a_password(protected_redis: str, tmp_path: Path) -> None:
    endpoints = write_endpoints(tmp_path / "endpoints.yml", "http://127.0.0.1:1/webhook", protected_redis, "authtest")
    done = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", SCRIPT, str(endpoints)], cwd=PROJECT_ROOT, env=rasa_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"stores": ["SessionRedisTrackerStore", "AtomicRedisLockStore"], "text": "楼道灯坏了"}
