"""Knowledge base administration over REST: entries, their edit history, and file import/export.

Refusals carry a code and a reason, as the ticket API's do: 404 unknown entry, 409 when the entry was changed
by someone else since the version the caller edited (or the external_id is taken), 413 for a file over the
size limit, 415 for a format that is not YAML/CSV/XLSX (by the file's name, its declared type, or its first
bytes), 422 for invalid content — with `errors: [{row, field, reason}]` naming every bad row of an import, of which
nothing was written. Every route is for admins; the editor recorded is the logged-in account's display name.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import Message

from bot.api.deps import ServicesDep
from bot.auth.accounts import Principal
from bot.auth.deps import Admin
from bot.runtime import Services
from grid.clock import LOCAL_TZ
from knowledge.admin import AdminError, ImportReport, KnowledgeAdmin
from knowledge.entries import EntryIn, RowError, entry_document
from knowledge.formats import FILE_SUFFIX, MAX_FILE_BYTES, MEDIA_TYPES, FileRejected, Format, format_for
from knowledge.history import KnowledgeEntryRevision
from knowledge.models import KnowledgeEntry
from storage.base import utcnow
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge admin"])

# Multipart framing around the file; anything beyond the file limit plus this is refused while it streams in.
_MULTIPART_SLACK = 64 * 1024
_MAX_BODY = MAX_FILE_BYTES + _MULTIPART_SLACK
# Past this the upload is not even read to the end: the connection is closed after the 413.
_DRAIN_LIMIT = 4 * _MAX_BODY

_STATUS = {
    "entry_not_found": 404,
    "version_conflict": 409,
    "external_id_taken": 409,
    "external_id_immutable": 422,
    "invalid_rows": 422,
    "file_too_large": 413,
    "unsupported_format": 415,
    "multipart_required": 415,
    "wrong_media_type": 415,
}

# What browsers and spreadsheet programs declare for each format; octet-stream and an absent type are accepted for
# any of them (curl, scripts), and CSV is often sent as Excel's type by Windows browsers.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
_DECLARED_TYPES = {
    Format.YAML: {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"},
    Format.CSV: {"text/csv", "application/csv", "text/comma-separated-values", "text/plain", "application/vnd.ms-excel"},
    Format.XLSX: {MEDIA_TYPES[Format.XLSX], "application/zip", "application/x-zip-compressed"},
}
_ZIP_MAGIC = b"PK\x03\x04"


def _editor(principal: Principal) -> str:
    """What the entry's history records as its editor: the account people recognise, not a free-typed name."""
    return principal.display_name or principal.username


class SourceOut(BaseModel):
    document: str
    office: str | None
    url: str | None
    date: date | None


class EntryOut(BaseModel):
    id: int
    external_id: str
    title: str
    questions: list[str]
    answer: str
    source: SourceOut
    scope: str
    scope_code: str
    tags: list[str]
    effective_from: date | None
    expires_on: date | None
    version: int
    updated_by: str
    updated_at: datetime


class SavedEntryOut(EntryOut):
    changed: bool = Field(description="False when the saved content equals what was stored: no new version, no revision.")


class EntryPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[EntryOut]


class EntryUpdate(EntryIn):
    external_id: str | None = Field(default=None, description="Cannot change; may be left out.")  # type: ignore[assignment]
    version: int = Field(ge=1, description="The version this edit was made from; 409 if the entry has moved on since.")


class RevisionOut(BaseModel):
    id: int
    external_id: str
    entry_id: int | None
    version: int
    change: Literal["created", "updated", "deleted"]
    snapshot: dict[str, Any] = Field(description="The entry after the change (for a deletion: what was deleted).")
    updated_by: str
    updated_at: datetime


class RowErrorOut(BaseModel):
    row: int | None
    field: str | None
    reason: str


class ImportOut(BaseModel):
    dry_run: bool
    created: int
    updated: int
    unchanged: int
    created_ids: list[str]
    updated_ids: list[str]


def _refusal(code: str, message: str, errors: list[RowError] | None = None) -> HTTPException:
    detail: dict[str, object] = {"code": code, "message": message}
    if errors is not None:
        detail["errors"] = [RowErrorOut(row=e.row, field=e.field, reason=e.reason).model_dump() for e in errors]
    return HTTPException(_STATUS.get(code, 422), detail=detail)


