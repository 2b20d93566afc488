"""The unaddressed-message decision on real text written elsewhere, with and without the open-set gate.

    make bench-nlu-real        (or: .venv/bin/python -m bench.nlu_real [--per-set 1500] [--calibrate] [--calibrate-small-talk])

Starts the Rasa server on the current model and runs lines of `../shared/data/real/dev/` (evaluation and
calibration only, never trained on; see its README) through the router's own decision for an unaddressed group
message (`MessageRouter.answers_unaddressed`), twice from the same parses: with the configured gate threshold and
with the gate off (threshold 0: the intent and the router's other rules decide alone). Prints, per set, the share
the router passes on, and — sent through the whole stack unaddressed — the share the bot then actually said something
to (an action with nothing sure to say stays silent: an unanswerable question, no open ticket):
- non-grid text (Weibo chatter, shoppers, in-car commands): false triggers, goal ≤ 1 %;
- real residents' messages to a city and residents' policy questions: how many it would still answer without
  an @ (silence is acceptable here: a resident who wants an answer @s the bot).
Then, addressed (`--addressed N`, default 150 lines a set; 0 skips it): the whole stack (`bench.e2e.stack`: app,
Rasa, SQLite, Redis) gets real residents' messages and policy questions @-mentioning the bot through the web chat,
and each reply is sorted: handled (a ticket or hand-off, the location question, a knowledge-base answer) or a
brush-off (the canned chitchat / out-of-scope / "没太明白" / rating / "no ticket" lines) — goal: zero brush-offs.
The Weibo lines are split in two with a fixed seed: `--calibrate` prints the gate threshold chosen on the first
half (the score 98 % of that chatter stays below: Settings.grid_matter_threshold), the second half is reported
here, so the reported figure is never the one tuned on. `--calibrate-small-talk` prints, for the gate bar below which
a short unplaced line counts as chatter (actions/unplaced.SMALL_TALK_GATE), how many short unplaced lines would reach
a person — residents' titles outside every reported sample against the calibration half of the chatter. Since #22's
last round the bar only keeps actions silent on unaddressed chatter: addressed, the words decide (actions/social.py).
When the training data differs from the last commit (`--against REV`, default HEAD), every figure is measured for
that commit's model too (its NLU and dialogue; the actions are this tree's) and printed beside this one's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from actions.unplaced import SMALL_TALK_CHARS, SMALL_TALK_GATE
from bench.e2e import stack
from bot import rasa_process
from bot.expectations import MemoryExpectations
from bot.group_settings import GroupPolicy
from bot.normalise import normalise
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import PROJECT_ROOT, Settings
from bot.texts import text as t

REAL_DEV = PROJECT_ROOT.parent / "shared" / "data" / "real" / "dev"
SEED = 7
console = Console(width=150)  # a table that stays one line per set in a log file too


@dataclass(frozen=True)
class RealSet:
    name: str
    file: str
    grid_matter: bool  # True: residents' requests (share answered is recall); False: share answered is false triggers


SETS = (
    RealSet("Weibo chatter (report half)", "LCCC_toy_samples.txt", False),
    RealSet("shoppers to customer service", "JDDC2019_customer_turns.txt", False),
    RealSet("in-car assistant commands", "NLPCC2018_task4_music_navigation.txt", False),
    RealSet("residents to a city: titles", "tipdm2020C_sheet3_title.txt", True),
    RealSet("residents to a city: first sentences", "tipdm2020C_sheet3_detail_first_sentence.txt", True),
    RealSet("residents' policy questions", "NCPPolicies_question_resident_filtered.txt", True),
)


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def weibo_halves(folder: Path = REAL_DEV) -> tuple[list[str], list[str]]:
    """(calibration half, report half) of the Weibo chatter, the same split every run."""
    lines = read_lines(folder / "LCCC_toy_samples.txt")
    random.Random(SEED).shuffle(lines)
    middle = len(lines) // 2
    return lines[:middle], lines[middle:]


def sample(real: RealSet, per_set: int, folder: Path = REAL_DEV) -> list[str]:
    lines = weibo_halves(folder)[1] if real.file.startswith("LCCC") else read_lines(folder / real.file)
    return random.Random(SEED).sample(lines, min(per_set, len(lines)))


async def parse_all(
    rasa: RasaClient, lines: list[str], settings: Settings, progress: Progress, label: str
) -> list[dict[str, Any]]:
    task = progress.add_task(label, total=len(lines))
    parses = []
    for line in lines:
        text = normalise(line, settings.bot_name)
        parses.append(await rasa.parse(text) if text else {})
        progress.advance(task)
    return parses


def spoken_share(router: MessageRouter, parses: list[dict[str, Any]], policy: GroupPolicy) -> float:
    """The router's own decision for a line nobody @-mentioned, nothing awaited, outside quiet hours."""
    return len(passed(router, parses, policy)) / max(len(parses), 1)


