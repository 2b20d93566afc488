"""An entry as admins write it (YAML, CSV, XLSX, REST), validated and normalised before anything is written.

Normalisation is what makes re-importing a file, or an exported file, change nothing: every value is
stripped, line breaks are `\\n`, URLs are in pydantic's canonical form, and the normalised form validates to
itself. `|` is reserved inside questions and tags because CSV and XLSX cells separate them with it, so
whatever is stored can be exported to any of the three formats and read back unchanged.

This module is the entry schema only and imports nothing else of the knowledge base: the admin use cases with edit
history (and `read_yaml`/`upsert_entries`, which the demo loader uses) live in `knowledge.admin`, the file formats in
`knowledge.formats`, and both build on this.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, HttpUrl, ValidationError, field_validator
from pydantic_core import ErrorDetails

from knowledge.models import KnowledgeEntry

SCOPES = ("district", "street", "community")
SEPARATOR = "|"
# The longest text a spreadsheet cell holds: anything longer could not be exported to XLSX and read back.
MAX_CELL_CHARS = 32767
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")


def _clean(value: object) -> object:
    """Strip text and unify line breaks; control characters are refused (XLSX cannot hold them). A number where
    text is expected (`external_id: 12` in YAML) is taken as its digits."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if _CONTROL.search(text):
        raise ValueError("contains control characters")
    return text


def _blank_to_none(value: object) -> object:
    value = _clean(value)
    return None if value == "" else value


def _date(value: object) -> dt.date | None:
    """ISO dates (also 2025/3/1 and 2025.3.1, as spreadsheets are typed); a spreadsheet date cell arrives as midnight."""
    value = _blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise ValueError(f"a date without a time is expected, not {value.isoformat()}")
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and (match := _DATE.fullmatch(value)):
        try:
            return dt.date(*(int(part) for part in match.groups()))
        except ValueError:
            raise ValueError(f"no such date: {value!r}") from None
    raise ValueError(f"not a date (YYYY-MM-DD): {_show(value)}")


def _phrases(value: object) -> object:
    """Questions and tags: stripped, empty ones dropped, `|` refused (it separates them in CSV and XLSX)."""
    if not isinstance(value, list):
        return value
    cleaned = [_clean(item) for item in value]
    for item in cleaned:
        if isinstance(item, str) and SEPARATOR in item:
            raise ValueError(f"{item!r} contains '{SEPARATOR}', which separates the items in CSV and XLSX")
    phrases = [item for item in cleaned if item != ""]
    if sum(len(p) + 1 for p in phrases if isinstance(p, str)) > MAX_CELL_CHARS:
        raise ValueError(f"longer than {MAX_CELL_CHARS} characters in all")
    return phrases


Text = Annotated[str, BeforeValidator(_clean)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalDate = Annotated[dt.date | None, BeforeValidator(_date)]
Phrases = Annotated[list[Annotated[str, Field(max_length=MAX_CELL_CHARS)]], BeforeValidator(_phrases)]


class SourceIn(BaseModel):
    """Where an answer comes from: residents are told the office, document and date."""

    model_config = ConfigDict(extra="forbid")

    document: Text = Field(min_length=1, max_length=256)
    office: OptionalText = Field(default=None, max_length=128)
    url: Annotated[HttpUrl | None, BeforeValidator(_blank_to_none)] = None
    date: OptionalDate = None

    @field_validator("url")
    @classmethod
    def _fits_column(cls, value: HttpUrl | None) -> HttpUrl | None:
        if value is not None and len(str(value)) > 512:
            raise ValueError("longer than 512 characters")
        return value


class EntryIn(BaseModel):
    """One entry as an admin writes it; unknown fields are refused so a misspelt one is reported, not lost."""

    model_config = ConfigDict(extra="forbid")

    external_id: Text = Field(min_length=1, max_length=128)
    title: Text = Field(min_length=1, max_length=256)
    questions: Phrases = Field(default_factory=list)
    answer: Text = Field(min_length=1, max_length=MAX_CELL_CHARS)
    source: SourceIn
    scope: Text = "district"
    scope_code: Text = Field(min_length=1, max_length=64)
    tags: Phrases = Field(default_factory=list)
    effective_from: OptionalDate = None
    expires_on: OptionalDate = None

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str) -> str:
        if value not in SCOPES:
            raise ValueError(f"unknown scope {value!r}: district, street or community")
        return value

    @field_validator("expires_on")
    @classmethod
    def _after_effective(cls, value: dt.date | None, info: Any) -> dt.date | None:
        start = info.data.get("effective_from")
        if value is not None and start is not None and value < start:
            raise ValueError(f"expires ({value.isoformat()}) before it takes effect ({start.isoformat()})")
        return value

    def columns(self) -> dict[str, Any]:
        """The values of a `KnowledgeEntry`'s editable columns."""
        return {
            "title": self.title,
            "questions": list(self.questions),
            "answer": self.answer,
            "source_document": self.source.document,
            "source_office": self.source.office,
            "source_url": str(self.source.url) if self.source.url else None,
            "source_date": self.source.date,
            "scope_level": self.scope,
            "scope_code": self.scope_code,
            "tags": list(self.tags),
            "effective_from": self.effective_from,
            "expires_on": self.expires_on,
        }


