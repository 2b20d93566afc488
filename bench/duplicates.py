"""Duplicates by meaning (docs/tickets.md, "Duplicates"): precision and recall of linking a report to the open ticket it repeats.

    make bench-duplicates                      (or: .venv/bin/python -m bench.duplicates [--show-all])
    .venv/bin/python -m bench.duplicates --calibrate      pair model and thresholds from the dev pairs
                                                          (grid/duplicates.CALIBRATED_MODEL, CALIBRATED)

Pairs of reports as two residents write them about one spot (bench/data/duplicate_pairs_*.yml): the same problem
in other words, other place wording (三号楼前面 / 3栋楼下), other category words (危险 makes one red); and hard
negatives — the same place with another problem, the same problem at another building, 3 vs 13, a location that
names nothing (`号`). The judge the app runs (grid/duplicates.MeaningJudge, the offline e5 model `make setup`
builds) has its pair model and thresholds chosen on the dev split (`--calibrate`); figures are reported on two
held-out splits, which this script first checks share no pair with the dev split or each other:
duplicate_pairs_holdout.yml (scored three times while the e5-only method changed) and duplicate_pairs_heldout2.yml
(written before the pair model, never used to choose anything). Rows, in the same run:

- pair model: the app's judge (place, e5 clause score and problem words); "linked" is what counts (a wrong link
  hides a problem), "flagged" are filed and shown to the worker as 可能重复;
- e5 clauses (previous method): the judge before the pair model, the clause score alone at its own calibrated
  thresholds (0.347 / 0.306);
- old rule (baseline): what linked before — same category (grid.categories.classify) and one location text inside
  the other (grid/service.py's `same_place` until #24);
- rule fallback: grid/duplicates.RuleJudge, what the app runs without an embedding model.

Goals: precision >= 0.97, recall >= 0.85 (of linking, on the held-out split).
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from bot.settings import PROJECT_ROOT
from grid.categories import classify
from grid.duplicates import (
    CALIBRATED,
    CALIBRATED_MODEL,
    DescriptionSimilarity,
    MeaningJudge,
    PairFeatures,
    PairModel,
    Report,
    RuleJudge,
    Thresholds,
    Verdict,
)
from grid.places import compare_places
from knowledge.embeddings import load_embedder

DEV_FILE = PROJECT_ROOT / "bench" / "data" / "duplicate_pairs_dev.yml"
HOLDOUT_FILE = PROJECT_ROOT / "bench" / "data" / "duplicate_pairs_holdout.yml"
HELDOUT2_FILE = PROJECT_ROOT / "bench" / "data" / "duplicate_pairs_heldout2.yml"
# The e5-only judge's thresholds (calibrated on the dev split before the pair model), for the row beside it.
PREVIOUS = Thresholds(link=0.347, flag=0.306)
# L2 penalty of the pair model's weights (not the intercept): few dev pairs, four features.
L2 = 1.0
PRECISION_TARGET, RECALL_TARGET = 0.97, 0.85
# What calibration keeps on the dev split: links this precise, and this share of duplicates linked or flagged.
CALIBRATION_PRECISION, CALIBRATION_FLAG_RECALL = 0.98, 0.95
console = Console()


@dataclass(frozen=True)
class Pair:
    first: Report  # the open ticket
    later: Report  # the new report
    same: bool
    kind: str


def read_pairs(path: Path) -> list[Pair]:
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))["pairs"]
    pairs = []
    for row in rows:
        (a_text, a_place), (b_text, b_place) = row["a"], row["b"]
        first = Report(str(a_text), str(a_place), classify(str(a_text)).name)
        later = Report(str(b_text), str(b_place), classify(str(b_text)).name)
        pairs.append(Pair(first, later, bool(row["same"]), str(row["kind"])))
    return pairs


def check_held_out(dev: list[Pair], holdout: list[Pair]) -> None:
    """Refuse to report on a held-out pair that is also a dev pair (either way round)."""
    seen = {(p.first.description, p.later.description) for p in dev}
    seen |= {(b, a) for a, b in seen}
    leaked = [p for p in holdout if (p.first.description, p.later.description) in seen]
    if leaked:
        raise SystemExit(f"held-out pairs also in the dev split: {leaked}")


# --- the old rule, as grid/service.py had it before #24 ------------------------------------------------------------

_NUMBER_CHARS = frozenset("零〇一二两三四五六七八九十百千")


def _in_number(char: str) -> bool:
    return (char.isascii() and char.isalnum()) or char in _NUMBER_CHARS


def old_same_place(a: str, b: str) -> bool:
    """The same place, or one named inside the other, a number never inside a longer one (the pre-#24 rule)."""
    a, b = a.replace(" ", ""), b.replace(" ", "")
    if not a or not b:
        return False
    short, long = sorted((a, b), key=len)
    start = long.find(short)
    while start != -1:
        end = start + len(short)
        glued_before = start > 0 and _in_number(long[start - 1]) and _in_number(short[0])
        glued_after = end < len(long) and _in_number(long[end]) and _in_number(short[-1])
        if not (glued_before or glued_after):
            return True
        start = long.find(short, start + 1)
    return False


def old_rule(pair: Pair) -> Verdict:
    same = pair.first.category == pair.later.category and old_same_place(pair.first.location, pair.later.location)
    return Verdict.LIKELY if same else Verdict.DIFFERENT


# --- scoring ---------------------------------------------------------------------------------------------------------


def meaning_scores(similarity: DescriptionSimilarity, pairs: list[Pair]) -> list[float | None]:
    """The clause score for pairs at one spot; None where the places already differ (never linked)."""
    return [None if f is None else f.clause_score for f in pair_features(similarity, pairs)]


def pair_features(similarity: DescriptionSimilarity, pairs: list[Pair]) -> list[PairFeatures | None]:
    """The pair model's features for pairs at one spot; None where the places already differ (never linked)."""
    placed = [i for i, p in enumerate(pairs) if compare_places(p.first.location, p.later.location).same]
    features = similarity.features([(pairs[i].later, pairs[i].first) for i in placed])
    found: list[PairFeatures | None] = [None] * len(pairs)
    for i, value in zip(placed, features, strict=True):
        found[i] = value
    return found


def probabilities(model: PairModel, features: list[PairFeatures | None]) -> list[float | None]:
    return [None if f is None else model.probability(f) for f in features]


def fit_model(features: list[PairFeatures], same: list[bool], l2: float = L2) -> PairModel:
    """L2-regularised logistic regression by Newton's method (a few hundred pairs, four features: numpy suffices)."""
    x = np.c_[np.ones(len(features)), np.array([f.vector for f in features], dtype=float)]
    y = np.array(same, dtype=float)
    penalty = l2 * np.diag([0.0] + [1.0] * (x.shape[1] - 1))
    w = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        step = np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x + penalty, x.T @ (p - y) + penalty @ w)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return PairModel(intercept=round(float(w[0]), 3), weights=tuple(round(float(v), 3) for v in w[1:]))