def passed(router: MessageRouter, parses: list[dict[str, Any]], policy: GroupPolicy) -> list[int]:
    """Indexes of the lines the router hands to Rasa's dialogue unasked: the bot may speak only on these."""
    return [i for i, parse in enumerate(parses) if router.answers_unaddressed(parse, None, policy)]


@dataclass
class Unasked:
    real: RealSet
    lines: int
    ungated: float  # share the router passes with the gate off
    gated: float  # … with the gate on
    candidates: list[str]  # the lines it passes with the gate on: the only ones the whole stack may answer
    spoke: int | None = None  # of those, how many the whole stack answered in the group (None: not measured)


async def measure(rasa_url: str, settings: Settings, per_set: int) -> list[Unasked]:
    rasa = RasaClient(rasa_url)  # Rasa's API token: the one rasa_process started it with (bot.rasa_tokens)
    gated = MessageRouter(settings, rasa, MemoryExpectations(), None, None)  # type: ignore[arg-type]
    ungated = MessageRouter(settings.model_copy(update={"grid_matter_threshold": 0.0}), rasa, MemoryExpectations(), None, None)  # type: ignore[arg-type]
    policy = GroupPolicy(settings.command_prefixes, settings.request_confidence)
    rows = []
    try:
        with Progress(console=console) as progress:
            for real in SETS:
                lines = sample(real, per_set)
                parses = await parse_all(rasa, lines, settings, progress, real.name)
                candidates = [lines[i] for i in passed(gated, parses, policy)]
                ungated_share = spoken_share(ungated, parses, policy)
                rows.append(Unasked(real, len(lines), ungated_share, len(candidates) / max(len(lines), 1), candidates))
    finally:
        await rasa.aclose()
    return rows


CALIBRATION_QUANTILE = 0.98


async def calibrate(rasa_url: str, settings: Settings, per_set: int) -> float:
    """The gate score that CALIBRATION_QUANTILE of the calibration half of the Weibo chatter stays below."""
    rasa = RasaClient(rasa_url)
    half = weibo_halves()[0]
    lines = random.Random(SEED).sample(half, min(per_set, len(half)))
    try:
        with Progress(console=console) as progress:
            parses = await parse_all(rasa, lines, settings, progress, "Weibo chatter (calibration half)")
    finally:
        await rasa.aclose()
    scores = sorted(float((p.get("grid_matter") or {}).get("score") or 0.0) for p in parses)
    if not any(scores):
        raise SystemExit("the model has no grid_matter scores: is rasa_components.grid_gate.GridMatterGate in config.yml?")
    return scores[min(int(CALIBRATION_QUANTILE * len(scores)), len(scores) - 1)]


# Intents that send an addressed message to actions/unplaced.py, where the small-talk bar decides.
UNPLACED_INTENTS = frozenset({"chitchat", "out_of_scope", "nlu_fallback"})
SMALL_TALK_BARS = (0.5, 0.4, 0.3, 0.2, 0.1)


