"""The committed model a benchmark measures beside the working tree's (bot.rasa_process.committed): the training
files as a commit has them, hashed like a checkout, so an unchanged commit finds its model in the cache and a
changed working tree gets the committed model beside its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bot import rasa_process
from bot.settings import PROJECT_ROOT


def _git(repository: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repository, check=True, capture_output=True)


def test_a_commit_s_training_files_hash_like_the_checkout_they_came_from(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    for name in ("config.yml", "domain.yml"):
        shutil.copy(PROJECT_ROOT / name, repository / name)
    for folder in rasa_process.TRAINING_DIRS:
        shutil.copytree(PROJECT_ROOT / folder, repository / folder, ignore=shutil.ignore_patterns("__pycache__"))
    _git(repository, "init", "-q")
    _git(repository, "add", ".")
    _git(repository, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "training data")
    as_committed = rasa_process.training_hash(repository / "config.yml", repository)

    rules = repository / "nlu" / "rules.yml"
    rules.write_text(rules.read_text(encoding="utf-8") + "\n# changed in the working tree\n", encoding="utf-8")
    changed = rasa_process.training_hash(repository / "config.yml", repository)
    with rasa_process.committed("HEAD", repository) as tree:
        assert sorted(p.name for p in tree.iterdir()) == sorted(["config.yml", "domain.yml", *rasa_process.TRAINING_DIRS])
        committed = rasa_process.training_hash(tree / "config.yml", tree)
        assert "# changed in the working tree" not in (tree / "nlu" / "rules.yml").read_text(encoding="utf-8")
    assert committed == as_committed != changed
    assert not tree.exists()  # a temporary tree, gone after use
