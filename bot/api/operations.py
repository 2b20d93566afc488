"""What operators' tools ask the app: GET /metrics (Prometheus) and GET /readyz (readiness).

/healthz (bot/app.py) is liveness: the process answers. /readyz says whether it can do its work now: the database
answers, Redis answers (when REDIS_URL is set) and a Rasa server has its model loaded; 503 names what failed, so a
load balancer or orchestrator sends no traffic to it meanwhile. Both are unauthenticated, like /healthz: the public
nginx server does not pass them (deploy/nginx.conf); Prometheus scrapes each app process on its own port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bot.queue_gauges import exposition, registry_for
from bot.runtime import Services

router = APIRouter(tags=["health"])

# Longest one readiness check may take: a probe that hangs on a dead host is itself a failure.
CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    # The database gauges are queries: off the event loop, like every other database call of the app.
    body = await asyncio.to_thread(exposition, registry_for(services.session_factory))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _database_answers(services: Services) -> None:
    with services.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def _check(probe: Awaitable[object]) -> str | None:
    """None when the probe succeeded, else why not (short: no URL, which may carry a password)."""
    try:
        result = await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s"
    except (SQLAlchemyError, RedisError, OSError) as exc:
        return f"unreachable ({type(exc).__name__})"
    return None if result is not False else "not ready"


async def _rasa_ready(services: Services) -> bool:
    return await services.rasa.ready()


@router.get("/readyz", include_in_schema=False)  # its 503 is the answer, not an error (the schema fuzz wants no 5xx)
async def ready(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    probes: dict[str, Awaitable[object] | None] = {
        "database": asyncio.to_thread(_database_answers, services),
        "redis": services.redis.ping() if services.redis is not None else None,
        "rasa": _rasa_ready(services),
    }
    names = [name for name, probe in probes.items() if probe is not None]
    outcomes = await asyncio.gather(*(_check(probes[name]) for name in names))  # type: ignore[arg-type]
    checks = {name: outcome or "ok" for name, outcome in zip(names, outcomes, strict=True)}
    if services.redis is None:
        checks["redis"] = "not configured"
    failed = [name for name, outcome in zip(names, outcomes, strict=True) if outcome is not None]
    body = {"status": "not ready" if failed else "ready", "failed": failed, "checks": checks}
    return JSONResponse(body, status_code=503 if failed else 200)
