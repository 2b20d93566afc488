"""Rasa's action-server protocol (`POST /webhook`) served by the app, executed by rasa_sdk's own executor.

Only Rasa may call it: an action acts as whoever the tracker names, so a hand-made call could otherwise list
or resolve any worker's tickets. Rasa proves itself with the shared secret (bot/rasa_tokens.py) that
bot/rasa_process.write_endpoints puts in its endpoints.yml.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionMissingDomainException, ActionNotFoundException

from actions.runtime import serving
from bot.rasa_tokens import ACTION_TOKEN_HEADER, action_token, same_secret

log = logging.getLogger(__name__)

executor = ActionExecutor()
executor.register_package("actions")


async def rasa_only(
    request: Request,
    header_token: Annotated[str | None, Header(alias=ACTION_TOKEN_HEADER, include_in_schema=False)] = None,
    query_token: Annotated[str | None, Query(alias="token", include_in_schema=False)] = None,
) -> None:
    """The action token, from the header write_endpoints configures or `?token=` (Rasa's own `token:` setting)."""
    provided = header_token or query_token
    if not provided:
        raise HTTPException(401, f"Rasa's action calls carry the action endpoint token ({ACTION_TOKEN_HEADER} header)")
    if not same_secret(provided, action_token(request.app.state.services.settings)):
        raise HTTPException(403, "wrong action endpoint token")


router = APIRouter(tags=["rasa actions"], dependencies=[Depends(rasa_only)])


def _malformed(call: Any) -> str | None:
    """What is wrong with an action call's shape, if anything: rasa_sdk indexes it without checking."""
    if not isinstance(call, dict):
        return "the body must be a JSON object (Rasa's action call)"
    if not isinstance(call.get("next_action"), str) or not call["next_action"]:
        return "the action call names no next_action"
    tracker = call.get("tracker")
    if not isinstance(tracker, dict):
        return "the action call needs a tracker (a JSON object)"
    if not isinstance(tracker.get("sender_id"), str):
        return "the tracker needs a sender_id (a string)"
    for key, kind in (("slots", dict), ("latest_message", dict), ("events", list), ("active_loop", dict), ("stack", list)):
        if tracker.get(key) is not None and not isinstance(tracker[key], kind):
            return f"the tracker's {key} must be a JSON {'object' if kind is dict else 'array'}"
    latest = tracker.get("latest_message") or {}
    if latest.get("metadata") is not None and not isinstance(latest["metadata"], dict):
        return "the latest message's metadata must be a JSON object"
    if latest.get("entities") is not None and not isinstance(latest["entities"], list):
        return "the latest message's entities must be a JSON array"
    if call.get("domain") is not None and not isinstance(call["domain"], dict):
        return "the domain must be a JSON object"
    return None


# The body is read by hand (a non-object body or a malformed tracker is a 400 with a reason, not FastAPI's 422), so
# the schema says what it is here: Rasa's action call, `{"next_action", "tracker", "domain", …}`.
ACTION_CALL_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}


@router.post("/webhook", openapi_extra={"requestBody": ACTION_CALL_BODY})
async def webhook(request: Request) -> JSONResponse:
    """Same status codes as rasa_sdk's own server, so Rasa handles form rejections as it expects."""
    try:
        action_call = json.loads(await request.body())
    except ValueError:  # also a body that is not UTF-8
        raise HTTPException(400, "the body is not JSON") from None
    problem = _malformed(action_call)
    if problem:
        raise HTTPException(400, problem)
    try:
        with serving(request.app.state.action_services):  # this app's services, not the last app started's
            result = await executor.run(action_call)
    except ActionExecutionRejection as exc:
        return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=400)
    except ActionNotFoundException as exc:
        log.error("rasa asked for unknown action: %s", exc)
        return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=404)
    except ActionMissingDomainException as exc:
        return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=449)
    if result is None:
        raise HTTPException(status_code=400, detail="the action call names no next_action")
    return JSONResponse(result.model_dump())


@router.get("/actions")
async def list_actions() -> list[dict[str, str]]:
    return [{"name": name} for name in sorted(executor.actions)]