async def calibrate_small_talk(rasa_url: str, settings: Settings, per_set: int) -> Table:
    """Where to put actions/unplaced.SMALL_TALK_GATE: of the short lines NLU could not place, the share that reaches
    a person at each bar — residents' titles (outside every reported sample) against the calibration half of the
    Weibo chatter."""
    reported = {real.file: set(sample(real, per_set)) | set(sample(real, 150)) for real in SETS}
    chatter = [line for line in weibo_halves()[0] if len(line) <= SMALL_TALK_CHARS]
    titles = [line for line in read_lines(REAL_DEV / SETS[3].file) if line not in reported[SETS[3].file]]
    groups = {
        "residents' short titles (calibration lines)": [line for line in titles if len(line) <= SMALL_TALK_CHARS],
        "Weibo chatter @-ed (calibration half)": chatter,
    }
    rasa, scores = RasaClient(rasa_url), {}
    try:
        with Progress(console=console) as progress:
            for name, lines in groups.items():
                lines = random.Random(SEED).sample(lines, min(per_set, len(lines)))
                parses = await parse_all(rasa, lines, settings, progress, name)
                scores[name] = [
                    float((p.get("grid_matter") or {}).get("score") or 0.0)
                    for p in parses
                    if p and (p.get("intent") or {}).get("name") in UNPLACED_INTENTS
                ]
    finally:
        await rasa.aclose()
    table = Table(title=f"short (≤ {SMALL_TALK_CHARS} characters) addressed lines NLU could not place: share to a person")
    for column in ("real text", "unplaced", *(f"bar {bar}" for bar in SMALL_TALK_BARS)):
        table.add_column(column)
    for name, values in scores.items():
        shares = (f"{sum(v >= bar for v in values) / max(len(values), 1):.1%}" for bar in SMALL_TALK_BARS)
        table.add_row(name, str(len(values)), *shares)
    table.caption = f"configured: actions/unplaced.SMALL_TALK_GATE = {SMALL_TALK_GATE}"
    return table


# --- addressed: the whole stack ---------------------------------------------------------------------------------

ADDRESSED_SETS = SETS[3:]  # residents' messages and policy questions


def brush_offs() -> dict[str, str]:
    """The replies that tell an addressed resident nothing, by name: read from the domain and the texts."""
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))["responses"]
    canned = {name: domain[name][0]["text"] for name in ("utter_out_of_scope", "utter_default", "utter_iamabot")}
    canned |= {key: t(key) for key in ("policy.small_talk", "tickets.rating_unclear", "tickets.status_none")}
    return {name: line.split("。")[0] for name, line in canned.items()}


# A reply naming the person who now has the message: 您的意见已转给陈书记（社区负责人）, 已通知张敏.
PERSON_TOLD = re.compile(r"已转给.{1,12}（|已通知.{1,12}，")


def outcome(replies: list[dict[str, str]], canned: dict[str, str]) -> tuple[str, str | None]:
    """What the first reply in the group was; for a brush-off, which one."""
    room = [r["text"] for r in replies if r["target_type"] == "room"]
    if not room:
        return "silence", None
    first = room[0]
    brush_off = next((name for name, line in canned.items() if line in first), None)
    if brush_off:
        return "brush-off", brush_off
    if "来源：" in first:
        return "answered (knowledge base)", None
    if re.search(r"GD\d{8}-\d{4}", first) or PERSON_TOLD.search(first):
        return "ticket / hand-off", None  # a ticket, or a named person told (the community lead, the worker)
    if "哪个位置" in first:
        return "asked for the place", None
    if t("suggestions.offer", options="").split("\n")[0] in first:
        return "offered entries (您想问的是)", None
    return "other reply", first.split("\n")[0][:24]


