"""Login, logout and "who am I" for the console (server-rendered or JavaScript pages) and scripts.

`POST /api/v1/auth/login` (JSON or an HTML form) sets an HttpOnly, SameSite=Lax session cookie and returns the
account with its CSRF token; `GET /api/v1/me` returns them again (a page loaded later reads its token there);
`POST /api/v1/auth/logout` ends the session. Scripts skip all this and send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import URL

from bot.api.deps import ServicesDep
from bot.api.guards import client_address, from_trusted_proxy
from bot.auth.accounts import Principal, authenticate, end_session, principal_of, session_principal, start_session
from bot.auth.deps import SESSION_COOKIE, AnyAccount, csrf_ok, refusal
from bot.auth.ratelimit import LoginLimiter, LoginLimits
from bot.auth.secrets import MAX_PASSWORD_CHARS, csrf_token_for
from bot.runtime import Services
from bot.settings import namespace_for
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1", tags=["accounts"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class MeOut(BaseModel):
    username: str
    display_name: str
    role: Literal["admin", "worker", "viewer"]
    worker_id: str | None = Field(description="The grid worker a worker account acts as.")
    worker_role: str | None = Field(description="worker, or lead (community lead: every grid of the community).")
    grids: list[str] = Field(description="Grids whose tickets a worker account sees and acts on; empty for others.")
    auth: Literal["session", "token"]
    csrf_token: str | None = Field(description="Send as X-CSRF-Token with every POST/PUT/DELETE of this session.")


class LoginOut(MeOut):
    expires_at: datetime


def _me(principal: Principal, csrf_token: str | None) -> dict[str, object]:
    return {
        "username": principal.username,
        "display_name": principal.display_name,
        "role": principal.role.value,
        "worker_id": principal.worker_id,
        "worker_role": principal.worker_role,
        "grids": sorted(principal.grid_codes),
        "auth": principal.via,
        "csrf_token": csrf_token,
    }


def login_limiter(request: Request, services: Services) -> LoginLimiter:
    """One limiter per app, made at the first login (Redis-backed when the app has Redis)."""
    limiter: LoginLimiter | None = getattr(request.app.state, "login_limiter", None)
    if limiter is None:
        settings = services.settings
        limits = LoginLimits(
            settings.auth_login_max_failures, settings.auth_login_max_failures_per_address, settings.auth_login_window_seconds
        )
        limiter = LoginLimiter(limits, services.redis, f"{namespace_for(settings)}:auth")
        request.app.state.login_limiter = limiter
    return limiter


async def _credentials(request: Request) -> LoginIn:
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        raw: object = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        try:
            raw = await request.json()
        except ValueError:
            raise refusal(422, "bad_credentials") from None
    try:
        return LoginIn.model_validate(raw)
    except ValidationError:
        raise refusal(422, "bad_credentials") from None


def _same_site(request: Request) -> bool:
    """A login posted from another site's page (login CSRF) names that site in Origin; browsers always send it."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser, or a browser that does not say (then SameSite=Lax still holds)
        return True
    hosts = {request.headers.get("host", "")}
    if from_trusted_proxy(request):  # anyone else could name any host in it
        hosts.add(request.headers.get("x-forwarded-host", ""))
    return origin != "null" and URL(origin).netloc in hosts


@router.post(
    "/auth/login",
    response_model=LoginOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": LoginIn.model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": LoginIn.model_json_schema()},
            },
        }
    },
    responses={401: {"description": "Wrong username or password"}, 429: {"description": "Too many failed logins"}},
)
async def login(request: Request, response: Response, services: ServicesDep) -> LoginOut:
    """Check the password, start a session (cookie) and return the account and its CSRF token."""
    if not _same_site(request):
        raise refusal(403, "cross_site_login")
    body = await _credentials(request)
    limiter = login_limiter(request, services)
    address = client_address(request)  # the TCP peer, or who a trusted proxy says it is (TRUSTED_PROXIES)
    wait = await limiter.retry_after(body.username, address)
    if wait:
        error = refusal(429, "locked", minutes=math.ceil(wait / 60))
        error.headers = {"Retry-After": str(wait)}
        raise error
    settings = services.settings
    lifetime = timedelta(hours=settings.auth_session_hours)

    def check() -> tuple[str, Principal, datetime] | None:
        with unit_of_work(services.session_factory) as session:
            account = authenticate(session, body.username, body.password)
            if account is None:
                return None
            token, row = start_session(session, account, lifetime, address, request.headers.get("user-agent"))
            return token, principal_of(session, account, "session"), row.expires_at

    found = await run_in_threadpool(check)
    if found is None:
        await limiter.failed(body.username, address)
        raise refusal(401, "bad_credentials")
    await limiter.succeeded(body.username, address)
    token, principal, expires_at = found
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.auth_cookie_secure,
    )
    return LoginOut(**_me(principal, csrf_token_for(token)), expires_at=expires_at)  # type: ignore[arg-type]


@router.post("/auth/logout", status_code=204, response_class=Response)
async def logout(request: Request, services: ServicesDep) -> Response:
    """End this browser's session (needs its CSRF token); an expired or missing session just clears the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:

        def live() -> bool:
            with unit_of_work(services.session_factory) as session:
                return session_principal(session, token) is not None

        if await run_in_threadpool(live):
            if not await csrf_ok(request, token):
                raise refusal(403, "csrf_failed")

            def end() -> None:
                with unit_of_work(services.session_factory) as session:
                    end_session(session, token)

            await run_in_threadpool(end)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=services.settings.auth_cookie_secure)
    return response


@router.get("/me", response_model=MeOut)
def me(principal: AnyAccount, request: Request) -> MeOut:
    """The logged-in account, the grids it works on, and (for a browser session) its CSRF token."""
    cookie = request.cookies.get(SESSION_COOKIE)
    csrf = csrf_token_for(cookie) if principal.via == "session" and cookie else None
    return MeOut(**_me(principal, csrf))  # type: ignore[arg-type]
