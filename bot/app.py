"""The gridbot app: web chat channel, Rasa's action endpoint, health; one process in the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from actions.runtime import ActionServices, configure
from bot.api import actions as actions_api
from bot.api import local as local_api
from bot.runtime import Services, build_services
from bot.settings import Settings, get_settings

log = logging.getLogger(__name__)


async def _retry_deferred_forever(services: Services) -> None:
    """Replays messages held while Rasa was down, and delivers what the bot says to them."""
    while True:
        await asyncio.sleep(services.settings.deferred_retry_seconds)
        try:
            outgoing = await services.router.retry_deferred()
            await services.webchat.deliver(outgoing)
        except Exception:  # keep the loop alive whatever one round hits; the rows stay held
            log.exception("retrying deferred messages failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        configure(ActionServices(services.session_factory, services.knowledge))
        app.state.services = services
        retry = asyncio.create_task(_retry_deferred_forever(services))
        try:
            yield
        finally:
            retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retry
            await services.aclose()

    app = FastAPI(title="GridBot 网格助手", version="0.1.0", lifespan=lifespan)
    app.include_router(local_api.router)
    app.include_router(actions_api.router)

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return JSONResponse({"detail": "database unavailable, nothing was stored: retry shortly"}, status_code=503)

    @app.get("/healthz", tags=["health"])
    async def health(request: Request) -> dict[str, object]:
        services: Services = request.app.state.services
        return {"status": "ok", "rasa_ready": await services.rasa.ready()}

    return app