def leave_one_out(features: list[PairFeatures | None], pairs: list[Pair]) -> list[float | None]:
    """Each placed pair's probability under a model fitted on the other dev pairs: what thresholds are chosen on,
    so they are not set on pairs the weights have already seen."""
    placed = [i for i, f in enumerate(features) if f is not None]
    found: list[float | None] = [None] * len(pairs)
    for i in placed:
        rest = [j for j in placed if j != i]
        model = fit_model([features[j] for j in rest], [pairs[j].same for j in rest])  # type: ignore[misc]
        found[i] = model.probability(features[i])  # type: ignore[arg-type]
    return found


@dataclass(frozen=True)
class Figures:
    precision: float
    recall: float
    linked: int
    wrong: int
    missed: int
    flagged: int = 0
    flagged_same: int = 0


def figures(pairs: list[Pair], verdicts: list[Verdict]) -> Figures:
    tp = sum(1 for p, v in zip(pairs, verdicts, strict=True) if p.same and v is Verdict.LIKELY)
    fp = sum(1 for p, v in zip(pairs, verdicts, strict=True) if not p.same and v is Verdict.LIKELY)
    fn = sum(1 for p, v in zip(pairs, verdicts, strict=True) if p.same and v is not Verdict.LIKELY)
    flagged = [p for p, v in zip(pairs, verdicts, strict=True) if v is Verdict.UNCERTAIN]
    return Figures(
        precision=tp / max(1, tp + fp),
        recall=tp / max(1, tp + fn),
        linked=tp + fp,
        wrong=fp,
        missed=fn,
        flagged=len(flagged),
        flagged_same=sum(1 for p in flagged if p.same),
    )


