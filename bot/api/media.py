"""GET /media/<name>: the pictures residents sent in chats (photos on tickets), served from MEDIA_DIR.

Only names the media store writes are served (32 hex digits and a picture extension, so no path can be
smuggled in), only when the file still is the picture type its name says and within the size limit, and with
`nosniff` so a browser never treats one as anything but an image. Names are content hashes: unguessable,
and a file never changes, so it may be cached for good.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from bot.api.deps import ServicesDep
from bot.media_store import MIME_BY_EXTENSION, MediaStore, sniff_image

router = APIRouter(tags=["media"])


def store_for(services: ServicesDep) -> MediaStore:
    settings = services.settings
    return MediaStore(settings.media_dir, settings.media_max_bytes, settings.media_base_url)


@router.get(
    "/media/{name}",
    response_class=FileResponse,
    responses={200: {"content": {mime: {} for mime in sorted(set(MIME_BY_EXTENSION.values()))}}, 404: {}},
)
def get_media(name: str, services: ServicesDep) -> FileResponse:
    """A stored picture by its name."""
    store = store_for(services)
    path = store.path_for(name)
    if path is None or path.stat().st_size > store.max_bytes:
        raise HTTPException(404, "no such picture")
    with path.open("rb") as handle:
        kind = sniff_image(handle.read(16))
    extension = name.rsplit(".", 1)[1]
    if kind is None or kind[0] != extension:
        raise HTTPException(404, "no such picture")
    return FileResponse(
        path,
        media_type=MIME_BY_EXTENSION[extension],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=31536000, immutable"},
    )
