"""`make run` says where its time went: set-up's and training's steps, printed when GridBot is ready."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import setup_times


def test_the_steps_of_this_make_run_are_printed_with_the_time_since_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = tmp_path / "setup-times.tsv"
    monkeypatch.setenv(setup_times.MAKE_STARTED_ENV, "1000")
    times.write_text("make-started\t1000\napp virtualenv\t12\nRasa virtualenv (in parallel)\t47\n", encoding="utf-8")
    setup_times.record("Rasa training", 268.6, times)  # what bot.rasa_process adds after training

    assert setup_times.summary(now=1400, path=times) == (
        "ready 400 s after `make` began; steps: app virtualenv 12 s, Rasa virtualenv (in parallel) 47 s, Rasa training 269 s"
    )


def test_another_runs_record_is_neither_printed_nor_added_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    times = tmp_path / "setup-times.tsv"
    times.write_text("make-started\t999\napp virtualenv\t12\n", encoding="utf-8")
    monkeypatch.setenv(setup_times.MAKE_STARTED_ENV, "1000")
    setup_times.record("Rasa training", 300, times)  # a test's training under `make test`, say
    assert setup_times.summary(now=1400, path=times) is None
    assert times.read_text(encoding="utf-8") == "make-started\t999\napp virtualenv\t12\n"

    monkeypatch.delenv(setup_times.MAKE_STARTED_ENV)  # `gridbot run` started by hand
    assert setup_times.summary(path=times) is None


def test_a_later_run_with_nothing_to_do_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    times = tmp_path / "setup-times.tsv"
    times.write_text("make-started\t1000\n", encoding="utf-8")
    monkeypatch.setenv(setup_times.MAKE_STARTED_ENV, "1000")
    assert setup_times.summary(now=1038, path=times) == "ready 38 s after `make` began (nothing to set up or train)"
