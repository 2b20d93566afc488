"""What every route needs from the running app: its services, built once at start-up."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bot.runtime import Services


async def get_services(request: Request) -> Services:
    """Async only so FastAPI calls it inline: a plain `def` dependency is run in its thread pool, a thread
    hand-off on every request for an attribute read."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
