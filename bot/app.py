"""The gridbot app: web chat channel, Rasa's action endpoint, health; one process in the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from actions.runtime import ActionServices, configure
from bot.api import actions as actions_api
from bot.api import knowledge as knowledge_api
from bot.api import knowledge_admin as knowledge_admin_api
from bot.api import local as local_api
from bot.api import notices as notices_api
from bot.api import open311 as open311_api
from bot.api import stats as stats_api
from bot.api import tickets as tickets_api
from bot.jobs import default_jobs, run_forever
from bot.notices.service import NoticeService
from bot.outbox_job import aclose_http
from bot.runtime import Services, build_services
from bot.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        window = timedelta(hours=settings.duplicate_window_hours)
        configure(ActionServices(services.session_factory, services.knowledge, duplicate_window=window))
        app.state.services = services
        jobs = [asyncio.create_task(run_forever(job, services)) for job in default_jobs(services)]
        app.state.notices = notices = NoticeService(settings, services.session_factory, [services.webchat])
        await notices.start()
        try:
            yield
        finally:
            await notices.stop()
            for task in jobs:
                task.cancel()
            for task in jobs:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await aclose_http()
            await services.aclose()

    app = FastAPI(title="GridBot 网格助手", version="0.1.0", lifespan=lifespan)
    app.include_router(local_api.router)
    app.include_router(actions_api.router)
    app.include_router(tickets_api.router)
    app.include_router(stats_api.router)
    app.include_router(open311_api.router)
    app.include_router(knowledge_api.router)
    app.include_router(knowledge_admin_api.router)
    app.include_router(notices_api.router)

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return JSONResponse({"detail": "database unavailable, nothing was stored: retry shortly"}, status_code=503)

    @app.get("/healthz", tags=["health"])
    async def health(request: Request) -> dict[str, object]:
        services: Services = request.app.state.services
        return {"status": "ok", "rasa_ready": await services.rasa.ready()}

    return app
