"""An action server that does nothing: the cheapest answer a Rasa custom-action call can get.

    .venv/bin/python -m bench.null_actions --port 5055

`bench/turn_floor.py` points a Rasa server at it to measure what Rasa's own dialogue machinery costs beside
its parse, without any of this project's action code. It still reads the request as JSON (any action server
must, to know which action is asked) and checks the action token as the app does (bot/api/actions.py; the
bench's Rasa sends the one in the environment, bot/rasa_tokens.py), and counts the calls, so the bench can check
every turn reached it.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os

from aiohttp import web

CALLS = web.AppKey("calls", dict)
TOKEN = web.AppKey("token", str)
TOKEN_HEADER = "X-Gridbot-Action-Token"  # bot.rasa_tokens.ACTION_TOKEN_HEADER (this server imports nothing of the app)


async def run_action(request: web.Request) -> web.Response:
    provided = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(provided.encode(), request.app[TOKEN].encode()):
        return web.json_response({"error": "wrong or missing action token"}, status=401)
    body = json.loads(await request.read())
    calls = request.app[CALLS]
    calls[body.get("next_action", "?")] = calls.get(body.get("next_action", "?"), 0) + 1
    return web.json_response({"events": [], "responses": []})


async def counts(request: web.Request) -> web.Response:
    return web.json_response(request.app[CALLS])


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(token: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)  # a long conversation's tracker is large
    app[CALLS] = {}
    app[TOKEN] = token
    app.router.add_post("/webhook", run_action)
    app.router.add_get("/calls", counts)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    token = os.environ.get("ACTION_ENDPOINT_TOKEN")
    if not token:
        parser.error("ACTION_ENDPOINT_TOKEN is not set: the token Rasa's action calls carry (bot/rasa_tokens.py)")
    web.run_app(make_app(token), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
