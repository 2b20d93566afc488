"""The confidence above which the bot answers an unaddressed group message, chosen on a calibration set.

The threshold trades false triggers (the bot answering neighbours' chatter: a bot that spams a group is
removed from it) against real requests answered without an @. `tests/data/nlu_calibration.yml` was written
apart from the training data and from the evaluation corpus (bench/data/group_chatter.txt, the held-out
split), so the value chosen here is not fitted to what the benchmark scores. `gridbot nlu calibrate` prints
the sweep and the recommended value; Settings.request_confidence is where it goes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.nlu_eval import examples
from bot.normalise import normalise
from bot.rasa_client import RasaClient
from bot.settings import PROJECT_ROOT, Settings

CALIBRATION = PROJECT_ROOT / "tests" / "data" / "nlu_calibration.yml"
REPORT = PROJECT_ROOT / "reports" / "nlu" / "calibration.json"
# The target on the evaluation corpus is 2 %; choosing at half of it leaves room for chatter unlike ours.
MAX_FALSE_TRIGGERS = 0.01
THRESHOLDS = tuple(round(0.50 + 0.01 * i, 2) for i in range(50))  # 0.50 … 0.99


@dataclass(frozen=True)
class Scored:
    """One calibration line: what it is (chitchat or a request intent) and what NLU made of it."""

    text: str
    expected: str
    predicted: str | None
    confidence: float


@dataclass(frozen=True)
class SweepRow:
    threshold: float
    false_triggers: float  # share of chatter lines the bot would answer
    requests_answered: float  # share of request lines it would answer


async def score(rasa_url: str, pairs: list[tuple[str, str]], settings: Settings) -> list[Scored]:
    """Each line as the router sees it: normalised, then parsed by the running Rasa server."""
    rasa = RasaClient(rasa_url)
    try:
        scored = []
        for intent, line in pairs:
            text = normalise(line, settings.bot_name)
            parsed: dict[str, Any] = ((await rasa.parse(text)).get("intent") or {}) if text else {}
            name = parsed.get("name")
            scored.append(Scored(line, intent, name if isinstance(name, str) else None, float(parsed.get("confidence") or 0.0)))
        return scored
    finally:
        await rasa.aclose()


def sweep(scored: list[Scored], settings: Settings, thresholds: tuple[float, ...] = THRESHOLDS) -> list[SweepRow]:
    """False-trigger and answered-request shares at each threshold (a request counts when it is any request intent)."""
    requests = set(settings.request_intents)
    chatter = [s for s in scored if s.expected not in requests]
    asked = [s for s in scored if s.expected in requests]
    if not chatter or not asked:
        raise ValueError("the calibration set needs both chatter and request lines")

    def answered(s: Scored, threshold: float) -> bool:
        return s.predicted in requests and s.confidence >= threshold

    return [
        SweepRow(
            threshold,
            sum(answered(s, threshold) for s in chatter) / len(chatter),
            sum(answered(s, threshold) for s in asked) / len(asked),
        )
        for threshold in thresholds
    ]


def choose(rows: list[SweepRow], max_false_triggers: float = MAX_FALSE_TRIGGERS) -> SweepRow:
    """The lowest threshold within the false-trigger budget: the most requests answered that the budget allows."""
    within = [row for row in rows if row.false_triggers <= max_false_triggers]
    if not within:
        return max(rows, key=lambda row: row.threshold)  # nothing meets the budget: the strictest on offer
    return min(within, key=lambda row: row.threshold)


def calibrate(rasa_url: str, settings: Settings, path: Path = CALIBRATION) -> tuple[list[SweepRow], SweepRow, list[Scored]]:
    scored = asyncio.run(score(rasa_url, examples(path), settings))
    rows = sweep(scored, settings)
    return rows, choose(rows), scored


def write_report(rows: list[SweepRow], chosen: SweepRow, scored: list[Scored], settings: Settings, path: Path = REPORT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    requests = set(settings.request_intents)
    triggers = [asdict(s) for s in scored if s.expected not in requests and s.predicted in requests]
    report = {
        "chosen": asdict(chosen),
        "max_false_triggers": MAX_FALSE_TRIGGERS,
        "sweep": [asdict(row) for row in rows],
        "chatter_scored_as_requests": sorted(triggers, key=lambda s: -s["confidence"]),
    }
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