def calibrate(pairs: list[Pair], scores: list[float | None]) -> Thresholds:
    """`link`: the lowest score whose links keep CALIBRATION_PRECISION; `flag`: the highest that links or flags
    CALIBRATION_FLAG_RECALL of the duplicates. Each sits halfway to the next score below it (the widest margin the
    dev evidence allows)."""
    scored = sorted((s, p.same) for p, s in zip(pairs, scores, strict=True) if s is not None)
    positives = sum(1 for p in pairs if p.same)
    values = sorted({s for s, _ in scored}, reverse=True)

    def below(value: float) -> float:
        lower = [s for s in values if s < value]
        return (value + lower[0]) / 2 if lower else value

    link = values[0]
    for value in values:
        kept = [same for s, same in scored if s >= value]
        if sum(kept) / len(kept) >= CALIBRATION_PRECISION:
            link = value
    flag = link
    for value in values:
        if value <= link and sum(1 for s, same in scored if same and s >= value) / positives >= CALIBRATION_FLAG_RECALL:
            flag = value
            break
    return Thresholds(link=round(below(link), 3), flag=round(min(below(flag), below(link)), 3))


def _linked(verdict: Verdict) -> bool:
    return verdict is Verdict.LIKELY


def _cell(value: float, goal: float) -> str:
    return f"{value:.3f}" if value >= goal else f"[red]{value:.3f}[/red]"


def report(
    name: str, pairs: list[Pair], rows: list[tuple[str, list[Verdict]]], scores: list[float | None], show_all: bool
) -> None:
    """One held-out split: the summary of every judge, by kind of pair, and the first two judges' mistakes."""
    summary = Table(title=f"linking a report to the open ticket it repeats, on {len(pairs)} pairs of {name} "
                          f"({sum(p.same for p in pairs)} duplicates)")  # fmt: skip
    for column in ("judge", "precision", "recall", "linked", "wrong links", "missed", "flagged (of them duplicates)"):
        summary.add_column(column, justify="right")
    for judge, verdicts in rows:
        f = figures(pairs, verdicts)
        flagged = f"{f.flagged} ({f.flagged_same})" if judge in (rows[0][0], rows[1][0]) else "-"
        summary.add_row(judge, _cell(f.precision, PRECISION_TARGET), _cell(f.recall, RECALL_TARGET), str(f.linked),
                        str(f.wrong), str(f.missed), flagged)  # fmt: skip
    console.print(summary)
    by_kind = Table(title=f"{name}, by kind of pair: right / pairs")
    for column in ("kind", "same problem", *(judge for judge, _ in rows[:3])):
        by_kind.add_column(column)
    kinds = Counter((p.kind, p.same) for p in pairs)
    for (kind, same), count in sorted(kinds.items(), key=lambda k: (not k[0][1], k[0][0])):
        right = [
            sum(1 for p, v in zip(pairs, verdicts, strict=True) if (p.kind, p.same) == (kind, same) and _linked(v) == same)
            for _, verdicts in rows[:3]
        ]
        by_kind.add_row(kind, "yes" if same else "no", *(f"{r}/{count}" for r in right))
    console.print(by_kind)
    for judge, verdicts in rows[:2]:
        wrong = [p for p, v in zip(pairs, verdicts, strict=True) if v is Verdict.LIKELY and not p.same]
        missed = [p for p, v in zip(pairs, verdicts, strict=True) if v is not Verdict.LIKELY and p.same]
        console.print(f"[bold]{name}, {judge}: wrong links {len(wrong)}, missed {len(missed)}[/bold]")
        for p in wrong:
            console.print(f"  wrong  {p.first.description}（{p.first.location}） ≠ {p.later.description}（{p.later.location}）")
        if show_all or judge == rows[0][0]:
            for p in missed:
                score = scores[pairs.index(p)]
                shown = "-" if score is None else f"{score:.3f}"
                console.print(f"  missed {p.first.description}（{p.first.location}） = "
                              f"{p.later.description}（{p.later.location}） probability {shown}")  # fmt: skip
    if show_all:
        for p, s, v in zip(pairs, scores, rows[0][1], strict=True):
            console.print(f"{'-' if s is None else f'{s:.3f}'} {v.value:>9} {'same' if p.same else 'diff'} {p.kind:>24} "
                          f"{p.first.description} | {p.later.description}")  # fmt: skip


