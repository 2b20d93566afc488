"""End-to-end throughput and latency under concurrency, beside the floor of this design (Rasa's /model/parse).

    .venv/bin/python -m bench.e2e                       concurrency 1, 8 and 32, every resident sends each text 3×
    .venv/bin/python -m bench.e2e --rounds 1 --soak 600 and then a 10-minute soak at ≥ 50 msg/s

Runs what a deployment runs, as separate processes: one Rasa server (tracker and lock store in Redis) and
one `gridbot serve` app process on a fresh PostgreSQL database with the demo data (`--database sqlite` for
the embedded default). Messages go through the web chat API → router → Rasa → actions → database; the
floor is the same texts sent to Rasa's /model/parse at the same concurrency, so the ratio p50 e2e / p50
parse is what this project adds around NLU. Each simulated resident is a distinct sender (and a new one
every round), so conversations never wait on each other's Rasa lock and no tracker grows without bound.

Peak RSS is each process's VmHWM (psutil is not a dependency; /proc is enough on Linux). The soak samples
VmRSS every 10 s and prints first/last/max and the slope. Figures mean little on a machine shared with other
work: compare them with the floor measured in the same run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench.e2e_latency import CHATTER, QUESTIONS, percentile
from bot import rasa_process
from bot.app_process import app_process, stop
from bot.deferred import DeferredMessage
from bot.demo import load_demo
from bot.rasa_tokens import rasa_token
from bot.settings import PROJECT_ROOT, Settings, namespace_for
from storage.engine import make_engine
from tests.servers import free_port, fresh_postgres

GROUPS = ("demo-grid-1", "demo-grid-2", "demo-grid-3", "demo-grid-4")
TEXTS: list[tuple[str, bool]] = [(q, True) for q in QUESTIONS] + [(c, False) for c in CHATTER]
TARGET_OVERHEAD = 1.5
# A soak's replies may finish this long after its window (the slowest turns in flight) and still count as kept up.
BACKLOG_GRACE_SECONDS = 5.0
TARGET_RATE = 50.0
SAMPLE_SECONDS = 10.0
console = Console(width=max(Console().width, 120))  # the tables stay readable in a log file


@dataclass
class Stack:
    app_url: str
    rasa_urls: list[str]
    pids: dict[str, int]  # "app" / "rasa" (or "rasa1", "rasa2"…) → pid
    database_url: str

    def deferred(self) -> int:
        """Messages the app held because Rasa did not answer in time: answered 200 ("please wait"), yet a failure."""
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return conn.scalar(select(func.count()).select_from(DeferredMessage)) or 0
        finally:
            engine.dispose()


@dataclass
class Run:
    """Latencies (s) of one path at one concurrency, and its wall time."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    deferred: int = 0  # held for Rasa (e2e only), filled in by the caller
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds each process spent during the run

    def cpu_ms_per_message(self) -> str:
        count = max(len(self.latencies), 1)
        return " + ".join(f"{name} {1000 * seconds / count:.0f}" for name, seconds in self.cpu.items())

    def merge(self, other: Run) -> None:
        """Add another run of the same path (e.g. measured in parts alternated with another path)."""
        self.latencies += other.latencies
        self.errors += other.errors
        self.wall += other.wall
        self.deferred += other.deferred
        for name, seconds in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000 if self.latencies else float("nan")


# --- processes -------------------------------------------------------------------------------------------------


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        load_demo(url, updated_by="bench")
        yield url
        return
    with fresh_postgres(os.environ.get("BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")) as url:
        load_demo(url, updated_by="bench")
        yield url


@contextmanager
def stack(
    kind: str,
    redis_url: str,
    model: Path | None = None,
    servers: int = 1,
    single_thread: bool = False,
    root: Path = PROJECT_ROOT,
) -> Iterator[Stack]:
    """Rasa server(s) and the app as separate processes on a fresh database; every Redis key of the run deleted after."""
    workdir = Path(tempfile.mkdtemp(prefix="gridbot-bench-e2e-"))
    key_prefix = f"gridbotbench{uuid.uuid4().hex[:8]}"
    app_port = free_port()
    model = model or rasa_process.ensure_model(console.print)  # trains only when the training data changed
    with database(kind, workdir) as database_url, ExitStack() as stack:  # processes stop before the database goes
        stack.callback(delete_keys, redis_url, [f"{key_prefix}*", f"{namespace_for(Settings(database_url=database_url))}:*"])
        endpoints = rasa_process.write_endpoints(
            workdir / "endpoints.yml", f"http://127.0.0.1:{app_port}/webhook", redis_url, key_prefix
        )
        rasas = start_rasa_servers(stack, model, endpoints, workdir, servers, single_thread, root)
        rasa_urls = [url for url, _ in rasas.values()]
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "RASA_URL": ",".join(rasa_urls)}
        app = stack.enter_context(app_process(app_port, env, workdir / "app.log"))
        wait_rasa_servers(rasas, workdir)
        pids = {"app": app.pid} | {name: rasa.pid for name, (_, rasa) in rasas.items()}
        yield Stack(app.url, rasa_urls, pids, database_url)


