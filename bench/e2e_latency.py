"""End-to-end latency of the web chat path beside its floor, Rasa's /model/parse alone, measured in one run.

    make bench            (or: .venv/bin/python bench/e2e_latency.py --rounds 5)

Starts its own Rasa server (the repo's trained model) and the app on a temporary SQLite database with
the demo data, then sends the same texts both ways, one at a time. The ratio e2e/parse is the cost of
everything this project adds around NLU: router, dialogue, actions, knowledge base, database, channel.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bot import rasa_process
from bot.demo import load_demo
from bot.embedded import app_server, free_port
from bot.rasa_tokens import rasa_token
from bot.settings import Settings

QUESTIONS = [
    "高龄补贴怎么申请",
    "医保今年交多少钱",
    "居住证怎么办理",
    "低保怎么申请",
    "垃圾几点能扔",
    "孩子打疫苗去哪里",
    "门禁卡丢了怎么办",
    "电动车能不能在楼道充电",
    "新生的宝宝怎么上户口",
    "社保卡丢了怎么补",
]
CHATTER = ["今天天气真好啊", "团购的菜到了", "哈哈哈哈", "晚上一起跳舞啊", "孩子放学了吗"]
console = Console()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="times each text is sent each way")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="gridbot-bench-"))
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    load_demo(database_url, updated_by="bench")

    app_port, rasa_port = free_port(), free_port()
    model = rasa_process.ensure_model(console.print)
    endpoints = rasa_process.write_endpoints(workdir / "endpoints.yml", f"http://127.0.0.1:{app_port}/webhook", None)
    rasa = rasa_process.start_rasa(model, rasa_port, endpoints, workdir / "rasa.log")
    rasa_url = f"http://127.0.0.1:{rasa_port}"
    try:
        console.print("waiting for Rasa to load the model…")
        rasa_process.wait_ready(rasa_url, rasa)
        settings = Settings(database_url=database_url, rasa_url=rasa_url, app_port=app_port)
        with app_server(settings) as app_url, httpx.Client(timeout=60) as http:
            results = run(http, rasa_url, app_url, args.rounds)
    finally:
        rasa.terminate()
        rasa.wait(timeout=30)
    report(results)


def run(http: httpx.Client, rasa_url: str, app_url: str, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"parse floor": [], "question e2e": [], "chatter e2e": []}
    total = rounds * (len(QUESTIONS) + len(CHATTER))
    done = 0
    for round_no in range(rounds):
        for kind, texts, mention in (("question e2e", QUESTIONS, True), ("chatter e2e", CHATTER, False)):
            for i, text in enumerate(texts):
                started = time.perf_counter()
                http.post(f"{rasa_url}/model/parse", json={"text": text}, params={"token": rasa_token()}).raise_for_status()
                results["parse floor"].append(time.perf_counter() - started)
                payload = {
                    "group_id": "demo-grid-1",
                    "sender_id": f"bench-{round_no}-{i}",
                    "sender_name": "压测",
                    "text": text,
                    "mentions_bot": mention,
                }
                started = time.perf_counter()
                http.post(f"{app_url}/api/v1/local/messages", json=payload).raise_for_status()
                results[kind].append(time.perf_counter() - started)
                done += 1
        console.print(f"round {round_no + 1}/{rounds}: {done}/{total} texts sent both ways")
    return results


def report(results: dict[str, list[float]]) -> None:
    floor = statistics.median(results["parse floor"])
    table = Table(title="web chat end to end vs. Rasa /model/parse (ms, concurrency 1)")
    for column in ("path", "n", "p50", "p95", "mean", "p50 / parse p50"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for name, values in results.items():
        ms = [v * 1000 for v in values]
        table.add_row(
            name,
            str(len(ms)),
            f"{statistics.median(ms):.1f}",
            f"{percentile(ms, 0.95):.1f}",
            f"{statistics.fmean(ms):.1f}",
            f"{statistics.median(values) / floor:.2f}×",
        )
    console.print(table)


if __name__ == "__main__":
    main()