def _verdicts(judge: MeaningJudge, scores: list[float | None]) -> list[Verdict]:
    return [Verdict.DIFFERENT if s is None else judge.verdict(s) for s in scores]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", action="store_true", help="fit the pair model and thresholds on the dev split")
    parser.add_argument("--show-all", action="store_true", help="print every held-out pair with its score and verdicts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    dev, holdout, heldout2 = read_pairs(DEV_FILE), read_pairs(HOLDOUT_FILE), read_pairs(HELDOUT2_FILE)
    check_held_out(dev, holdout)
    check_held_out(dev, heldout2)
    check_held_out(holdout, heldout2)
    embedder = load_embedder("auto")
    if embedder is None:
        raise SystemExit("no offline e5 model: run `make setup` first")
    similarity = DescriptionSimilarity(embedder)
    if args.calibrate:
        features = pair_features(similarity, dev)
        placed = [i for i, f in enumerate(features) if f is not None]
        model = fit_model([features[i] for i in placed], [dev[i].same for i in placed])  # type: ignore[misc]
        held_back = leave_one_out(features, dev)
        chosen = calibrate(dev, held_back)
        f = figures(dev, _verdicts(MeaningJudge(similarity, chosen, model), held_back))
        console.print(f"fitted on {DEV_FILE.name} ({len(dev)} pairs, {len(placed)} at one spot): {model}")
        console.print(f"thresholds from leave-one-out probabilities: link >= {chosen.link}, flag >= {chosen.flag}")
        console.print(f"dev, leave-one-out: precision {f.precision:.3f}, recall {f.recall:.3f}, flagged {f.flagged} "
                      f"({f.flagged_same} duplicates)")  # fmt: skip
        console.print(f"in use (grid/duplicates): {CALIBRATED_MODEL}, link >= {CALIBRATED.link}, flag >= {CALIBRATED.flag}")
        return
    judge, previous = MeaningJudge(similarity, CALIBRATED, CALIBRATED_MODEL), MeaningJudge(similarity, PREVIOUS)
    rule = RuleJudge()
    console.print(f"{judge.description}; {CALIBRATED_MODEL}; fitted on {DEV_FILE.name}: {len(dev)} pairs")
    for path, pairs in ((HELDOUT2_FILE, heldout2), (HOLDOUT_FILE, holdout)):
        features = pair_features(similarity, pairs)
        chances = probabilities(CALIBRATED_MODEL, features)
        rows = [
            ("pair model (place + e5 + problem words)", _verdicts(judge, chances)),
            ("e5 clauses (previous method)", _verdicts(previous, [None if f is None else f.clause_score for f in features])),
            ("old rule (baseline)", [old_rule(p) for p in pairs]),
            ("rule fallback (no model)", [rule.judge(p.later, p.first) for p in pairs]),
        ]
        report(path.name, pairs, rows, chances, args.show_all)


if __name__ == "__main__":
    main()