def _admin_refusal(err: AdminError) -> HTTPException:
    return _refusal(err.code, err.message, err.errors if err.code == "invalid_rows" else None)


def _file_refusal(err: FileRejected) -> HTTPException:
    errors = None if err.code in ("file_too_large", "unsupported_format") else [RowError(None, None, err.message)]
    return _refusal(err.code, err.message, errors)


def _out(entry: KnowledgeEntry, changed: bool | None = None) -> EntryOut:
    values = {
        **entry_document(entry),
        "id": entry.id,
        "version": entry.version,
        "updated_by": entry.updated_by,
        "updated_at": entry.updated_at,
    }
    return EntryOut(**values) if changed is None else SavedEntryOut(**values, changed=changed)


def _revision_out(revision: KnowledgeEntryRevision) -> RevisionOut:
    return RevisionOut.model_validate(revision, from_attributes=True)


@router.get("/entries", response_model=EntryPage)
def list_entries(
    _account: Admin,
    services: ServicesDep,
    q: Annotated[str | None, Query(max_length=256, description="Only entries whose title contains this.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EntryPage:
    with unit_of_work(services.session_factory) as session:
        total, entries = KnowledgeAdmin(session).list_entries(q.strip() if q else None, limit, offset)
        return EntryPage(total=total, limit=limit, offset=offset, items=[_out(e) for e in entries])


@router.get("/entries/{entry_id}", response_model=EntryOut)
def get_entry(entry_id: int, _account: Admin, services: ServicesDep) -> EntryOut:
    try:
        with unit_of_work(services.session_factory) as session:
            return _out(KnowledgeAdmin(session).get(entry_id))
    except AdminError as err:
        raise _admin_refusal(err) from None


@router.post("/entries", response_model=SavedEntryOut, status_code=201)
def create_entry(body: EntryIn, account: Admin, services: ServicesDep) -> EntryOut:
    """A new entry; searchable by the bot at the next question."""
    try:
        with unit_of_work(services.session_factory) as session:
            return _out(KnowledgeAdmin(session).create(body, _editor(account)), changed=True)
    except AdminError as err:
        raise _admin_refusal(err) from None


@router.put("/entries/{entry_id}", response_model=SavedEntryOut)
def update_entry(entry_id: int, body: EntryUpdate, account: Admin, services: ServicesDep) -> EntryOut:
    """Replace the entry's content; `version` is the one the edit started from. Identical content changes nothing."""
    editor = _editor(account)
    try:
        with unit_of_work(services.session_factory) as session:
            admin = KnowledgeAdmin(session)
            current = admin.get(entry_id)
            fields = body.model_dump(exclude={"version"})
            data = EntryIn.model_validate({**fields, "external_id": body.external_id or current.external_id})
            entry, changed = admin.update(entry_id, data, body.version, editor)
            return _out(entry, changed=changed)
    except AdminError as err:
        raise _admin_refusal(err) from None


@router.delete("/entries/{entry_id}", response_model=RevisionOut)
def delete_entry(
    entry_id: int,
    account: Admin,
    services: ServicesDep,
    version: Annotated[int | None, Query(ge=1, description="The version shown when deleting; 409 if it changed.")] = None,
) -> RevisionOut:
    """Delete the entry; its history (with what it said) stays and is returned by /entries/{id}/history."""
    try:
        with unit_of_work(services.session_factory) as session:
            return _revision_out(KnowledgeAdmin(session).delete(entry_id, _editor(account), version))
    except AdminError as err:
        raise _admin_refusal(err) from None


@router.get("/entries/{entry_id}/history", response_model=list[RevisionOut])
def entry_history(entry_id: int, _account: Admin, services: ServicesDep) -> list[RevisionOut]:
    """Every revision of the entry (matched on its external_id), oldest first — also after it was deleted."""
    try:
        with unit_of_work(services.session_factory) as session:
            return [_revision_out(r) for r in KnowledgeAdmin(session).history(entry_id)]
    except AdminError as err:
        raise _admin_refusal(err) from None


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": ".yml/.yaml, .csv or .xlsx"},
                        "dry_run": {"type": "boolean", "description": "Validate and count, write nothing."},
                    },
                }
            }
        },
    }
}


