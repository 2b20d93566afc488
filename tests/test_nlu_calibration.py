"""Choosing the unaddressed-request threshold: the sweep's arithmetic and the calibration set's shape."""

from __future__ import annotations

import itertools

import pytest

from bot.nlu_calibration import CALIBRATION, Scored, choose, sweep
from bot.nlu_eval import examples
from bot.settings import Settings

SETTINGS = Settings()


def _scored() -> list[Scored]:
    # Four chatter lines (two look like requests to NLU) and four requests (one unsure, one misread as chatter).
    return [
        Scored("c1", "chitchat", "chitchat", 0.99),
        Scored("c2", "chitchat", "report_issue", 0.97),
        Scored("c3", "chitchat", "ask_policy", 0.70),
        Scored("c4", "chitchat", "greet", 0.90),
        Scored("r1", "report_issue", "report_issue", 0.99),
        Scored("r2", "ask_policy", "ask_policy", 0.80),
        Scored("r3", "urge_ticket", "check_ticket_status", 0.95),  # another request intent still gets an answer
        Scored("r4", "ask_policy", "chitchat", 0.60),
    ]


def test_sweep_counts_chatter_answered_and_requests_answered() -> None:
    rows = {row.threshold: row for row in sweep(_scored(), SETTINGS, (0.6, 0.75, 0.9, 0.98))}
    assert (rows[0.6].false_triggers, rows[0.6].requests_answered) == (0.5, 0.75)
    assert (rows[0.75].false_triggers, rows[0.75].requests_answered) == (0.25, 0.75)
    assert (rows[0.9].false_triggers, rows[0.9].requests_answered) == (0.25, 0.5)
    assert (rows[0.98].false_triggers, rows[0.98].requests_answered) == (0.0, 0.25)


def test_choose_takes_the_lowest_threshold_within_budget_else_the_strictest() -> None:
    rows = sweep(_scored(), SETTINGS, (0.6, 0.75, 0.9, 0.98))
    assert choose(rows, 0.3).threshold == 0.75
    assert choose(rows, 0.0).threshold == 0.98
    assert choose(sweep(_scored()[:2] + _scored()[4:], SETTINGS, (0.6, 0.7)), 0.1).threshold == 0.7  # none within


def test_a_sweep_needs_both_kinds_of_line() -> None:
    with pytest.raises(ValueError):
        sweep([s for s in _scored() if s.expected == "chitchat"], SETTINGS)


def test_calibration_set_has_enough_chatter_and_every_request_intent() -> None:
    pairs = examples(CALIBRATION)
    by_intent: dict[str, int] = {}
    for intent, _ in pairs:
        by_intent[intent] = by_intent.get(intent, 0) + 1
    assert by_intent.get("chitchat", 0) >= 300
    assert all(by_intent.get(intent, 0) >= 20 for intent in SETTINGS.request_intents), by_intent


@pytest.mark.rasa
def test_calibrate_command_sweeps_the_trained_model(rasa_url: str) -> None:
    """Through the real Rasa server: every line scored, a threshold chosen within the budget if any meets it."""
    import json
    import subprocess

    from bot.nlu_calibration import MAX_FALSE_TRIGGERS, REPORT
    from bot.settings import PROJECT_ROOT

    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "gridbot"), "nlu", "calibrate", "--rasa-url", rasa_url],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "configured request_confidence" in done.stdout
    report = json.loads(REPORT.read_text(encoding="utf-8"))
    rows = report["sweep"]
    for looser, stricter in itertools.pairwise(rows):  # a higher threshold never answers more of either kind
        assert stricter["false_triggers"] <= looser["false_triggers"]
        assert stricter["requests_answered"] <= looser["requests_answered"]
    assert rows[0]["requests_answered"] > 0.5  # the trained model does recognise the calibration requests
    assert report["chosen"] in rows
    within = [row for row in rows if row["false_triggers"] <= MAX_FALSE_TRIGGERS]
    assert report["chosen"] == (within[0] if within else rows[-1])
