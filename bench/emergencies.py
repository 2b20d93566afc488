"""Emergency recognition (grid/emergencies.py): recall and precision on phrasings no part of training ever saw.

    make bench-emergencies          (or: .venv/bin/python -m bench.emergencies [--show-all])

The recogniser (grid/emergencies.py) is trained here from grid/data/emergencies.yml and its threshold chosen on
grid/data/emergency_calibration.yml, exactly as the app does at start-up, with the offline e5 model `make setup`
builds; it is then scored on bench/data/emergency_phrasings.yml, which this script first checks shares no line
with either file. Rows, in the same run:

- meaning: the recogniser the app runs (e5 vectors + character n-grams, calibrated threshold);
- old keyword rule (baseline): what decided red before, grid.categories.classify giving a red category;
- kind keywords (fallback): the recogniser the app falls back to without an embedding model.

Targets: emergency recall >= 0.98, precision >= 0.9. Reported per kind too: which emergencies each missed, which
near misses each took for one, and whether the kind recognised was the right one (it decides the number to call).

`--real` also scores real text that holds no grid matter (../shared/data/real/dev/: the report half of the Weibo
lines, as bench/nlu_real.py splits them, shoppers, in-car commands; none is training or calibration data): the
share the recogniser takes for an emergency, and the share the bot would answer unasked because of it — the router
speaks to an unaddressed emergency only when NLU (a confident report) and the gate agree (bot/router.py), so
those lines are parsed by a throwaway Rasa server on the current model.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bot.settings import PROJECT_ROOT
from grid.categories import classify
from grid.emergencies import (
    CALIBRATION_FILE,
    EMERGENCIES_FILE,
    KeywordRecogniser,
    MeaningRecogniser,
    Phrasing,
    load_table,
    read_phrasings,
)
from knowledge.embeddings import load_embedder

BENCH_FILE = PROJECT_ROOT / "bench" / "data" / "emergency_phrasings.yml"
RECALL_TARGET, PRECISION_TARGET = 0.98, 0.9
console = Console()


@dataclass(frozen=True)
class Scored:
    name: str
    said: list[str | None]  # per phrasing: the kind recognised (its code), "red" for the baseline, or None
    names_kinds: bool = True  # the baseline only says red, not which emergency

    def figures(self, truth: list[Phrasing]) -> tuple[float, float, int, int, int]:
        """Recall, precision, true positives, false positives, misses."""
        tp = sum(1 for p, s in zip(truth, self.said, strict=True) if p.kind and s)
        fp = sum(1 for p, s in zip(truth, self.said, strict=True) if not p.kind and s)
        fn = sum(1 for p, s in zip(truth, self.said, strict=True) if p.kind and not s)
        return tp / max(1, tp + fn), tp / max(1, tp + fp), tp, fp, fn


def _normalised(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def check_held_out(bench: list[Phrasing]) -> None:
    """Refuse to report on a benchmark line that is also an exemplar or a calibration phrasing."""
    table = load_table()
    seen = {_normalised(t) for kind in table.kinds for t in kind.exemplars}
    seen |= {_normalised(t) for group in table.not_emergencies.values() for t in group}
    seen |= {_normalised(p.text) for p in read_phrasings(CALIBRATION_FILE)}
    leaked = [p.text for p in bench if _normalised(p.text) in seen]
    if leaked:
        raise SystemExit(f"benchmark lines also used for training or calibration: {leaked}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show-all", action="store_true", help="print every phrasing with its score")
    parser.add_argument("--real", action="store_true", help="also score real non-grid text (slow: ~20k lines, and a Rasa server)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bench = read_phrasings(BENCH_FILE)
    check_held_out(bench)
    embedder = load_embedder("auto")
    if embedder is None:
        raise SystemExit("no offline e5 model: run `make setup` first")
    table = load_table()
    started = time.perf_counter()
    meaning = MeaningRecogniser.train(embedder, table, read_phrasings(CALIBRATION_FILE))
    console.print(f"trained in {time.perf_counter() - started:.1f}s: {meaning.description}")
    console.print(f"{EMERGENCIES_FILE.name}: {sum(len(k.exemplars) for k in table.kinds)} emergency exemplars, "
                  f"{sum(len(g) for g in table.not_emergencies.values())} near misses; "
                  f"{BENCH_FILE.name}: {sum(1 for p in bench if p.kind)} emergencies, "
                  f"{sum(1 for p in bench if not p.kind)} near misses")  # fmt: skip
    texts = [p.text for p in bench]
    timings, scored = [], []
    for text in texts:
        t0 = time.perf_counter()
        scored.append(meaning.scores([text])[0])
        timings.append((time.perf_counter() - t0) * 1000)
    keywords = KeywordRecogniser(table)
    rows = [
        Scored("meaning (e5 + n-grams)", [kind.code if kind else None for _, kind in scored]),
        Scored("old keyword rule (baseline)", ["red" if classify(text).colour == "red" else None for text in texts], False),
        Scored("kind keywords (fallback)", [f.kind.code if (f := keywords.recognise(text)) else None for text in texts]),
    ]
    summary = Table(title=f"emergency recognition on {len(bench)} benchmark phrasings (held out)")
    for column in ("recogniser", "recall", "precision", "found", "false alarms", "missed", "right kind"):
        summary.add_column(column, justify="right")
    for row in rows:
        recall, precision, tp, fp, fn = row.figures(bench)
        right_kind = sum(1 for p, s in zip(bench, row.said, strict=True) if p.kind and s == p.kind)
        summary.add_row(
            row.name,
            f"{recall:.3f}" if recall >= RECALL_TARGET else f"[red]{recall:.3f}[/red]",
            f"{precision:.3f}" if precision >= PRECISION_TARGET else f"[red]{precision:.3f}[/red]",
            str(tp), str(fp), str(fn), f"{right_kind}/{tp}" if row.names_kinds else "-",
        )  # fmt: skip
    console.print(summary)
    per_kind = Table(title="per kind: emergencies missed / near misses taken for one (meaning | old rule)")
    for column in ("kind", "phrasings", "missed (meaning)", "missed (old rule)", "wrong kind (meaning)"):
        per_kind.add_column(column)
    for kind in table.kinds:
        lines = [(i, p) for i, p in enumerate(bench) if p.kind == kind.code]
        missed = [p.text for i, p in lines if not rows[0].said[i]]
        missed_old = [p.text for i, p in lines if not rows[1].said[i]]
        wrong = [f"{p.text} → {rows[0].said[i]}" for i, p in lines if rows[0].said[i] and rows[0].said[i] != p.kind]
        per_kind.add_row(f"{kind.code} {kind.name}", str(len(lines)), "\n".join(missed) or "-",
                         f"{len(missed_old)}/{len(lines)}", "\n".join(wrong) or "-")  # fmt: skip
    console.print(per_kind)
    for name, row in (("meaning", rows[0]), ("old rule", rows[1])):
        false = [f"{p.text} → {row.said[i]}" for i, p in enumerate(bench) if not p.kind and row.said[i]]
        console.print(f"[bold]near misses taken for an emergency ({name}): {len(false)}[/bold]")
        for line in false:
            console.print(f"  {line}")
    console.print(f"meaning: {statistics.mean(timings):.1f} ms mean, {max(timings):.1f} ms max per phrasing (encoding included)")
    if args.real:
        real_chatter(meaning)
    if args.show_all:
        for p, (score, kind) in zip(bench, scored, strict=True):
            console.print(f"{score:.3f} {'✓' if bool(kind) == bool(p.kind) else '✗'} {p.kind or '-':>15} {p.text}")


def real_chatter(meaning: MeaningRecogniser) -> None:
    """Real non-grid lines: the share the recogniser takes for an emergency, and the share the router would then
    answer unasked (the recogniser AND NLU's confident report AND the gate: MessageRouter.emergency_report), with
    NLU from a throwaway Rasa server on the current model, asked only about the lines the recogniser heard."""
    import asyncio
    import tempfile
    from pathlib import Path

    from bench.nlu_real import REAL_DEV, SETS, read_lines, weibo_halves
    from bot import rasa_process
    from bot.expectations import MemoryExpectations
    from bot.group_settings import GroupPolicy
    from bot.normalise import normalise
    from bot.rasa_client import RasaClient
    from bot.router import MessageRouter
    from bot.settings import Settings

    if not REAL_DEV.is_dir():
        console.print(f"[yellow]no real data at {REAL_DEV}: --real skipped[/yellow]")
        return
    settings = Settings()
    heard: list[tuple[str, int, list[tuple[str, str]]]] = []  # set, lines, (line, kind) the recogniser heard
    for real in (s for s in SETS if not s.grid_matter):
        lines = weibo_halves()[1] if real.file.startswith("LCCC") else read_lines(REAL_DEV / real.file)
        texts = [normalise(line, settings.bot_name) or line for line in lines]
        found = [(text, kind.code) for text, (_, kind) in zip(texts, meaning.scores(texts), strict=True) if kind]
        heard.append((real.name, len(lines), found))

    async def reports(url: str) -> list[list[bool]]:
        rasa = RasaClient(url)
        router = MessageRouter(settings, rasa, MemoryExpectations(), None, None)  # type: ignore[arg-type]
        policy = GroupPolicy(settings.command_prefixes, settings.request_confidence)
        try:
            return [[router.emergency_report(await rasa.parse(text), policy) for text, _ in found] for _, _, found in heard]
        finally:
            await rasa.aclose()

    model = rasa_process.ensure_model(lambda line: console.print(line))
    with tempfile.TemporaryDirectory() as workdir, rasa_process.serving(model, Path(workdir)) as url:
        spoken = asyncio.run(reports(url))
    table = Table(title="real non-grid text: heard as an emergency, and answered unasked (recogniser ∧ NLU report ∧ gate)")
    for column in ("set", "lines", "recogniser heard", "would speak unasked", "most heard kinds", "spoken to"):
        table.add_column(column)
    for (name, count, found), said in zip(heard, spoken, strict=True):
        kinds = ", ".join(f"{kind} {n}" for kind, n in Counter(kind for _, kind in found).most_common(3))
        lines = "; ".join(f"{text[:24]}→{kind}" for (text, kind), yes in zip(found, said, strict=True) if yes)
        table.add_row(name, str(count), f"{len(found)} ({len(found) / count:.2%})",
                      f"{sum(said)} ({sum(said) / count:.2%})", kinds, lines or "-")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
