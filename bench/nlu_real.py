"""The unaddressed-message decision on real text written elsewhere, with and without the open-set gate.

    make bench-nlu-real        (or: .venv/bin/python -m bench.nlu_real [--per-set 1500] [--calibrate])

Starts the Rasa server on the current model and runs lines of `../shared/data/real/dev/` (evaluation and
calibration only, never trained on; see its README) through the router's own decision for an unaddressed group
message (`MessageRouter.answers_unaddressed`), twice from the same parses: with the configured gate threshold and
with the gate off (threshold 0: the intent and the router's other rules decide alone). Prints, per set, the share
the bot would speak to (an action may still stay silent: an unanswerable question, no open ticket):
- non-grid text (Weibo chatter, shoppers, in-car commands): false triggers, goal ≤ 1 %;
- real residents' messages to a city and residents' policy questions: how many it would still answer without
  an @ (silence is acceptable here: a resident who wants an answer @s the bot).
The Weibo lines are split in two with a fixed seed: `--calibrate` prints the gate threshold chosen on the first
half (the score 98 % of that chatter stays below: Settings.grid_matter_threshold), the second half is reported
here, so the reported figure is never the one tuned on.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bot import rasa_process
from bot.expectations import MemoryExpectations
from bot.group_settings import GroupPolicy
from bot.normalise import normalise
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import PROJECT_ROOT, Settings

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
    return sum(router.answers_unaddressed(p, None, policy) for p in parses) / max(len(parses), 1)


async def measure(rasa_url: str, settings: Settings, per_set: int) -> list[tuple[RealSet, int, float, float]]:
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
                rows.append((real, len(lines), spoken_share(ungated, parses, policy), spoken_share(gated, parses, policy)))
    finally:
        await rasa.aclose()
    return rows


CALIBRATION_QUANTILE = 0.98


async def calibrate(rasa_url: str, settings: Settings, per_set: int) -> float:
    """The gate score that CALIBRATION_QUANTILE of the calibration half of the Weibo chatter stays below."""
    rasa = RasaClient(rasa_url)
    lines = random.Random(SEED).sample(weibo_halves()[0], min(per_set, len(weibo_halves()[0])))
    try:
        with Progress(console=console) as progress:
            parses = await parse_all(rasa, lines, settings, progress, "Weibo chatter (calibration half)")
    finally:
        await rasa.aclose()
    scores = sorted(float((p.get("grid_matter") or {}).get("score") or 0.0) for p in parses)
    if not any(scores):
        raise SystemExit("the model has no grid_matter scores: is rasa_components.grid_gate.GridMatterGate in config.yml?")
    return scores[min(int(CALIBRATION_QUANTILE * len(scores)), len(scores) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=1500, help="lines sampled from each set (fixed seed)")
    parser.add_argument("--calibrate", action="store_true", help="print the gate threshold chosen on the calibration half")
    args = parser.parse_args()
    if not REAL_DEV.is_dir():
        raise SystemExit(f"{REAL_DEV} not found: this benchmark reads the shared real-text evaluation sets")
    settings = Settings()
    model = rasa_process.ensure_model(lambda line: console.print(line))
    with tempfile.TemporaryDirectory() as workdir, rasa_process.serving(model, Path(workdir)) as url:
        if args.calibrate:
            threshold = asyncio.run(calibrate(url, settings, 3 * args.per_set))
            console.print(f"gate threshold: {threshold:.2f} ({CALIBRATION_QUANTILE:.0%} of the calibration chatter scores below;"
                          f" configured GRID_MATTER_THRESHOLD {settings.grid_matter_threshold})")  # fmt: skip
            return
        rows = asyncio.run(measure(url, settings, args.per_set))
    table = Table(
        title=f"unaddressed group messages the bot would answer ({model.name}, gate ≥ {settings.grid_matter_threshold})"
    )
    for column in ("real text (../shared/data/real/dev)", "lines", "kind", "gate off", "gate on", "goal"):
        table.add_column(column)
    for real, count, before, after in rows:
        kind, goal = ("request", "—") if real.grid_matter else ("not a grid matter", "≤ 1 %")
        table.add_row(real.name, str(count), kind, f"{before:.1%}", f"{after:.1%}", goal)
    console.print(table)


if __name__ == "__main__":
    main()
