"""Knowledge base files: YAML (the shape of knowledge/data/demo_entries.yml), CSV and XLSX (one entry per row).

Reading is in two steps so an import can report everything at once: the file as a whole must be readable
(`FileRejected`: not UTF-8, not a workbook, wrong columns, too big), then every row is validated on its own
and each bad one is reported with its number and reason (`RowError`). Rows are numbered as a spreadsheet
shows them (the header is row 1, the first entry row 2); YAML entries by their 1-based position.

Writing produces what reading accepts, so export → import changes nothing in any format.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font

from knowledge.entries import SEPARATOR, EntryIn, RowError, validate_entry

COLUMNS = (
    "external_id",
    "title",
    "questions",
    "answer",
    "source_document",
    "source_office",
    "source_url",
    "source_date",
    "scope",
    "scope_code",
    "tags",
    "effective_from",
    "expires_on",
)
REQUIRED_COLUMNS = ("external_id", "title", "answer", "source_document", "scope_code")
_LISTS = ("questions", "tags")
_SOURCE = ("document", "office", "url", "date")

# Limits that keep a bad upload from taking the process down; a real knowledge base is far below them.
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 100_000
MAX_XLSX_UNPACKED_BYTES = 200 * 1024 * 1024


class Format(StrEnum):
    YAML = "yaml"
    CSV = "csv"
    XLSX = "xlsx"


EXTENSIONS = {".yml": Format.YAML, ".yaml": Format.YAML, ".csv": Format.CSV, ".xlsx": Format.XLSX}
MEDIA_TYPES = {
    Format.YAML: "application/yaml; charset=utf-8",
    Format.CSV: "text/csv; charset=utf-8",
    Format.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FILE_SUFFIX = {Format.YAML: ".yml", Format.CSV: ".csv", Format.XLSX: ".xlsx"}


class FileRejected(Exception):
    """The file as a whole cannot be read; `code` is stable for API clients, `message` says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def format_for(name: str | Path, explicit: str | None = None) -> Format:
    """The format named explicitly, else the one the file name's extension says."""
    if explicit:
        try:
            return Format(explicit.lower())
        except ValueError:
            raise FileRejected("unsupported_format", f"unknown format {explicit!r}: yaml, csv or xlsx") from None
    suffix = Path(str(name)).suffix.lower()
    if suffix not in EXTENSIONS:
        if suffix == ".xls":
            raise FileRejected("unsupported_format", "old .xls workbooks are not supported: save it as .xlsx")
        raise FileRejected("unsupported_format", f"cannot tell the format of {Path(str(name)).name!r}: use .yml, .csv or .xlsx")
    return EXTENSIONS[suffix]


def parse_entries(content: bytes, fmt: Format) -> tuple[list[tuple[int, EntryIn]], list[RowError]]:
    """Every valid entry with its row number, and every reason a row is invalid (no database checks here)."""
    if len(content) > MAX_FILE_BYTES:
        raise FileRejected("file_too_large", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    entries: list[tuple[int, EntryIn]] = []
    errors: list[RowError] = []
    flat = fmt is not Format.YAML
    for row, data in _read(content, fmt):
        if isinstance(data, RowError):
            errors.append(data)
            continue
        result = validate_entry(data, row, flat)
        if isinstance(result, EntryIn):
            entries.append((row, result))
        else:
            errors.extend(result)
    return entries, errors


def _read(content: bytes, fmt: Format) -> list[tuple[int, object | RowError]]:
    match fmt:
        case Format.YAML:
            rows = _read_yaml(content)
        case Format.CSV:
            rows = _read_table(_csv_rows(content))
        case Format.XLSX:
            rows = _read_table(_xlsx_rows(content))
    if len(rows) > MAX_ROWS:
        raise FileRejected("too_many_rows", f"more than {MAX_ROWS} entries in one file: split it")
    return rows


# ---------------------------------------------------------------- YAML


# libyaml when present: several times faster on big files.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> object:
    """Anchors and aliases are refused: with merge keys a few lines of them expand into billions of values."""
    if "*" in text and any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=_YamlLoader)):
        raise FileRejected("unreadable_file", "YAML anchors and aliases (&, *) are not supported: write each value out")
    return yaml.load(text, Loader=_YamlLoader)  # a safe loader: plain data only


def _text(content: bytes, what: str) -> str:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        hint = " (from Excel, save as 'CSV UTF-8': plain CSV is in the local code page)" if what == "CSV" else ""
        raise FileRejected("unreadable_file", f"not UTF-8 text: is this really a {what} file?{hint}") from None
    if "\x00" in text:
        raise FileRejected("unreadable_file", f"binary content: is this really a {what} file?")
    return text


def _read_yaml(content: bytes) -> list[tuple[int, object | RowError]]:
    text = _text(content, "YAML")
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise FileRejected("unreadable_file", f"not valid YAML: {' '.join(str(exc).split())}") from None
    if raw is None:
        return []
    items = raw.get("entries") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise FileRejected("wrong_structure", "a YAML knowledge file holds a list of entries under `entries:`")
    return list(enumerate(items, start=1))


def _dump_yaml(documents: Sequence[dict[str, Any]]) -> bytes:
    header = f"# GridBot knowledge base: {len(documents)} entries. Import with `gridbot kb import FILE`.\n"
    body = yaml.dump({"entries": list(documents)}, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1000)
    return (header + body).encode("utf-8")


