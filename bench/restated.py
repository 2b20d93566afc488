"""Issue #26's speed targets, restated, in one run: every figure beside its floor or baseline measured in that run.

    make bench-restated          (or: .venv/bin/python -m bench.restated [--rounds 2] [--encode 3000] [--entries 100000])

1. Latency. The floor is Rasa's own turn with a do-nothing action server (bench/turn_floor.py's set-up: the same
   Rasa servers, model, Redis stores, single-threaded, one per core). The same questions then go end to end (web
   chat API → router → Rasa → actions → database) on SQLite and on PostgreSQL; p50 e2e / p50 floor at concurrency
   1, 8 and 32. Target ≤ 1.3×. Throughput: messages/s at concurrency 32 (target ≥ 50 msg/s).
2. Knowledge import: the app's encoder (what `kb import` and the index build call, knowledge/vector_cache.py) times
   `--encode` distinct phrasings; the 100k figure is that rate extrapolated, for one phrasing per entry (the
   issue's arithmetic: ~250 phrasings/s → 6.7 min) and for the sample knowledge base's phrasings per entry.
   Target ≤ 3 min. Search p99 at `--entries` entries (bench/kb_search.py's synthetic index,
   encoding excluded) beside exact brute force. Target ≤ 20 ms.
3. Memory: resident MB of the app and its Rasa server(s) once started (VmRSS, before any load), and what holds it:
   the steps of a bare start-up measured in fresh interpreters (TensorFlow, Rasa, the e5 encoder's ONNX session).
   Target ≤ 1.5 GB together.

The machine is shared: compare a figure with its floor from the same run, not with another run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from bench.e2e import Run, console, drive, e2e_sender, measured, memory_kb, stack
from bench.e2e_latency import percentile
from bench.turn_floor import QUESTION_TURNS, rasa_on_null_actions, turn_sender
from bot import rasa_process
from bot.settings import PROJECT_ROOT

TARGET_RATIO = 1.3
TARGET_RATE = 50.0
TARGET_IMPORT_SECONDS = 180.0
TARGET_SEARCH_P99_MS = 20.0
TARGET_MEMORY_MB = 1536.0


def _floor(redis_url: str, servers: int, model: Path, levels: list[int], rounds: int) -> tuple[dict[int, Run], float]:
    """Rasa's turn with null actions at each concurrency, and the Rasa servers' resident MB after start-up."""
    with rasa_on_null_actions(redis_url, servers, model) as (urls, pids, _actions):
        rasa_mb = sum(memory_kb(pid, "VmRSS") for name, pid in pids.items() if name != "actions") / 1024
        asyncio.run(drive(turn_sender(urls, "warm"), 2, 1, texts=QUESTION_TURNS))
        runs = {c: measured(pids, drive(turn_sender(urls, f"c{c}"), c, rounds, texts=QUESTION_TURNS)) for c in levels}
    for concurrency, run in runs.items():
        console.print(f"floor, concurrency {concurrency}: p50 {run.p(0.5):.0f} ms, {run.rate:.1f} msg/s")
    return runs, rasa_mb


def _e2e(kind: str, redis_url: str, servers: int, model: Path, levels: list[int], rounds: int):  # type: ignore[no-untyped-def]
    """End-to-end runs on `kind`, and {process: resident MB} once started."""
    with stack(kind, redis_url, model, servers, single_thread=True) as app:
        memory = {name: memory_kb(pid, "VmRSS") / 1024 for name, pid in app.pids.items()}
        asyncio.run(drive(e2e_sender(app.app_url, "warm"), 2, 1, texts=QUESTION_TURNS))
        runs = {}
        for concurrency in levels:
            held = app.deferred()
            run = measured(app.pids, drive(e2e_sender(app.app_url, f"{kind}{concurrency}"), concurrency, rounds,
                                           texts=QUESTION_TURNS))  # fmt: skip
            run.deferred = app.deferred() - held
            console.print(f"{kind}, concurrency {concurrency}: p50 {run.p(0.5):.0f} ms, {run.rate:.1f} msg/s")
            runs[concurrency] = run
    return runs, memory


def _mark(met: bool) -> str:
    return "[green]met[/green]" if met else "[red]not met[/red]"


def latency_table(floor: dict[int, Run], e2e: dict[str, dict[int, Run]]) -> Table:
    table = Table(title=f"end-to-end p50 beside the floor (Rasa's turn, null actions), target ≤ {TARGET_RATIO}×")
    for column in ("database", "concurrency", "messages", "errors/held", "floor p50 ms", "e2e p50 ms", "ratio",
                   "e2e p99 ms", "floor msg/s", "e2e msg/s", "target"):  # fmt: skip
        table.add_column(column, justify="right")
    for kind, runs in e2e.items():
        for concurrency, run in runs.items():
            base = floor[concurrency]
            ratio = run.p(0.5) / base.p(0.5)
            table.add_row(
                kind, str(concurrency), str(len(run.latencies)), f"{run.errors}/{run.deferred}", f"{base.p(0.5):.0f}",
                f"{run.p(0.5):.0f}", f"{ratio:.2f}×", f"{run.p(0.99):.0f}", f"{base.rate:.1f}", f"{run.rate:.1f}",
                _mark(ratio <= TARGET_RATIO),
            )  # fmt: skip
    return table


def encode_figures(count: int) -> tuple[float, float, int]:
    """(seconds for `count` distinct phrasings, phrasings/s, phrasings per entry in the sample) with the app's encoder."""
    from bench.kb_search import read_sample_entries
    from bot.settings import Settings
    from knowledge.embeddings import load_embedder

    embedder = load_embedder(Settings().kb_embedding_model)
    if embedder is None:
        raise SystemExit("no embedding model: run `make setup`")
    sample = read_sample_entries()
    phrasings = [p for entry in sample for p in entry]
    texts = [f"{phrasings[i % len(phrasings)]} {i}" for i in range(count)]  # distinct, as an import's are
    embedder.encode(texts[:8])  # the session's first run allocates; not an import's cost
    started = time.perf_counter()
    embedder.encode(texts)
    seconds = time.perf_counter() - started
    return seconds, count / seconds, len(phrasings) / len(sample)


