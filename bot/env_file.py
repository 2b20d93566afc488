"""The operator's `.env` file, put into the environment of every `gridbot` command (and so of what it starts).

Settings reads the file by itself (bot/settings.py), but some values are read from the process environment on
purpose: the Rasa server `gridbot run` starts inherits the app's tokens from it (bot/rasa_tokens.py), and
GRIDBOT_CACHE and OMP_NUM_THREADS are no settings. Loading the file at a command's start gives them the file's values
too. A variable already set in the environment wins, as it does for Settings.
"""

from __future__ import annotations

from pathlib import Path

from dotenv import load_dotenv

from bot.settings import ENV_FILE


def load_env_file(path: Path = ENV_FILE) -> bool:
    """Whether a file was there to load."""
    if not path.is_file():
        return False
    load_dotenv(path, override=False, encoding="utf-8")
    return True