RasaServers = dict[str, tuple[str, subprocess.Popen[bytes]]]  # "rasa" (or "rasa1", "rasa2"…) → (URL, process)


def start_rasa_servers(
    stack: ExitStack,
    model: Path,
    endpoints: Path,
    workdir: Path,
    servers: int,
    single_thread: bool,
    root: Path = PROJECT_ROOT,
) -> RasaServers:
    """Rasa servers on free ports, each stopped when the stack closes; they load their model meanwhile."""
    started: RasaServers = {}
    for number in range(1, servers + 1):
        name, port = "rasa" if servers == 1 else f"rasa{number}", free_port()
        log = workdir / f"{name}.log"
        process = rasa_process.start_rasa(model, port, endpoints, log, single_thread=single_thread, root=root)
        stack.callback(stop, process)
        started[name] = (f"http://127.0.0.1:{port}", process)
    return started


def wait_rasa_servers(servers: RasaServers, workdir: Path) -> None:
    console.print(f"waiting for {len(servers)} Rasa server(s) to load the model… (logs in {workdir})")
    for url, process in servers.values():
        rasa_process.wait_ready(url, process, timeout=300)


def delete_keys(redis_url: str, patterns: list[str]) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in patterns:
            for key in client.scan_iter(pattern, count=1000):
                client.unlink(key)
    finally:
        client.close()


def memory_kb(pid: int, field_name: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process and its descendants, in kB (0 once it has gone)."""
    total = 0
    for member in _tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(f"{field_name}:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far (from /proc, like memory_kb)."""
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def measured(pids: dict[str, int], load: Coroutine[Any, Any, Run]) -> Run:
    """Run the load and note each process's CPU time spent meanwhile (what a message costs, not just waits)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = asyncio.run(load)
    result.cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return result


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in task.read_text().split():
                pids += _tree(int(child))
        except OSError:
            continue
    return pids


# --- load --------------------------------------------------------------------------------------------------------


Sender = Callable[[httpx.AsyncClient, int, int, str, bool], Awaitable[None]]


def e2e_sender(app_url: str, tag: str) -> Sender:
    async def send(http: httpx.AsyncClient, worker: int, round_no: int, text: str, mention: bool) -> None:
        payload = {
            "group_id": GROUPS[worker % len(GROUPS)],
            "sender_id": f"bench-{tag}-{worker}-{round_no}",
            "sender_name": "压测",
            "text": text,
            "mentions_bot": mention,
        }
        (await http.post(f"{app_url}/api/v1/local/messages", json=payload)).raise_for_status()

    return send


def parse_sender(rasa_urls: list[str]) -> Sender:
    """The floor goes to the same servers as the app's turns, taking turns among them as the app does."""
    turns = itertools.cycle(rasa_urls)
    token = {"token": rasa_token()}  # Rasa's API token, as the app's client sends it (bot/rasa_client.py)

    async def send(http: httpx.AsyncClient, worker: int, round_no: int, text: str, mention: bool) -> None:
        (await http.post(f"{next(turns)}/model/parse", json={"text": text}, params=token)).raise_for_status()

    return send


async def drive(send: Sender, concurrency: int, rounds: int, *, rate: float | None = None, seconds: float = 0.0,
                on_tick: Callable[[Run], None] | None = None, texts: list[tuple[str, bool]] = TEXTS) -> Run:  # fmt: skip
    """`concurrency` residents each send every text `rounds` times (a new resident each round); or, with `seconds`,
    keep sending for that long, paced at `rate` messages/s overall (as fast as it goes when the machine is slower)."""
    run = Run()
    started = time.perf_counter()
    counter = itertools.count()

    async def resident(worker: int, http: httpx.AsyncClient) -> None:
        for round_no in itertools.count():
            if not seconds and round_no >= rounds:
                return
            for text, mention in texts[worker % len(texts) :] + texts[: worker % len(texts)]:
                if seconds:
                    # Open loop: the next slot of the pace; a machine slower than the pace sends as fast as it can.
                    due = started + next(counter) / rate if rate else time.perf_counter()
                    if due >= started + seconds or time.perf_counter() >= started + seconds:
                        return
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent = time.perf_counter()
                try:
                    await send(http, worker, round_no, text, mention)
                except httpx.HTTPError:
                    run.errors += 1
                    continue
                run.latencies.append(time.perf_counter() - sent)

    async def ticker() -> None:
        while on_tick is not None:
            await asyncio.sleep(SAMPLE_SECONDS)
            run.wall = time.perf_counter() - started
            on_tick(run)

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)  # residents bound what is in flight
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(resident(w, http) for w in range(concurrency)))
        tick.cancel()
    run.wall = time.perf_counter() - started
    return run