def search_figures(entries: int, queries: int) -> list[tuple[str, float, float]]:
    """(index, p50 ms, p99 ms) at `entries` entries: exact brute force (baseline) and the hybrid index as served."""
    from bench.kb_search import PARAPHRASES, read_sample_entries, synthetic_index
    from bot.settings import Settings
    from knowledge.calibration import read_questions
    from knowledge.embeddings import load_embedder
    from knowledge.text_features import terms

    embedder = load_embedder(Settings().kb_embedding_model)
    assert embedder is not None
    base = [([terms(p) for p in phrasings], embedder.encode(list(phrasings))) for phrasings in read_sample_entries()]
    questions = [q.text for q in read_questions(PARAPHRASES)][:queries]
    vectors = embedder.encode(questions)
    rows = []
    for exact in (True, False):
        index = synthetic_index(base, entries, exact)
        allowed = np.ones(len(index.records), dtype=bool)
        timings = []
        for text, vector in zip(questions, vectors, strict=True):
            started = time.perf_counter()
            index.search(text, vector, allowed, top_k=5)
            timings.append((time.perf_counter() - started) * 1000)
        rows.append(("brute force (baseline)" if exact else "hybrid, as served", percentile(timings, 0.5),
                     percentile(timings, 0.99)))  # fmt: skip
    return rows


# What a bare start-up holds, step by step, each in a fresh interpreter of the venv that runs it.
_RSS = "def rss():\n    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024\n"
_RASA_STEPS = (
    _RSS
    + """
steps = [('python', rss())]
import tensorflow
steps.append(('+ import tensorflow', rss()))
import rasa.core.agent, rasa.core.run
steps.append(('+ import rasa (server, agent)', rss()))
from pathlib import Path
from rasa_components.e5_encoder import E5Encoder
E5Encoder(Path(__import__('os').environ['GRIDBOT_E5_ENCODER'])).encode('楼道灯坏了')
steps.append(('+ e5 int8 ONNX session, one sentence', rss()))
print('STEPS', __import__('json').dumps(steps))
"""
)
_APP_STEPS = (
    _RSS
    + """
steps = [('python', rss())]
import bot.app
steps.append(('+ import bot.app (FastAPI, SQLAlchemy, …)', rss()))
from bot.settings import Settings
from knowledge.embeddings import load_embedder
load_embedder(Settings().kb_embedding_model).encode(['楼道灯坏了'])
steps.append(('+ e5 int8 ONNX session, one sentence', rss()))
print('STEPS', __import__('json').dumps(steps))
"""
)


