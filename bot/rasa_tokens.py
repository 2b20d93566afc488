"""The two secrets between the app and Rasa: the one Rasa's action calls carry, and Rasa's own API token.

Each is the configured setting (ACTION_ENDPOINT_TOKEN, RASA_AUTH_TOKEN), else one generated once per process
and put in the process's environment. That makes everything one process starts agree without being told:
`gridbot run` writes the token into Rasa's endpoints and serves the app that checks it; the tests and benches
start Rasa, the embedded app and `gridbot serve` subprocesses (which inherit the environment) the same way. A
process that serves the app alone (`gridbot serve` with the token unset) generates one too, so Rasa's calls are
refused until both are given the same ACTION_ENDPOINT_TOKEN: closed is the safe default.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading

from bot.settings import Settings

log = logging.getLogger(__name__)

ACTION_TOKEN_ENV = "ACTION_ENDPOINT_TOKEN"
RASA_TOKEN_ENV = "RASA_AUTH_TOKEN"
# The header Rasa sends the action token in (endpoints.yml `headers:`): a query parameter would land in access logs.
ACTION_TOKEN_HEADER = "X-Gridbot-Action-Token"

_lock = threading.Lock()


def _process_secret(env_name: str, purpose: str) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    with _lock:
        value = os.environ.get(env_name)
        if not value:
            value = os.environ[env_name] = secrets.token_urlsafe(32)
            log.warning("%s is not set: generated a secret for %s for this run; processes started from here share it, "
                        "a Rasa started elsewhere must be given the same %s", env_name, purpose, env_name)  # fmt: skip
    return value


def action_token(settings: Settings | None = None) -> str:
    """The secret Rasa's action calls carry: configured, else this process's generated one."""
    if settings is not None and settings.action_endpoint_token.get_secret_value():
        return settings.action_endpoint_token.get_secret_value()
    return _process_secret(ACTION_TOKEN_ENV, "Rasa's action calls")


def rasa_token(settings: Settings | None = None) -> str:
    """The token Rasa's HTTP API is started with (`--auth-token`): configured, else this process's generated one."""
    if settings is not None and settings.rasa_auth_token.get_secret_value():
        return settings.rasa_auth_token.get_secret_value()
    return _process_secret(RASA_TOKEN_ENV, "Rasa's HTTP API")


def known_rasa_token(settings: Settings | None = None) -> str | None:
    """The token to send to Rasa, if any is known; never generates one (a Rasa started elsewhere may have none)."""
    if settings is not None and settings.rasa_auth_token.get_secret_value():
        return settings.rasa_auth_token.get_secret_value()
    return os.environ.get(RASA_TOKEN_ENV) or None


def same_secret(provided: str, expected: str) -> bool:
    """Constant-time comparison, so response timing does not reveal how much of a guess was right."""
    return hmac.compare_digest(provided.encode(), expected.encode())
