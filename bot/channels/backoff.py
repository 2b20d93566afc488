"""The channels' reconnect pause: moved to bot/backoff.py (the Rasa supervisor uses it too); kept so imports work."""

from bot.backoff import backoff

__all__ = ["backoff"]