async def spoken_unasked(app_url: str, rows: list[Unasked]) -> None:
    """Send each line the router passed, unaddressed, through the whole stack and count those the bot answered (in
    the group, or to anybody privately): the router's pass is necessary, but an action with nothing sure to say
    stays silent (a shopper's 帮忙催一下 with no ticket open), so this is the false-trigger rate residents see."""
    async with httpx.AsyncClient(base_url=app_url, timeout=120) as http:
        for row in rows:
            row.spoke = 0
            for number, line in enumerate(row.candidates):
                payload = {
                    "group_id": "demo-grid-1", "sender_id": f"bench-unasked-{row.real.file[:6]}-{number}",
                    "sender_name": "居民", "text": line, "mentions_bot": False,
                }  # fmt: skip
                response = await http.post("/api/v1/local/messages", json=payload)
                row.spoke += response.status_code != 200 or bool(response.json()["replies"])


async def addressed_outcomes(app_url: str, per_set: int) -> list[tuple[RealSet, Counter[str]]]:
    canned = brush_offs()
    rows = []
    async with httpx.AsyncClient(base_url=app_url, timeout=120) as http:
        with Progress(console=console) as progress:
            for real in ADDRESSED_SETS:
                lines = sample(real, per_set)
                task, counts = progress.add_task(f"@ {real.name}", total=len(lines)), Counter[str]()
                for number, line in enumerate(lines):
                    payload = {
                        "group_id": "demo-grid-1", "sender_id": f"bench-real-{real.file[:6]}-{number}",
                        "sender_name": "居民", "text": line, "mentions_bot": True,
                    }  # fmt: skip
                    response = await http.post("/api/v1/local/messages", json=payload)
                    kind, which = outcome(response.json()["replies"], canned) if response.status_code == 200 else ("error", None)
                    counts[kind] += 1
                    if which:
                        counts[f"{'brush-off' if kind == 'brush-off' else 'other'}: {which}"] += 1
                    progress.advance(task)
                rows.append((real, counts))
    return rows


