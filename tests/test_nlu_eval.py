"""The held-out split stays out of training, and `gridbot nlu test` produces its reports."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bot.nlu_calibration import CALIBRATION
from bot.nlu_eval import HELDOUT, examples
from bot.settings import PROJECT_ROOT


def _examples(path: Path) -> dict[str, set[str]]:
    """Examples by intent, spaces removed (a copy that differs only in spacing is still the same sentence)."""
    found: dict[str, set[str]] = {}
    for intent, text in examples(path):
        found.setdefault(intent, set()).add(text.replace(" ", ""))
    return found


def _training() -> dict[str, set[str]]:
    """Every training example of every file Rasa trains on (nlu/*.yml), by intent."""
    found: dict[str, set[str]] = {}
    for path in sorted((PROJECT_ROOT / "nlu").glob("*.yml")):
        for intent, lines in _examples(path).items():
            found.setdefault(intent, set()).update(lines)
    return found


def _chatter_corpus() -> set[str]:
    lines = (PROJECT_ROOT / "bench" / "data" / "group_chatter.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip().replace(" ", "") for line in lines if line.strip()}


def test_heldout_never_appears_in_training() -> None:
    training = set().union(*_training().values())
    heldout = _examples(HELDOUT)
    overlap = {intent: sorted(lines & training) for intent, lines in heldout.items() if lines & training}
    assert overlap == {}
    assert set(heldout) <= set(_training())


def test_chatter_corpus_is_not_training_data() -> None:
    chatter = _chatter_corpus()
    assert len(chatter) >= 300
    assert sorted(chatter & set().union(*_training().values())) == []


def test_calibration_set_is_kept_apart_from_training_and_evaluation() -> None:
    calibration = set().union(*_examples(CALIBRATION).values())
    assert sorted(calibration & set().union(*_training().values())) == []
    assert sorted(calibration & set().union(*_examples(HELDOUT).values())) == []
    assert sorted(calibration & _chatter_corpus()) == []


@pytest.mark.rasa
def test_nlu_test_command_writes_reports() -> None:
    result = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "gridbot"), "nlu", "test"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report_dir = PROJECT_ROOT / "reports" / "nlu" / "heldout"
    summary = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    assert 0.0 < summary["intent_macro_f1"] <= 1.0
    assert set(summary["per_intent_f1"]) == set(_examples(HELDOUT))
    assert any(key.startswith("location") for key in summary["entity_f1"])
    assert (report_dir / "intent_confusion_matrix.png").stat().st_size > 10_000
    assert "macro-F1" in result.stdout