def entry_document(entry: KnowledgeEntry) -> dict[str, Any]:
    """A stored entry in the shape admins write (the YAML shape, dates as dates): what export writes."""
    return {
        "external_id": entry.external_id,
        "title": entry.title,
        "questions": list(entry.questions or []),
        "answer": entry.answer,
        "source": {
            "document": entry.source_document,
            "office": entry.source_office,
            "url": entry.source_url,
            "date": entry.source_date,
        },
        "scope": entry.scope_level,
        "scope_code": entry.scope_code,
        "tags": list(entry.tags or []),
        "effective_from": entry.effective_from,
        "expires_on": entry.expires_on,
    }


def entry_snapshot(entry: KnowledgeEntry) -> dict[str, Any]:
    """`entry_document` with ISO dates, for a revision's JSON column."""
    document = entry_document(entry)
    document["source"] = {key: _iso(value) for key, value in document["source"].items()}
    return {key: _iso(value) for key, value in document.items()}


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value


@dataclass(frozen=True)
class RowError:
    """One reason a row (1-based position; spreadsheet numbering for CSV/XLSX) cannot be imported."""

    row: int | None
    field: str | None
    reason: str


def validate_entry(data: object, row: int | None, flat: bool) -> EntryIn | list[RowError]:
    """The entry, or every reason it is invalid; `flat` names fields as CSV/XLSX columns (source_url, not source.url)."""
    if not isinstance(data, dict):
        return [RowError(row, None, "not a mapping of field names to values")]
    try:
        return EntryIn.model_validate(data)
    except ValidationError as exc:
        return [RowError(row, _field(error["loc"], flat), _reason(error)) for error in exc.errors()]


def _field(loc: tuple[int | str, ...], flat: bool) -> str | None:
    names = [str(part) for part in loc if not isinstance(part, int)]
    if not names:
        return None
    return "_".join(names[:2]) if flat else ".".join(names)


def _reason(error: ErrorDetails) -> str:
    ctx = error.get("ctx") or {}
    match error["type"]:
        case "missing":
            return "required, but missing or empty"
        case "string_too_short" | "too_short":
            return "required, but empty"
        case "string_too_long":
            return f"longer than {ctx.get('max_length')} characters"
        case "extra_forbidden":
            return "unknown field"
        case "value_error":
            return str(ctx.get("error", error["msg"]))
        case kind if kind.startswith("url"):
            return f"not an http(s) URL: {_show(error['input'])}"
        case "list_type":
            return "must be a list"
        case "model_type" | "dict_type":
            return "must be a mapping"
        case "string_type":
            return f"must be text, not {_show(error['input'])}"
    return error["msg"]


def _show(value: object) -> str:
    """A short quote of a bad value; containers are only named (their repr could be huge)."""
    if not isinstance(value, str | int | float | dt.date | None):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

