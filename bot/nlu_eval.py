"""NLU evaluation: `rasa test nlu` on the held-out split (never trained on) and cross-validation, summarised.

Rasa writes detailed reports (per-intent and per-entity precision/recall/F1, errors, confusion-matrix
PNG); this module runs it and condenses the figures people track: intent macro-F1, per-intent F1,
entity F1, into `summary.json` beside Rasa's own files.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from bot.rasa_process import CONFIG_FILE, PROJECT_ROOT, RASA_BIN, rasa_env

HELDOUT = PROJECT_ROOT / "tests" / "data" / "nlu_heldout.yml"
_ENTITY_MARKUP = re.compile(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})")
REPORTS = PROJECT_ROOT / "reports" / "nlu"
_AGGREGATES = {"accuracy", "macro avg", "weighted avg", "micro avg"}


def examples(path: Path) -> list[tuple[str, str]]:
    """(intent, text) of every example in a Rasa NLU YAML file, entity markup `[3号楼](location)` reduced to its text."""
    pairs: list[tuple[str, str]] = []
    for block in yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu", []):
        if "intent" not in block:
            continue
        for line in str(block.get("examples", "")).splitlines():
            if line.strip().startswith("- "):
                pairs.append((block["intent"], _ENTITY_MARKUP.sub(r"\1", line.strip()[2:].strip())))
    return pairs


@dataclass
class NluScores:
    intent_macro_f1: float
    intent_accuracy: float
    per_intent_f1: dict[str, float]
    entity_f1: dict[str, float] = field(default_factory=dict)
    report_dir: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2), encoding="utf-8")


def _read(report_dir: Path) -> NluScores:
    intents = json.loads((report_dir / "intent_report.json").read_text(encoding="utf-8"))
    per_intent = {name: round(v["f1-score"], 4) for name, v in intents.items() if name not in _AGGREGATES}
    accuracy = intents.get("accuracy")
    if isinstance(accuracy, dict):  # Rasa writes a bare number, sklearn-style reports sometimes a dict
        accuracy = accuracy.get("f1-score", 0.0)
    entity_f1: dict[str, float] = {}
    for report in sorted(report_dir.glob("*Extractor*_report.json")) + sorted(report_dir.glob("DIETClassifier_report.json")):
        extractor = report.name.removesuffix("_report.json")
        for name, values in json.loads(report.read_text(encoding="utf-8")).items():
            if name in _AGGREGATES or name == "no_entity" or not isinstance(values, dict):
                continue
            key = f"{name} ({extractor})"
            entity_f1[key] = round(values["f1-score"], 4)
    return NluScores(
        intent_macro_f1=round(intents["macro avg"]["f1-score"], 4),
        intent_accuracy=round(float(accuracy or 0.0), 4),
        per_intent_f1=per_intent,
        entity_f1=entity_f1,
        report_dir=str(report_dir),
    )


def evaluate_heldout(
    model: Path, out_dir: Path = REPORTS / "heldout", data: Path = HELDOUT, root: Path = PROJECT_ROOT
) -> NluScores:
    """Score a trained model on the held-out split; Rasa's reports and the confusion matrix land in out_dir. `root`:
    whose custom components the model loads (a committed tree's, for its model: bot.rasa_process.committed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(RASA_BIN), "test", "nlu", "--model", str(model), "--nlu", str(data), "--out", str(out_dir)],
        cwd=PROJECT_ROOT,
        env=rasa_env(root),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    scores = _read(out_dir)
    scores.write(out_dir / "summary.json")
    return scores


def cross_validate(folds: int, out_dir: Path = REPORTS / "cross-validation", config: Path = CONFIG_FILE) -> NluScores:
    """k-fold cross-validation over the training data (k trainings: minutes each on 2 cores)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(RASA_BIN),
            "test",
            "nlu",
            "--nlu",
            "nlu",
            "--config",
            str(config),
            "--cross-validation",
            "--folds",
            str(folds),
            "--out",
            str(out_dir),
        ],
        cwd=PROJECT_ROOT,
        env=rasa_env(),
        check=True,
    )
    scores = _read(out_dir)
    scores.write(out_dir / "summary.json")
    return scores
