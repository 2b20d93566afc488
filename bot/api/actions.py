"""Rasa's action-server protocol (`POST /webhook`) served by the app, executed by rasa_sdk's own executor."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionMissingDomainException, ActionNotFoundException

log = logging.getLogger(__name__)
router = APIRouter(tags=["rasa actions"])

executor = ActionExecutor()
executor.register_package("actions")


@router.post("/webhook")
async def webhook(action_call: dict[str, Any]) -> JSONResponse:
    """Same status codes as rasa_sdk's own server, so Rasa handles form rejections as it expects."""
    try:
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
