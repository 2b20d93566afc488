"""Rasa's REST channel, taking along the NLU result the gridbot router already has: one NLU pass per turn.

The router parses an unaddressed group message (/model/parse) to decide whether the bot should answer at
all; sending that message through the plain REST channel made Rasa run the whole NLU pipeline again for the
same text. Rasa's `UserMessage` accepts `parse_data` and then skips NLU (MessageProcessor uses it as is),
so this channel passes it on when it belongs to the text being sent. Anything else is parsed as usual.
Whoever can post here could already force an intent with a "/intent" message, and the metadata names the speaker
(channel, sender) the actions act as: so only the app may post. Rasa's `--auth-token` guards its HTTP API but not
input channels; this channel asks for the same token as `?token=`, read from RASA_AUTH_TOKEN in Rasa's
environment (bot/rasa_process.start_rasa sets both). Without that variable it checks nothing, like Rasa's REST.
"""

from __future__ import annotations

import hmac
import logging
import os
from asyncio import CancelledError
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from rasa_ext import patches

logger = logging.getLogger(__name__)


TOKEN_ENV = "RASA_AUTH_TOKEN"


def token_accepted(provided: str | None, expected: str | None) -> bool:
    """No token configured: anything (Rasa's own behaviour); else the same token, compared in constant time."""
    if not expected:
        return True
    return provided is not None and hmac.compare_digest(provided.encode(), expected.encode())


def usable_parse_data(parse_data: Any, text: str) -> dict[str, Any] | None:
    """The parse result if it is one for this very text, else None (Rasa parses the text itself)."""
    if not isinstance(parse_data, dict) or parse_data.get("text") != text:
        return None
    intent = parse_data.get("intent")
    if not isinstance(intent, dict) or not isinstance(intent.get("name"), str):
        return None
    if not isinstance(parse_data.get("entities"), list):
        return None
    return parse_data


class PreparedRestInput(InputChannel):
    """POST /webhooks/gridbot/webhook {sender, message, metadata, parse_data?} → the bot's messages for the turn."""

    @classmethod
    def name(cls) -> str:
        return "gridbot"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        """Rasa builds its channels once at start-up, before anything else of the project's: the earliest hook
        Rasa 3.6 offers, so the speed-ups of its internals are installed here (`rasa_ext.patches.install()`, which
        checks the Rasa version, logs each patch and runs once per process; its docstring says why here)."""
        patches.install()
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("gridbot_prepared_rest", __name__)
        webhook.after_server_stop(patches.close_shared)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        expected_token = os.environ.get(TOKEN_ENV) or None

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if not token_accepted(request.args.get("token"), expected_token):
                return response.json({"error": "Rasa's API token (?token=) is missing or wrong"}, status=401)
            body = request.json if isinstance(request.json, dict) else {}
            sender, text = body.get("sender"), body.get("message")
            if not isinstance(sender, str) or not sender or not isinstance(text, str):
                return response.json({"error": "sender and message (strings) are required"}, status=400)
            metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
            collector = CollectingOutputChannel()
            message = UserMessage(
                text,
                collector,
                sender,
                parse_data=usable_parse_data(body.get("parse_data"), text),
                input_channel=self.name(),
                metadata=metadata,
            )
            # Like Rasa's REST channel: a failure inside the turn is logged and the messages so far returned.
            try:
                await on_new_message(message)
            except CancelledError:
                logger.error("turn of %s timed out", sender)
            except Exception:
                logger.exception("turn of %s failed", sender)
            return response.json(collector.messages)

        return webhook
