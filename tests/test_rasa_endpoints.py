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

from bot.demo import load_demo
from bot.embedded import app_server
from bot.rasa_process import RASA_BIN, rasa_env, redis_store, write_endpoints
from bot.rasa_tokens import action_token
from bot.settings import PROJECT_ROOT, Settings
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


CALL_SCRIPT = """
import asyncio, json, sys
from rasa.core.utils import read_endpoints_from_path
from rasa_ext.patches import pooled_endpoints

async def main():
    pooled_endpoints.install()  # as the Rasa server runs it: kept-alive sessions built from the endpoint's settings
    endpoint = read_endpoints_from_path(sys.argv[1]).action
    try:
        answer = await endpoint.request(json=json.loads(sys.argv[2]), method="post", timeout=30)
        print(json.dumps({"status": 200, "names": [r.get("text", "") for r in answer["responses"]]}))
    except Exception as exc:
        print(json.dumps({"status": getattr(exc, "status", None), "error": type(exc).__name__}))
    await pooled_endpoints.close_shared()

asyncio.run(main())
"""


def test_rasas_action_calls_carry_the_token_the_app_checks(tmp_path: Path) -> None:
    """Rasa's own EndpointConfig, loaded from the file write_endpoints writes, calls the real app's /webhook: with the
    run's action token it is answered, with another it is refused; the file is readable by its owner only."""
    database_url = f"sqlite:///{tmp_path / 'gridbot.db'}"
    load_demo(database_url, updated_by="test")
    call = {"next_action": "action_worker_help", "domain": {}, "tracker": {"sender_id": "webchat:private:worker-1",
            "latest_message": {"metadata": {"channel": "webchat", "sender_id": "worker-1"}}}}  # fmt: skip
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port(),
                        kb_embedding_model="none")  # fmt: skip
    results: dict[str, dict[str, object]] = {}
    with app_server(settings) as url:
        for name, token in (("ours", action_token()), ("other", "not-the-token")):
            endpoints = write_endpoints(tmp_path / f"endpoints-{name}.yml", f"{url}/webhook", None, token=token)
            assert endpoints.stat().st_mode & 0o777 == 0o600
            done = subprocess.run(
                [str(RASA_BIN.parent / "python"), "-c", CALL_SCRIPT, str(endpoints), json.dumps(call)], cwd=PROJECT_ROOT,
                env=rasa_env(), capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["ours"]["status"] == 200 and results["ours"]["names"], results
    assert results["other"]["status"] == 403, results
