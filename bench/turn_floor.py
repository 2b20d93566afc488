"""What a Rasa-driven turn costs before any of this project's code runs: Rasa's turn with actions that do nothing.

    .venv/bin/python -m bench.turn_floor                 concurrency 1 and 8, each question sent 6× each way

#9 asks for the web chat path's p50 to be compared with Rasa's `/model/parse` for the same texts. A question
turn is more than a parse even in Rasa alone: the conversation is locked, its tracker read and saved (Redis),
the policies predict twice, and the predicted custom action is an HTTP call to the action server. This bench
runs that turn on the same Rasa set-up as `bench/e2e.py` (trained model, our channel and speed-ups, Redis
tracker and lock stores, single-threaded servers) but with `bench/null_actions.py` as the action server, and
sends the bench's questions (which the resident addresses to the bot, so each one is a full turn) both to
`/model/parse` and to that turn, alternating per run at each concurrency. What the turn costs beyond the
parse is the least any Rasa-driven design pays; the rest of `bench/e2e.py`'s figure is this project's:
web chat API, router, knowledge base, database, transcripts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from rich.table import Table

from bench.e2e import (
    TARGET_OVERHEAD,
    Run,
    Sender,
    console,
    delete_keys,
    drive,
    measured,
    parse_sender,
    start_rasa_servers,
    wait_rasa_servers,
)
from bench.e2e_latency import QUESTIONS
from bot import rasa_process
from bot.app_process import stop, wait_healthy
from bot.rasa_tokens import ACTION_TOKEN_ENV, action_token, rasa_token
from tests.servers import free_port

QUESTION_TURNS = [(question, True) for question in QUESTIONS]


@contextmanager
def null_action_server(log_file: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, ACTION_TOKEN_ENV: action_token()}  # the token write_endpoints gives this bench's Rasa servers
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.null_actions", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_file, timeout=30)
        yield url, process
    finally:
        stop(process)


@contextmanager
def rasa_on_null_actions(redis_url: str, servers: int, model: Path | None) -> Iterator[tuple[list[str], dict[str, int], str]]:
    """Rasa server(s) as bench/e2e.py starts them, their actions answered by the null server."""
    workdir = Path(tempfile.mkdtemp(prefix="gridbot-bench-floor-"))
    key_prefix = f"gridbotfloor{uuid.uuid4().hex[:8]}"
    model = model or rasa_process.ensure_model(console.print)
    with ExitStack() as stack:
        stack.callback(delete_keys, redis_url, [f"{key_prefix}*"])
        actions_url, actions = stack.enter_context(null_action_server(workdir / "null_actions.log"))
        endpoints = rasa_process.write_endpoints(workdir / "endpoints.yml", f"{actions_url}/webhook", redis_url, key_prefix)
        rasas = start_rasa_servers(stack, model, endpoints, workdir, servers, single_thread=True)
        wait_rasa_servers(rasas, workdir)
        pids = {"actions": actions.pid} | {name: process.pid for name, (_, process) in rasas.items()}
        yield [url for url, _ in rasas.values()], pids, actions_url


def turn_sender(rasa_urls: list[str], tag: str) -> Sender:
    """The app's call for an addressed group message (bot/router.py): Rasa parses inside the turn."""
    turns = itertools.cycle(rasa_urls)
    token = {"token": rasa_token()}  # the project's channel asks for Rasa's API token, as the app sends it

    async def send(http: httpx.AsyncClient, worker: int, round_no: int, text: str, mention: bool) -> None:
        payload = {
            "sender": f"webchat:floor-{tag}-{worker}-{round_no}",
            "message": text,
            "metadata": {
                "channel": "webchat",
                "group_id": "demo-grid-1",
                "sender_id": f"floor-{tag}-{worker}-{round_no}",
                "sender_name": "压测",
                "message_id": uuid.uuid4().hex,
            },
        }
        response = await http.post(f"{next(turns)}/webhooks/gridbot/webhook", json=payload, params=token)
        response.raise_for_status()
        if not isinstance(response.json(), list):
            raise httpx.HTTPError(f"not a list of messages: {response.text[:200]}")

    return send


def report(results: list[tuple[int, Run, Run]], action_calls: dict[str, int]) -> Table:
    table = Table(title="Rasa's turn with do-nothing actions vs. its /model/parse, the same questions (ms)")
    for column in ("concurrency", "path", "messages", "errors", "p50", "p99", "msg/s", "CPU ms/msg", "turn/parse p50",
                   f"left for the project under {TARGET_OVERHEAD}× parse"):  # fmt: skip
        table.add_column(column, justify="left" if column == "path" else "right")
    for concurrency, parse, turn in results:
        ratio = turn.p(0.5) / parse.p(0.5)
        left = TARGET_OVERHEAD * parse.p(0.5) - turn.p(0.5)
        for name, run in (("parse", parse), ("turn, null actions", turn)):
            is_turn = run is turn
            table.add_row(
                str(concurrency), name, str(len(run.latencies)), str(run.errors), f"{run.p(0.5):.1f}", f"{run.p(0.99):.1f}",
                f"{run.rate:.1f}", run.cpu_ms_per_message(), f"{ratio:.2f}×" if is_turn else "",
                f"{left:.1f} ms" if is_turn else "",
            )  # fmt: skip
    console.print(f"custom action calls the null server answered: {action_calls}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="times each resident sends each question each way")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8], help="concurrencies to measure")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--model", type=Path, help="a trained Rasa model; default: the current data's (trained if missing)")
    parser.add_argument("--rasa-servers", type=int, default=os.cpu_count() or 1, help="Rasa servers (default: one per core)")
    args = parser.parse_args()

    with rasa_on_null_actions(args.redis, args.rasa_servers, args.model) as (urls, pids, actions_url):
        asyncio.run(drive(turn_sender(urls, "warm"), 2, 1, texts=QUESTION_TURNS))  # warm-up, not measured
        results = []
        for concurrency in args.levels:
            # Alternate the two paths twice so a drift of the machine's speed during the run hits both.
            parse, turn = Run(), Run()
            for half, rounds in enumerate(((args.rounds + 1) // 2, args.rounds // 2)):
                for target, sender in ((parse, parse_sender(urls)), (turn, turn_sender(urls, f"c{concurrency}h{half}"))):
                    if rounds:
                        target.merge(measured(pids, drive(sender, concurrency, rounds, texts=QUESTION_TURNS)))
            console.print(f"concurrency {concurrency}: parse p50 {parse.p(0.5):.1f} ms, turn p50 {turn.p(0.5):.1f} ms")
            results.append((concurrency, parse, turn))
        calls = httpx.get(f"{actions_url}/calls", timeout=5).json()
        console.print(report(results, calls))
        console.print(
            "turn/parse is what Rasa itself adds to a question (lock, tracker read and save, two predictions, one "
            "action call); the last column is what would be left, at that p50, for everything else a turn does: "
            "web chat API, router, knowledge base, database, transcripts (bench/e2e.py measures those end to end)."
        )


if __name__ == "__main__":
    main()
