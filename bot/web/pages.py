"""The console's pages: static HTML and small JavaScript modules that call the REST API as the logged-in account.

No page is rendered with data on the server: each page fetches JSON and builds its DOM with textContent, so a
resident's `<script>` in a ticket stays text. The Content-Security-Policy below backs that up (scripts only from
this app, no inline script), and the pages need no CDN (grid offices may be on an intranet). Pages themselves
are public files; every figure in them comes from the API, which checks the account and its role.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parent / "static" / "console"
PAGES = ("login", "tickets", "knowledge", "notices", "groups", "dashboard", "warnings")
# Photos on tickets are references to any web address (a connector's media URL), so images may come from anywhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console")
@router.get("/console/")
def console_home() -> RedirectResponse:
    """The ticket board is where workers start; a page without a session sends the browser on to the login."""
    return RedirectResponse("/console/tickets", status_code=307)


@router.get("/console/{page}")
def console_page(page: str) -> FileResponse:
    if page not in PAGES:
        raise HTTPException(404, "no such console page")
    return FileResponse(CONSOLE_DIR / f"{page}.html", media_type="text/html; charset=utf-8", headers=HEADERS)


class _Assets(StaticFiles):
    """StaticFiles with the console's headers (nosniff; revalidate, so an update is seen at the next load)."""

    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
        return response


def install(app: FastAPI) -> None:
    """Add the console's pages and its scripts and styles under /console/assets/."""
    app.mount("/console/assets", _Assets(directory=CONSOLE_DIR / "assets"), name="console-assets")
    app.include_router(router)
