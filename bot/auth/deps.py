"""FastAPI dependencies that say who is calling and whether their role may: every protected route names one.

A request is authenticated by `Authorization: Bearer <API token>` (scripts) or by the session cookie a console
login set. Cookie-authenticated requests that change something (POST, PUT, PATCH, DELETE) must also carry the
session's CSRF token in `X-CSRF-Token` (or, for an HTML form, a `csrf_token` field): a page of another site can
make the browser send the cookie but cannot know the token. Bearer requests need none — browsers never attach
an Authorization header on their own. Refusals: 401 not logged in (or expired), 403 role or CSRF.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from bot.api.deps import ServicesDep
from bot.auth.accounts import Principal, session_principal, token_principal
from bot.auth.models import AccountRole
from bot.auth.secrets import csrf_token_for, same_secret
from bot.runtime import Services
from bot.texts import text
from storage.engine import unit_of_work

SESSION_COOKIE = "gridbot_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="An API token from `gridbot user token USERNAME`.")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="Set by POST /api/v1/auth/login; unsafe methods need X-CSRF-Token."
)


def refusal(status: int, code: str, **params: object) -> HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status, detail={"code": code, "message": text(f"auth.{code}", **params)}, headers=headers)


async def current_principal(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """The caller's account, or 401; a cookie request that changes something without its CSRF token is 403."""
    if bearer is not None:
        principal = await run_in_threadpool(_resolve, services, token_principal, bearer.credentials)
        if principal is None:
            raise refusal(401, "bad_token")
    elif cookie:
        principal = await run_in_threadpool(_resolve, services, session_principal, cookie)
        if principal is None:
            raise refusal(401, "session_expired")
        if request.method not in SAFE_METHODS and not await csrf_ok(request, cookie):
            raise refusal(403, "csrf_failed")
    else:
        raise refusal(401, "not_logged_in")
    request.state.principal = principal
    return principal


def _resolve(services: Services, lookup: Callable[..., Principal | None], token: str) -> Principal | None:
    with unit_of_work(services.session_factory) as session:
        return lookup(session, token)


async def csrf_ok(request: Request, session_token: str) -> bool:
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        field = (await request.form()).get(CSRF_FORM_FIELD)
        given = field if isinstance(field, str) else None
    return given is not None and same_secret(given, csrf_token_for(session_token))


def require(*roles: AccountRole) -> Callable[..., Awaitable[Principal]]:
    """A dependency letting through only accounts of these roles (403 for the others)."""
    allowed = frozenset(roles)

    async def role_check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise refusal(403, "forbidden_role", role=principal.role.value, role_name=text(f"auth.roles.{principal.role.value}"))
        return principal

    return role_check


_ALL = (AccountRole.ADMIN, AccountRole.WORKER, AccountRole.VIEWER)
# Any logged-in account: reading tickets (scoped for workers), stats, notices, hit tests.
AnyAccount = Annotated[Principal, Depends(require(*_ALL))]
# Admins and workers: acting on tickets (a worker on its own grid's).
Staff = Annotated[Principal, Depends(require(AccountRole.ADMIN, AccountRole.WORKER))]
Admin = Annotated[Principal, Depends(require(AccountRole.ADMIN))]