# --- reports -----------------------------------------------------------------------------------------------------


def levels_table(results: list[tuple[int, Run, Run]]) -> Table:
    table = Table(title="web chat end to end vs. Rasa /model/parse at the same concurrency (ms)")
    columns = (
        "concurrency", "path", "messages", "errors", "held", "p50", "p99", "msg/s", "CPU ms/msg", "e2e/parse p50 (≤ 1.5×)",
        "added/parse p50 (≤ 1.5×)",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "path" else "right")
    for concurrency, parse, e2e in results:
        ratio = e2e.p(0.5) / parse.p(0.5)
        verdict, added = _verdict(ratio <= TARGET_OVERHEAD), _verdict(ratio - 1 <= TARGET_OVERHEAD)
        for name, run in (("parse floor", parse), ("e2e", e2e)):
            table.add_row(
                str(concurrency), name, str(len(run.latencies)), str(run.errors), str(run.deferred) if name == "e2e" else "",
                f"{run.p(0.5):.0f}", f"{run.p(0.99):.0f}",
                f"{run.rate:.1f}", run.cpu_ms_per_message(), f"{ratio:.2f}× {verdict}" if name == "e2e" else "",
                f"{ratio - 1:.2f}× {added}" if name == "e2e" else "",
            )  # fmt: skip
    return table


def _verdict(met: bool) -> str:
    return "[green]✓[/green]" if met else "[red]✗[/red]"


def cpu_ceiling(results: list[tuple[int, Run, Run]]) -> str:
    """The most messages/s this machine's cores could give at the CPU cost measured: the bound before any waiting."""
    cores = os.cpu_count() or 1
    _, parse, e2e = results[-1]
    per = {name: 1000 * sum(run.cpu.values()) / max(len(run.latencies), 1) for name, run in (("parse", parse), ("e2e", e2e))}
    return (
        f"CPU per message (all processes, highest concurrency): e2e {per['e2e']:.0f} ms, parse alone {per['parse']:.0f} ms"
        f" → at most {cores * 1000 / per['e2e']:.0f} msg/s end to end and {cores * 1000 / per['parse']:.0f} parses/s"
        f" on {cores} cores with every core busy"
    )


def rss_table(pids: dict[str, int]) -> Table:
    table = Table(title="peak RSS (VmHWM, with child processes)")
    table.add_column("process")
    table.add_column("pid", justify="right")
    table.add_column("peak MB", justify="right")
    for name, pid in pids.items():
        table.add_row(name, str(pid), f"{memory_kb(pid, 'VmHWM') / 1024:.0f}")
    return table