class _Dumper(yaml.SafeDumper):
    """Indented lists and multi-line answers as `|` blocks, the way admins write them by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str_presenter)


# ---------------------------------------------------------------- CSV and XLSX


def _read_table(rows: Iterator[list[str]]) -> list[tuple[int, object | RowError]]:
    """Rows of cell texts (header first) → entries in the YAML shape; empty rows are skipped but keep their number."""
    header = next(rows, None)
    if header is None or not any(header):
        raise FileRejected("wrong_columns", f"the first row must name the columns: {', '.join(COLUMNS)}")
    names = [cell.strip().lower() for cell in header]
    _check_columns(names)
    result: list[tuple[int, object | RowError]] = []
    for number, cells in enumerate(rows, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        named = list(zip(names, cells, strict=False))
        if any(cell.strip() for cell in cells[len(names) :]) or any(cell.strip() for name, cell in named if not name):
            result.append((number, RowError(number, None, "a value in a column without a name")))
            continue
        result.append((number, _entry_from_cells(dict(named))))
        if len(result) > MAX_ROWS:
            break
    return result


def _check_columns(names: list[str]) -> None:
    present = [name for name in names if name]
    if len(present) == 1 and any(sep in present[0] for sep in (";", "\t")):
        raise FileRejected("wrong_columns", "columns must be separated by commas (the file seems to use ';' or tabs)")
    unknown = [name for name in present if name not in COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    doubled = sorted({name for name in present if present.count(name) > 1})
    problems = []
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)}")
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if doubled:
        problems.append(f"columns given twice: {', '.join(doubled)}")
    if problems:
        raise FileRejected("wrong_columns", f"{'; '.join(problems)} (the columns are: {', '.join(COLUMNS)})")


def _entry_from_cells(cells: dict[str, str]) -> dict[str, Any]:
    """Flat columns → the nested shape `EntryIn` validates; an empty cell counts as not given."""
    data: dict[str, Any] = {}
    source: dict[str, Any] = {}
    for name, value in cells.items():
        if not name:
            continue
        if name in _LISTS:
            data[name] = [part for part in value.split(SEPARATOR)]
        elif name.startswith("source_"):
            if value.strip():
                source[name.removeprefix("source_")] = value
        elif value.strip():
            data[name] = value
    data["source"] = source
    return data


def _cells(document: dict[str, Any]) -> list[Any]:
    """An entry in the YAML shape → one row of cell values in COLUMNS order (dates stay dates)."""
    values = {
        **{key: value for key, value in document.items() if key != "source"},
        **{f"source_{key}": document["source"].get(key) for key in _SOURCE},
    }
    for name in _LISTS:
        values[name] = SEPARATOR.join(values[name] or [])
    return [values[name] for name in COLUMNS]


def _csv_rows(content: bytes) -> Iterator[list[str]]:
    text = _text(content, "CSV")
    try:
        yield from csv.reader(io.StringIO(text, newline=""), strict=True)
    except csv.Error as exc:
        raise FileRejected("unreadable_file", f"not a readable CSV file: {exc}") from None


def _dump_csv(documents: Sequence[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for document in documents:
        writer.writerow(["" if v is None else v.isoformat() if isinstance(v, dt.date) else v for v in _cells(document)])
    # A BOM, so spreadsheet programs open the Chinese text as UTF-8; the reader accepts files with or without.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _xlsx_rows(content: bytes) -> Iterator[list[str]]:
    buffer = io.BytesIO(content)
    if not zipfile.is_zipfile(buffer):
        raise FileRejected("unreadable_file", "not an XLSX workbook (old .xls files are not supported: save as .xlsx)")
    try:
        with zipfile.ZipFile(buffer) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileRejected("unreadable_file", f"not an XLSX workbook: {exc}") from None
    if unpacked > MAX_XLSX_UNPACKED_BYTES:
        raise FileRejected("file_too_large", "the workbook unpacks to more than 200 MB")
    try:
        workbook = load_workbook(buffer, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds (KeyError, ValueError, InvalidFileException…) on junk
        raise FileRejected("unreadable_file", f"not an XLSX workbook: {type(exc).__name__}") from None
    try:
        if not workbook.worksheets:
            raise FileRejected("unreadable_file", "the workbook has no sheet")
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # some programs write a wrong size; read what is there
        for values in sheet.iter_rows(min_row=1, values_only=True):
            yield [_cell_text(value) for value in values]
    except FileRejected:
        raise
    except Exception as exc:
        raise FileRejected("unreadable_file", f"the workbook cannot be read: {type(exc).__name__}") from None
    finally:
        workbook.close()


def _cell_text(value: object) -> str:
    """A cell as text: date cells become ISO dates, whole numbers lose their '.0' (an id typed as 12 is '12')."""
    match value:
        case None:
            return ""
        case dt.datetime() if value.time() == dt.time(0):
            return value.date().isoformat()
        case dt.datetime() | dt.date() | dt.time():
            return value.isoformat()
        case bool():
            return str(value).lower()
        case float() if value.is_integer():
            return str(int(value))
    return str(value)


def _dump_xlsx(documents: Sequence[dict[str, Any]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "entries"
    sheet.append(COLUMNS)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for document in documents:
        sheet.append(_cells(document))
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, dt.date):
                cell.number_format = "yyyy-mm-dd"
            elif isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"  # text that looks like a formula stays text
    for letter, width in zip("ABCDEFGHIJKLM", (24, 30, 40, 60, 30, 20, 30, 12, 10, 18, 20, 12, 12), strict=True):
        sheet.column_dimensions[letter].width = width
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def write_entries(documents: Iterable[dict[str, Any]], fmt: Format) -> bytes:
    """Entries in the YAML shape (see `loader.entry_document`) → the file's bytes."""
    listed = list(documents)
    match fmt:
        case Format.YAML:
            return _dump_yaml(listed)
        case Format.CSV:
            return _dump_csv(listed)
        case Format.XLSX:
            return _dump_xlsx(listed)
