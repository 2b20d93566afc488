"""Rasa's action calls share kept-alive connections (rasa_ext/patches/pooled_endpoints.py) and still get every answer.

Runs in the Rasa virtualenv against a real HTTP server on loopback that notes which client connection each
request came on; the server restarts in the middle, as the app does when it is redeployed, and the shared
sessions are closed the way the Rasa server's stop closes them.
"""

from __future__ import annotations

import json
import subprocess

from bot.rasa_process import RASA_BIN, rasa_env
from bot.settings import PROJECT_ROOT
from tests.servers import free_port

SCRIPT = """
import asyncio, json, sys
from aiohttp import web
from rasa.utils.endpoints import EndpointConfig
from rasa_ext.patches import pooled_endpoints

PORT = int(sys.argv[1])
seen = []  # (client port, authorization header, body) per request

async def handle(request):
    body = await request.json()
    seen.append((request.transport.get_extra_info("peername")[1], request.headers.get("Authorization"), body["n"]))
    return web.json_response({"echo": body["n"]})

async def serve():
    app = web.Application()
    app.router.add_post("/webhook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    return runner

async def calls(endpoint, numbers):
    return [(await endpoint.request(json={"n": n}, method="post"))["echo"] for n in numbers]

async def main():
    endpoint = EndpointConfig(f"http://127.0.0.1:{PORT}/webhook", basic_auth={"username": "rasa", "password": "pw"})
    runner = await serve()
    rasa_own = await calls(endpoint, [1, 2, 3])
    pooled_endpoints.install()
    pooled = await calls(endpoint, [4, 5, 6])
    together = await asyncio.gather(*(endpoint.request(json={"n": n}, method="post") for n in (7, 8)))
    await runner.cleanup()  # the server goes away and comes back: its connections are gone
    runner = await serve()
    after_restart = await calls(endpoint, [9])
    await asyncio.sleep(pooled_endpoints.KEEPALIVE_SECONDS + 1)
    after_idle = await calls(endpoint, [10])
    await pooled_endpoints.close_shared(None, None)  # what the server's stop does (a Sanic listener's arguments)
    after_close = await calls(endpoint, [11])  # a server that keeps running after all gets a new session
    await pooled_endpoints.close_shared(None, None)
    await runner.cleanup()
    print(json.dumps({"rasa_own": rasa_own, "pooled": pooled, "together": [t["echo"] for t in together],
                      "after_restart": after_restart, "after_idle": after_idle, "after_close": after_close,
                      "seen": seen}))

asyncio.run(main())
"""


def test_action_calls_reuse_one_connection_and_survive_a_server_restart() -> None:
    done = subprocess.run(
        [str(RASA_BIN.parent / "python"), "-c", SCRIPT, str(free_port())], cwd=PROJECT_ROOT, env=rasa_env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["rasa_own"], report["pooled"], report["together"]) == ([1, 2, 3], [4, 5, 6], [7, 8])
    assert (report["after_restart"], report["after_idle"], report["after_close"]) == ([9], [10], [11])
    assert "Unclosed" not in done.stderr  # closed at the server's stop, not left for the garbage collector to report
    port = {n: client_port for client_port, _, n in report["seen"]}
    assert len({port[1], port[2], port[3]}) == 3  # Rasa's own: a new connection for every call
    assert port[4] == port[5] == port[6]  # pooled: one kept-alive connection, call after call
    assert port[7] != port[8]  # two calls at once: two connections, neither waits for the other
    assert port[9] not in (port[4], port[7], port[8])  # the restarted server's: a new connection
    assert port[10] != port[9]  # idle longer than KEEPALIVE_SECONDS: dropped, not reused
    assert port[11] != port[10]  # after close_shared: a new session and connection
    assert {auth for _, auth, _ in report["seen"]} == {"Basic cmFzYTpwdw=="}  # the endpoint's credentials on every call
