"""The gridbot app: web chat channel, Rasa's action endpoint, health; one process in the embedded default."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from actions.runtime import ActionServices
from bot import rasa_supervisor
from bot.api import actions as actions_api
from bot.api import auth as auth_api
from bot.api import channels as channels_api
from bot.api import console as console_api
from bot.api import groups as groups_api
from bot.api import guards
from bot.api import knowledge as knowledge_api
from bot.api import knowledge_admin as knowledge_admin_api
from bot.api import local as local_api
from bot.api import media as media_api
from bot.api import notices as notices_api
from bot.api import open311 as open311_api
from bot.api import operations as operations_api
from bot.api import reports as reports_api
from bot.api import stats as stats_api
from bot.api import tickets as tickets_api
from bot.api import warnings as warnings_api
from bot.channels.ilink import routes as ilink_routes
from bot.channels.wecom import routes as wecom_routes
from bot.jobs import default_jobs, retry_deferred, run_forever
from bot.logging_setup import install_redaction
from bot.notices.service import NoticeService
from bot.outbox_job import aclose_http
from bot.runtime import Services, build_services
from bot.settings import Settings, get_settings
from bot.web import pages as console_pages

log = logging.getLogger(__name__)


def _log_replay_failure(replay: concurrent.futures.Future[None]) -> None:
    if not replay.cancelled() and (error := replay.exception()) is not None:
        log.error("replaying held messages after Rasa came back failed: %r", error)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    install_redaction()  # however the app is served (gridbot serve, uvicorn --factory), no log line shows a phone or secret

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        window = timedelta(hours=settings.duplicate_window_hours)
        followup_window = timedelta(seconds=settings.followup_window_seconds)
        # This app's own: its action endpoint binds them to each call (bot/api/actions.py), so another app served
        # in the same process (tests, benches) never answers this one's residents with its settings.
        app.state.action_services = ActionServices(
            services.session_factory,
            services.knowledge,
            duplicate_window=window,
            followup_window=followup_window,
            emergencies=services.emergencies,
            duplicates=services.duplicates,
            warnings=services.warnings,
        )
        app.state.services = services
        jobs = [asyncio.create_task(run_forever(job, services)) for job in default_jobs(services)]
        # Notices go to groups: a channel without any (iLink, one-to-one only) is no notice sender.
        senders = [channel for channel in services.channels if channel.capabilities.can_post_to_rooms]
        app.state.notices = notices = NoticeService(settings, services.session_factory, senders)
        await notices.start()
        await services.channels.start_all(services.intake)
        supervisor = rasa_supervisor.installed()  # `gridbot run`'s: replay held messages as soon as Rasa is back
        loop = asyncio.get_running_loop()

        def replay_held() -> None:
            replay = asyncio.run_coroutine_threadsafe(retry_deferred(services), loop)
            replay.add_done_callback(_log_replay_failure)

        if supervisor is not None:
            supervisor.add_listener(replay_held)
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.remove_listener(replay_held)
            await services.channels.stop_all()
            await notices.stop()
            for task in jobs:
                task.cancel()
            for task in jobs:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await aclose_http()
            await services.aclose()

    app = FastAPI(title="GridBot 网格助手", version="0.1.0", lifespan=lifespan)
    if settings.local_chat_enabled:
        app.include_router(local_api.router)
    app.include_router(actions_api.router)
    app.include_router(tickets_api.router)
    app.include_router(stats_api.router)
    app.include_router(open311_api.router)
    app.include_router(knowledge_api.router)
    app.include_router(knowledge_admin_api.router)
    app.include_router(notices_api.router)
    app.include_router(auth_api.router)
    app.include_router(channels_api.router)
    app.include_router(media_api.router)
    app.include_router(wecom_routes.router)
    app.include_router(ilink_routes.router)
    app.include_router(console_api.router)
    app.include_router(groups_api.router)
    app.include_router(reports_api.router)
    app.include_router(operations_api.router)  # /metrics, /readyz (liveness: /healthz below)
    app.include_router(warnings_api.router)
    console_pages.install(app)

    guards.install(app, settings)  # every request: body cap, NaN/NUL/surrogate refusals, short 422s, trusted proxies

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return JSONResponse({"detail": "database unavailable, nothing was stored: retry shortly"}, status_code=503)

    @app.exception_handler(OverflowError)
    async def number_out_of_range(_request: Request, _exc: OverflowError) -> JSONResponse:
        """SQLite cannot bind an integer beyond 64 bits: an id, offset or cursor that large comes from the request
        (schemathesis found `GET /api/v1/knowledge/entries/{huge}` answering 500), and no stored row has it."""
        return JSONResponse({"detail": "a number in the request is out of range"}, status_code=422)

    @app.get("/healthz", tags=["health"])
    async def health(request: Request) -> dict[str, object]:
        """Liveness: 200 while the process answers. `status` says degraded while no Rasa server has its model (messages
        are held meanwhile); under `gridbot run` `rasa` shows each supervised server's state and restarts."""
        services: Services = request.app.state.services
        rasa_ready = await services.rasa.ready()
        body: dict[str, object] = {"status": "ok" if rasa_ready else "degraded", "rasa_ready": rasa_ready}
        if (supervisor := rasa_supervisor.installed()) is not None:
            supervised = supervisor.status()
            body["rasa"] = supervised
            if not supervised["all_up"]:
                body["status"] = "degraded"
        return body

    return app