def addressed_table(
    rows: list[tuple[RealSet, Counter[str]]], model: str, committed: list[tuple[RealSet, Counter[str]]] | None = None
) -> Table:
    kinds = [
        "ticket / hand-off",
        "asked for the place",
        "answered (knowledge base)",
        "offered entries (您想问的是)",
        "other reply",
        "brush-off",
        "silence",
        "error",
    ]
    table = Table(title=f"addressed (@网格助手) real residents' messages: what the reply was ({model})")
    extra = ("committed model: to a person", "committed model: brush-off") if committed else ()
    for column in ("real text", "lines", *kinds, *extra):
        table.add_column(column)
    before = {real.name: counts for real, counts in committed or []}
    for real, counts in rows:
        total = max(sum(counts[kind] for kind in kinds), 1)
        shares = [f"{counts[kind] / total:.1%}" for kind in kinds]
        if committed:
            old_counts = before[real.name]
            old_total = max(sum(old_counts[kind] for kind in kinds), 1)
            shares += [f"{old_counts[kind] / old_total:.1%}" for kind in ("ticket / hand-off", "brush-off")]
        table.add_row(real.name, str(total), *shares)
    which = Counter[str]()
    for _, counts in rows:
        which.update({name.removeprefix("brush-off: "): n for name, n in counts.items() if name.startswith("brush-off: ")})
    others = Counter[str]()
    for _, counts in rows:
        others.update({name.removeprefix("other: "): n for name, n in counts.items() if name.startswith("other: ")})
    table.caption = "brush-offs by reply: " + ", ".join(f"{name} {n}" for name, n in which.most_common())
    table.caption += "\nother replies, most frequent openings: " + "; ".join(f"{n}× {t}" for t, n in others.most_common(6))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=1500, help="lines sampled from each set (fixed seed)")
    parser.add_argument("--calibrate", action="store_true", help="print the gate threshold chosen on the calibration half")
    parser.add_argument(
        "--calibrate-small-talk", action="store_true", help="print how many short unplaced lines reach a person at each bar"
    )
    parser.add_argument("--addressed", type=int, default=150, help="lines a set sent @-mentioning the bot (0: skip)")
    parser.add_argument(
        "--against", default="HEAD", help="the commit whose model is measured beside this one when the training data differs"
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    if not REAL_DEV.is_dir():
        raise SystemExit(f"{REAL_DEV} not found: this benchmark reads the shared real-text evaluation sets")
    settings = Settings()
    model = rasa_process.ensure_model(lambda line: console.print(line))
    if args.calibrate or args.calibrate_small_talk:
        with tempfile.TemporaryDirectory() as workdir, rasa_process.serving(model, Path(workdir)) as url:
            if args.calibrate:
                threshold = asyncio.run(calibrate(url, settings, 3 * args.per_set))
                console.print(f"gate threshold: {threshold:.2f} ({CALIBRATION_QUANTILE:.0%} of the calibration chatter"
                              f" scores below; configured GRID_MATTER_THRESHOLD {settings.grid_matter_threshold})")  # fmt: skip
            else:
                console.print(asyncio.run(calibrate_small_talk(url, settings, args.per_set)))
        return
    rows, addressed = measure_model(model, PROJECT_ROOT, settings, args)
    committed_rows: list[Unasked] | None = None
    committed_addressed = None
    with rasa_process.committed(args.against) as tree:
        config = tree / "config.yml"
        if rasa_process.training_hash(config, tree) != rasa_process.training_hash():
            console.print(f"the training data differs from {args.against}: measuring its model too, beside this one")
            baseline = rasa_process.ensure_model(lambda line: console.print(line), config=config, root=tree)
            committed_rows, committed_addressed = measure_model(baseline, tree, settings, args)
        else:
            console.print(f"the training data is {args.against}'s: the committed model is this one")
    console.print(unasked_table(rows, model.name, settings, committed_rows))
    if addressed is not None:
        console.print(addressed_table(addressed, model.name, committed_addressed))


def measure_model(
    model: Path, root: Path, settings: Settings, args: argparse.Namespace
) -> tuple[list[Unasked], list[tuple[RealSet, Counter[str]]] | None]:
    """Every figure of one model (its custom components from `root`): unaddressed, then through the whole stack."""
    with tempfile.TemporaryDirectory() as workdir, rasa_process.serving(model, Path(workdir), root) as url:
        rows = asyncio.run(measure(url, settings, args.per_set))
    with stack("sqlite", args.redis_url, model, root=root) as running:
        asyncio.run(spoken_unasked(running.app_url, rows))
        addressed = asyncio.run(addressed_outcomes(running.app_url, args.addressed)) if args.addressed else None
    return rows, addressed


def unasked_table(rows: list[Unasked], model: str, settings: Settings, committed: list[Unasked] | None) -> Table:
    table = Table(title=f"unaddressed group messages the bot would answer ({model}, gate ≥ {settings.grid_matter_threshold})")
    columns = ["real text (../shared/data/real/dev)", "lines", "kind", "gate off", "gate on", "spoke (whole stack)"]
    columns += ["committed model: gate on", "committed model: spoke"] if committed else []
    for column in (*columns, "goal"):
        table.add_column(column)
    before = {row.real.name: row for row in committed or []}
    for row in rows:
        kind, goal = ("request", "—") if row.real.grid_matter else ("not a grid matter", "≤ 1 %")
        cells = [f"{row.ungated:.1%}", f"{row.gated:.1%}", f"{(row.spoke or 0) / max(row.lines, 1):.1%}"]
        if committed:
            old = before[row.real.name]
            cells += [f"{old.gated:.1%}", f"{(old.spoke or 0) / max(old.lines, 1):.1%}"]
        table.add_row(row.real.name, str(row.lines), kind, *cells, goal)
    table.caption = "gate on: the router passes the line to the dialogue; spoke: the bot then said something to anybody"
    return table


if __name__ == "__main__":
    main()