def memory_steps() -> dict[str, list[tuple[str, float]]]:
    rasa_python = rasa_process.RASA_BIN.parent / "python"
    found = {}
    for name, python, code, env in (
        ("rasa", str(rasa_python), _RASA_STEPS, rasa_process.rasa_env()),
        ("app", sys.executable, _APP_STEPS, {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}),
    ):
        done = subprocess.run([python, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
        lines = [line.removeprefix("STEPS ") for line in done.stdout.splitlines() if line.startswith("STEPS ")]
        found[name] = [tuple(step) for step in json.loads(lines[-1])] if lines else [(f"failed: {done.stderr[-300:]}", 0.0)]
    return found


def memory_table(started: dict[str, float], floor_rasa_mb: float, steps: dict[str, list[tuple[str, float]]]) -> Table:
    total = sum(started.values())
    table = Table(title=f"resident memory after start-up (MB), target ≤ {TARGET_MEMORY_MB:.0f} together")
    for column in ("process / step", "MB", "added"):
        table.add_column(column, justify="left" if column == "process / step" else "right")
    for name, mb in started.items():
        table.add_row(name, f"{mb:.0f}", "")
    table.add_row("[bold]app + Rasa[/bold]", f"{total:.0f}", _mark(total <= TARGET_MEMORY_MB))
    table.add_row("Rasa server(s) on null actions (floor)", f"{floor_rasa_mb:.0f}", "")
    for name, rows in steps.items():
        previous = 0.0
        for step, mb in rows:
            table.add_row(f"  bare {name}: {step}", f"{mb:.0f}", f"{mb - previous:+.0f}" if previous else "")
            previous = mb
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="times each resident sends each question")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=("sqlite", "postgresql"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--rasa-servers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--encode", type=int, default=3000, help="phrasings encoded for the import figure")
    parser.add_argument("--entries", type=int, default=100_000, help="knowledge entries for the search figure")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-e2e", action="store_true", help="only the knowledge and memory parts")
    args = parser.parse_args()
    console.print(f"{os.cpu_count()} cores, {args.rasa_servers} Rasa server(s) single-threaded, {args.rounds} round(s)")

    if not args.skip_e2e:
        model = rasa_process.ensure_model(console.print)
        floor, floor_rasa_mb = _floor(args.redis, args.rasa_servers, model, args.levels, args.rounds)
        e2e, started = {}, {}
        for kind in args.databases:
            e2e[kind], memory = _e2e(kind, args.redis, args.rasa_servers, model, args.levels, args.rounds)
            started = started or memory
        console.print(latency_table(floor, e2e))
        top = max(args.levels)
        for kind, runs in e2e.items():
            rate = runs[top].rate
            console.print(f"throughput at concurrency {top}, {kind}: {rate:.1f} msg/s beside the floor's "
                          f"{floor[top].rate:.1f} (target ≥ {TARGET_RATE:.0f}): {_mark(rate >= TARGET_RATE)}")  # fmt: skip
        console.print(memory_table(started, floor_rasa_mb, memory_steps()))

    seconds, rate, per_entry = encode_figures(args.encode)
    phrasings_100k, entries_100k = 100_000 / rate, 100_000 * per_entry / rate
    console.print(
        f"knowledge import: {args.encode} phrasings encoded in {seconds:.1f} s, {rate:.0f} phrasings/s (baseline: ~250/s "
        f"one at a time, #26). 100k phrasings (one per entry, #26's reading) → {phrasings_100k / 60:.1f} min "
        f"(target ≤ {TARGET_IMPORT_SECONDS / 60:.0f} min): {_mark(phrasings_100k <= TARGET_IMPORT_SECONDS)}; 100k entries "
        f"with the sample's {per_entry:.1f} phrasings each → {entries_100k / 60:.1f} min"
    )
    table = Table(title=f"knowledge search at {args.entries:,} entries, encoding excluded (ms)")
    for column in ("index", "p50", "p99", "target"):
        table.add_column(column, justify="right")
    for name, p50, p99 in search_figures(args.entries, args.queries):
        mark = _mark(p99 <= TARGET_SEARCH_P99_MS) if "served" in name else "baseline"
        table.add_row(name, f"{p50:.2f}", f"{p99:.2f}", mark)
    console.print(table)


if __name__ == "__main__":
    main()