def soak(app: Stack, seconds: float, rate: float, concurrency: int) -> None:
    samples: list[tuple[float, dict[str, float]]] = []

    def sample(run: Run) -> None:
        rss = {name: memory_kb(pid, "VmRSS") / 1024 for name, pid in app.pids.items()}
        samples.append((run.wall, rss))
        shown = ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items())
        console.print(f"  {run.wall:5.0f} s: {len(run.latencies)} messages ({run.rate:.1f}/s), {run.errors} errors; RSS {shown}")

    console.print(f"[bold]soak[/bold]: {seconds:.0f} s at up to {rate:.0f} msg/s, {concurrency} residents at a time")
    held = app.deferred()
    run = asyncio.run(drive(e2e_sender(app.app_url, f"soak{uuid.uuid4().hex[:4]}"), concurrency, 0,
                            rate=rate, seconds=seconds, on_tick=sample))  # fmt: skip
    sample(run)
    run.deferred = app.deferred() - held
    # Sustained = every slot of the pace sent inside the window and answered with no backlog left at its end.
    # (Messages over the whole wall time can never reach a pace equal to the target: the last replies land after.)
    sustained = len(run.latencies) / seconds
    backlog = run.wall - seconds
    ok = run.errors == 0 and run.deferred == 0 and sustained >= TARGET_RATE and backlog <= BACKLOG_GRACE_SECONDS
    console.print(
        f"soak: {len(run.latencies)} messages in the {seconds:.0f} s window = {sustained:.1f} msg/s, the last reply "
        f"{backlog:.1f} s after it ({'[green]✓' if ok else '[red]✗'} target ≥ {TARGET_RATE:.0f} msg/s sustained with no "
        f"errors and no backlog[/]), {run.errors} errors, {run.deferred} held for Rasa, p50 {run.p(0.5):.0f} ms, "
        f"p99 {run.p(0.99):.0f} ms"
    )
    table = Table(title="RSS over the soak (MB; slope by least squares, second half = after warm-up)")
    for column in ("process", "first", "last", "max", "slope MB/min", "slope 2nd half MB/min", "flat?"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for name in app.pids:
        times = [t for t, _ in samples]
        values = [rss[name] for _, rss in samples]
        half = len(samples) // 2
        slope = _slope(times, values)
        late = _slope(times[half:], values[half:])
        # Flat: what the late slope would add over a 10-minute run stays under 2 % of the process's size.
        flat = abs(late * 10) <= 0.02 * max(values)
        table.add_row(
            name, f"{values[0]:.0f}", f"{values[-1]:.0f}", f"{max(values):.0f}", f"{slope:+.2f}", f"{late:+.2f}",
            ("[green]✓[/green]" if flat else "[red]✗[/red]") if len(samples) >= 6 else "too short",
        )  # fmt: skip
    console.print(table)
    console.print("target: RSS flat over a 10-minute run of 30,000 messages (--soak 600 at ≥ 50 msg/s)")


def _slope(times: list[float], values: list[float]) -> float:
    """MB per minute."""
    if len(times) < 2 or len(set(times)) < 2:
        return 0.0
    return statistics.linear_regression(times, values).slope * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="times each resident sends each of the 15 texts")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="concurrencies to measure")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="then keep sending this long")
    parser.add_argument("--soak-rate", type=float, default=TARGET_RATE, help="messages/s the soak aims at")
    parser.add_argument("--soak-concurrency", type=int, default=32, help="residents sending at once during the soak")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--model", type=Path, help="a trained Rasa model; default: the current data's (trained if missing)")
    parser.add_argument("--rasa-servers", type=int, default=os.cpu_count() or 1, help="Rasa servers (default: one per core)")
    parser.add_argument("--rasa-threads", choices=("single", "default"), default="single",
                        help="single: each server's math on one thread (rasa_process.single_threaded)")  # fmt: skip
    args = parser.parse_args()

    console.print(f"{args.rasa_servers} Rasa server(s), {args.rasa_threads}-threaded, {args.database}, {os.cpu_count()} cores")
    with stack(args.database, args.redis, args.model, args.rasa_servers, args.rasa_threads == "single") as app:
        # Warm-up (model caches, connection pools, first-request imports) is not measured.
        asyncio.run(drive(e2e_sender(app.app_url, "warm"), 2, 1))
        results = []
        for concurrency in args.levels:
            parse = measured(app.pids, drive(parse_sender(app.rasa_urls), concurrency, args.rounds))
            held = app.deferred()
            e2e = measured(app.pids, drive(e2e_sender(app.app_url, f"c{concurrency}"), concurrency, args.rounds))
            e2e.deferred = app.deferred() - held
            console.print(f"concurrency {concurrency}: parse p50 {parse.p(0.5):.0f} ms, e2e p50 {e2e.p(0.5):.0f} ms")
            results.append((concurrency, parse, e2e))
        console.print(levels_table(results))
        console.print(
            f"targets (2 cores): p50 e2e ≤ {TARGET_OVERHEAD}× the parse floor (the strict reading of #9's \"overhead ≤ 1.5× "
            "the floor\"; \"added/parse\" is what the turn adds beyond the parse, the literal one; bench/turn_floor.py "
            "measures what Rasa's own turn adds with actions that do nothing); "
            f"≥ {TARGET_RATE:.0f} msg/s sustained with "
            "no errors (held = Rasa timed out, the resident was told to wait); RSS flat over 10 minutes / 30,000 "
            "messages. Figures from a shared or loaded machine mean little."
        )
        console.print(cpu_ceiling(results))
        console.print(rss_table(app.pids))
        if args.soak:
            soak(app, args.soak, args.soak_rate, args.soak_concurrency)
            console.print(rss_table(app.pids))


if __name__ == "__main__":
    main()