@router.post(
    "/import",
    response_model=ImportOut,
    openapi_extra=_UPLOAD_SCHEMA,
    responses={422: {"description": "Invalid rows (`detail.errors`: row, field, reason) or an unreadable file"}},
)
async def import_file(
    request: Request,
    account: Admin,
    services: ServicesDep,
    dry_run: bool = False,
    format: Annotated[Literal["yaml", "csv", "xlsx"] | None, Query(description="Default: from the file name.")] = None,
) -> ImportOut:
    """Upsert entries by external_id from a file: every row is validated first, then all are written or none."""
    content, filename, declared, fields = await _read_upload(request)
    dry_run = dry_run or fields.get("dry_run", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        fmt = format_for(filename, format)
    except FileRejected as err:
        raise _file_refusal(err) from None
    _check_type(fmt, declared, content)
    report = await run_in_threadpool(_import, services, content, fmt, _editor(account), dry_run)
    return ImportOut(
        dry_run=report.dry_run,
        created=len(report.created),
        updated=len(report.updated),
        unchanged=len(report.unchanged),
        created_ids=report.created,
        updated_ids=report.updated,
    )


def _import(services: Services, content: bytes, fmt: Format, editor: str, dry_run: bool) -> ImportReport:
    try:
        with unit_of_work(services.session_factory) as session:
            return KnowledgeAdmin(session).import_file(content, fmt, editor, dry_run)
    except FileRejected as err:
        raise _file_refusal(err) from None
    except AdminError as err:
        raise _admin_refusal(err) from None


async def _read_upload(request: Request) -> tuple[bytes, str, str, dict[str, str]]:
    """The uploaded file, its name, its declared media type and the other form fields; the body is counted as it
    streams in, so an oversized upload is refused without being held in memory or spooled to disk."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise _refusal("multipart_required", "send the file as multipart/form-data in the field 'file'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _DRAIN_LIMIT:
        raise _too_large()
    body = bytearray()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received <= _MAX_BODY:
                body += chunk
            elif received > _DRAIN_LIMIT:
                break
    except ClientDisconnect:
        raise HTTPException(400, detail={"code": "upload_interrupted", "message": "the upload was interrupted"}) from None
    if received > _MAX_BODY:
        raise _too_large()

    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    except Exception as exc:  # starlette's MultiPartException, and python-multipart's own errors on junk
        raise _refusal("bad_multipart", f"the multipart body cannot be read: {exc}", [RowError(None, None, str(exc))]) from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _refusal("file_missing", "no file in the form field 'file'", [RowError(None, "file", "missing")])
        content = await upload.read()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        declared = (upload.content_type or "").split(";")[0].strip().lower()
        return content, upload.filename or "", declared, fields
    finally:
        await form.close()


def _check_type(fmt: Format, declared: str, content: bytes) -> None:
    """Refuse (415) a file whose declared type or first bytes say it is not the format its name claims — a photo or
    a PDF renamed to .xlsx, a workbook renamed to .csv — before any parser sees it."""
    if declared not in _GENERIC_TYPES and declared not in _DECLARED_TYPES[fmt]:
        message = f"the file is declared as {declared}, not {fmt.value}: upload a .yml, .csv or .xlsx file"
        raise _refusal("wrong_media_type", message)
    if content and (fmt is Format.XLSX) != content.startswith(_ZIP_MAGIC):
        what = "is not an .xlsx workbook" if fmt is Format.XLSX else f"is a binary archive, not {fmt.value} text"
        raise _refusal("wrong_media_type", f"the file {what}: upload a .yml, .csv or .xlsx file that matches its name")


def _too_large() -> HTTPException:
    return _refusal("file_too_large", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")


@router.get("/export", response_class=Response, responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
def export_entries(
    _account: Admin,
    services: ServicesDep,
    format: Annotated[Literal["yaml", "csv", "xlsx"], Query(description="File format.")] = "yaml",
) -> Response:
    """Every entry as a file that `POST /import` (or `gridbot kb import`) reads back without changing anything."""
    fmt = Format(format)
    with unit_of_work(services.session_factory) as session:
        content = KnowledgeAdmin(session).export(fmt)
    name = f"knowledge-{utcnow().astimezone(LOCAL_TZ):%Y%m%d}{FILE_SUFFIX[fmt]}"
    return Response(content, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})
