"""Knowledge base administration over a real HTTP server and the CLI, on both databases: edits with history and
optimistic locking, import/export round trips in YAML, CSV and XLSX, every bad row reported with nothing
written, junk files refused with a 4xx, and an edit searchable at once without a restart."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openpyxl import Workbook, load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.embedded import app_server, free_port
from bot.settings import Settings
from grid.demo import load_geography
from knowledge.admin import KnowledgeAdmin
from knowledge.formats import COLUMNS, MAX_FILE_BYTES, Format
from knowledge.models import KnowledgeEntry
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade
from tests.accounts import role_headers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "adm-"


@pytest.fixture(scope="module")
def live(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[str]:
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port())
    with app_server(settings) as url:
        yield url
    # Leave the shared database as the other modules expect it: only the demo entries.
    with unit_of_work(session_factory) as session:
        admin = KnowledgeAdmin(session)
        for entry in session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.external_id.startswith(PREFIX))).all():
            admin.delete(entry.id, "test-cleanup")


Editor = Callable[[str], httpx.Client]


@pytest.fixture(scope="module")
def editor(live: str, session_factory: sessionmaker[Session]) -> Iterator[Editor]:
    """A client logged in as an admin with this display name: the name the entries' history records."""
    clients: dict[str, httpx.Client] = {}

    def client(name: str) -> httpx.Client:
        if name not in clients:
            headers = role_headers(session_factory, "admin", name=name)
            clients[name] = httpx.Client(base_url=live, timeout=60, headers=headers)
        return clients[name]

    yield client
    for open_client in clients.values():
        open_client.close()


@pytest.fixture(scope="module")
def api(editor: Editor) -> httpx.Client:
    return editor("导入员")


def _uid(name: str) -> str:
    return f"{PREFIX}{name}-{uuid.uuid4().hex[:6]}"


def _entry(external_id: str, **changes: Any) -> dict[str, Any]:
    """An entry in the API's (and YAML's) shape."""
    entry: dict[str, Any] = {
        "external_id": external_id,
        "title": "社区图书角开放时间",
        "questions": ["图书角几点开门", "社区能借书吗"],
        "answer": "社区图书角每周二至周日9:00–17:00开放，凭身份证可免费借阅。",
        "source": {
            "document": "《社区图书角管理办法》",
            "office": "示范区文旅局",
            "url": "https://example.gov.cn/wl/tsj",
            "date": "2025-05-01",
        },
        "scope": "district",
        "scope_code": "demo-district",
        "tags": ["文化"],
        "effective_from": "2025-05-01",
        "expires_on": None,
    }
    entry.update(changes)
    return entry


def _flat(entry: dict[str, Any]) -> dict[str, Any]:
    """The API shape → one CSV/XLSX row (values as a person would type them)."""
    row = {key: value for key, value in entry.items() if key != "source"}
    row.update({f"source_{key}": value for key, value in entry["source"].items()})
    row["questions"] = "|".join(entry["questions"])
    row["tags"] = "|".join(entry["tags"])
    return {key: "" if value is None else value for key, value in row.items()}


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS, bom: bool = True) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([[row.get(c, "") for c in columns] for row in rows])
    return (("\ufeff" if bom else "") + out.getvalue()).encode("utf-8")


def _xlsx(rows: list[list[Any]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _file(entries: list[dict[str, Any]], fmt: Format) -> tuple[str, bytes]:
    match fmt:
        case Format.YAML:
            return "entries.yml", yaml.safe_dump({"entries": entries}, allow_unicode=True).encode("utf-8")
        case Format.CSV:
            return "entries.csv", _csv([_flat(e) for e in entries])
        case Format.XLSX:
            return "entries.xlsx", _xlsx([list(COLUMNS), *[[_flat(e)[c] for c in COLUMNS] for e in entries]])


def _import(api: httpx.Client, name: str, content: bytes, **params: Any) -> httpx.Response:
    return api.post("/api/v1/knowledge/import", params=params, files={"file": (name, content)})


def _export(api: httpx.Client, fmt: Format) -> bytes:
    response = api.get("/api/v1/knowledge/export", params={"format": fmt.value})
    assert response.status_code == 200, response.text
    return response.content


def _by_external_id(api: httpx.Client, external_id: str) -> dict[str, Any] | None:
    items = api.get("/api/v1/knowledge/entries", params={"limit": 500}).json()["items"]
    return next((item for item in items if item["external_id"] == external_id), None)


def _xlsx_rows(content: bytes) -> list[tuple[Any, ...]]:
    return list(load_workbook(io.BytesIO(content)).worksheets[0].iter_rows(values_only=True))


# ---------------------------------------------------------------- round trips and re-imports


@pytest.mark.parametrize("fmt", list(Format))
def test_export_then_import_changes_nothing(api: httpx.Client, fmt: Format) -> None:
    exported = _export(api, fmt)
    total = api.get("/api/v1/knowledge/entries", params={"limit": 1}).json()["total"]
    assert total >= 20
    result = _import(api, f"kb{'.yml' if fmt is Format.YAML else '.' + fmt.value}", exported)
    assert result.status_code == 200, result.text
    assert result.json() | {"created_ids": [], "updated_ids": []} == {
        "dry_run": False,
        "created": 0,
        "updated": 0,
        "unchanged": total,
        "created_ids": [],
        "updated_ids": [],
    }
    again = _export(api, fmt)
    if fmt is Format.XLSX:  # the zip carries timestamps; the cells must match
        assert _xlsx_rows(again) == _xlsx_rows(exported)
    else:
        assert again == exported


def test_export_headers_and_content_types(api: httpx.Client) -> None:
    for fmt, media in ((Format.YAML, "application/yaml"), (Format.CSV, "text/csv"), (Format.XLSX, "spreadsheetml")):
        response = api.get("/api/v1/knowledge/export", params={"format": fmt.value})
        assert media in response.headers["content-type"]
        assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert _export(api, Format.CSV).startswith("\ufeffexternal_id,title,questions,answer".encode())
    assert api.get("/api/v1/knowledge/export", params={"format": "pdf"}).status_code == 422
    assert "/api/v1/knowledge/import" in api.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("fmt", list(Format))
def test_export_rebuilds_every_field_in_an_empty_database(api: httpx.Client, fmt: Format, tmp_path: Path) -> None:
    """Import the export into a database with only the regions: exporting that gives the same file."""
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            load_geography(session)
            report = KnowledgeAdmin(session).import_file(_export(api, fmt), fmt, "copy")
            assert report.updated == [] and report.unchanged == [] and len(report.created) >= 20
        with unit_of_work(make_session_factory(engine)) as session:
            assert KnowledgeAdmin(session).export(Format.YAML) == _export(api, Format.YAML)
    finally:
        engine.dispose()


@pytest.mark.parametrize("fmt", list(Format))
def test_reimport_changes_nothing_and_edits_are_counted(api: httpx.Client, editor: Editor, fmt: Format) -> None:
    entries = [_entry(_uid("reimport"), title=f"社区图书角开放时间{i}") for i in range(3)]
    name, content = _file(entries, fmt)
    first = _import(api, name, content).json()
    assert (first["created"], first["updated"], first["unchanged"]) == (3, 0, 0)
    versions = {e["external_id"]: _by_external_id(api, e["external_id"])["version"] for e in entries}  # type: ignore[index]

    again = _import(api, name, content).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    for external_id, version in versions.items():
        stored = _by_external_id(api, external_id)
        assert stored is not None and stored["version"] == version
        assert len(api.get(f"/api/v1/knowledge/entries/{stored['id']}/history").json()) == 1

    entries[1]["answer"] += "节假日闭馆。"
    name, edited = _file(entries, fmt)
    dry = _import(api, name, edited, dry_run="true").json()
    assert (dry["dry_run"], dry["updated"], dry["unchanged"], dry["updated_ids"]) == (True, 1, 2, [entries[1]["external_id"]])
    assert _by_external_id(api, entries[1]["external_id"])["version"] == versions[entries[1]["external_id"]]  # type: ignore[index]

    real = _import(editor("王管理员"), name, edited).json()
    assert (real["created"], real["updated"], real["unchanged"]) == (0, 1, 2)
    stored = _by_external_id(api, entries[1]["external_id"])
    assert stored is not None and stored["version"] == versions[entries[1]["external_id"]] + 1
    assert stored["updated_by"] == "王管理员" and stored["answer"].endswith("节假日闭馆。")


# ---------------------------------------------------------------- bad rows


def _bad_rows(good: str) -> list[dict[str, Any]]:
    """A good entry, then one mistake per entry (the expected field and a word of the reason in `expect`)."""
    return [
        _entry(good),
        _entry(_uid("no-title"), title=""),
        _entry(_uid("bad-date"), effective_from="2025-13-40"),
        _entry(_uid("bad-url"), source={"document": "《文件》", "office": None, "url": "not a url", "date": None}),
        _entry(_uid("bad-scope"), scope="city"),
        _entry(_uid("no-region"), scope_code="atlantis"),
        _entry(good, title="同一个编号又出现了"),
        _entry(_uid("backwards"), effective_from="2026-06-01", expires_on="2026-01-01"),
    ]


_EXPECTED = [  # (offset from the first entry's row, field as CSV names it, a word of the reason)
    (1, "title", "required"),
    (2, "effective_from", "2025-13-40"),
    (3, "source_url", "URL"),
    (4, "scope", "unknown scope"),
    (5, "scope_code", "not a region"),
    (6, "external_id", "duplicate"),
    (7, "expires_on", "before"),
]


@pytest.mark.parametrize("fmt", list(Format))
def test_every_bad_row_is_reported_and_nothing_is_written(api: httpx.Client, fmt: Format) -> None:
    good = _uid("good")
    before = api.get("/api/v1/knowledge/entries", params={"limit": 1}).json()["total"]
    name, content = _file(_bad_rows(good), fmt)

    response = _import(api, name, content)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "invalid_rows" and "nothing was written" in detail["message"]
    first_row = 1 if fmt is Format.YAML else 2  # YAML: position; CSV/XLSX: the header is row 1
    found = {(e["row"], e["field"]): e["reason"] for e in detail["errors"]}
    for offset, field, word in _EXPECTED:
        name_in_file = field.replace("source_", "source.") if fmt is Format.YAML else field
        key = (first_row + offset, name_in_file)
        assert key in found, (key, found)
        assert word in found[key], (key, found[key])
    assert {row for row, _ in found} == {first_row + offset for offset, _, _ in _EXPECTED}
    assert api.get("/api/v1/knowledge/entries", params={"limit": 1}).json()["total"] == before
    assert _by_external_id(api, good) is None


def test_misspelt_yaml_field_is_reported_not_ignored(api: httpx.Client) -> None:
    entry = _entry(_uid("typo")) | {"external_id": 12345, "expire_on": "2027-01-01"}  # a number id is fine
    response = _import(api, "typo.yml", yaml.safe_dump({"entries": [_entry(_uid("fine")), entry]}, allow_unicode=True).encode())
    assert response.status_code == 422
    assert response.json()["detail"]["errors"] == [{"row": 2, "field": "expire_on", "reason": "unknown field"}]


def test_cli_import_reports_rows_and_round_trips(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}

    def gridbot(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bot.cli", *args]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)

    bad = tmp_path / "bad.csv"
    bad.write_bytes(_file(_bad_rows(_uid("good")), Format.CSV)[1])
    result = gridbot("kb", "import", str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "row 3, title: required" in out and "row 7, scope_code:" in out and "nothing was written" in out

    exported = tmp_path / "kb.xlsx"
    assert gridbot("kb", "export", str(exported)).returncode == 0
    dry = gridbot("kb", "import", str(exported), "--dry-run", "--updated-by", "张三")
    assert dry.returncode == 0 and "would create 0, would update 0, unchanged" in dry.stdout, dry.stdout + dry.stderr
    yml = tmp_path / "kb.txt"
    assert gridbot("kb", "export", str(yml), "--format", "yaml").returncode == 0
    assert yml.read_text(encoding="utf-8").startswith("# GridBot knowledge base")
    unknown = gridbot("kb", "import", str(yml))
    assert unknown.returncode == 1 and ".yml, .csv or .xlsx" in " ".join(unknown.stdout.split())


# ---------------------------------------------------------------- files people make by hand, and junk


def test_hand_made_workbook_with_date_cells_and_numbers(api: httpx.Client) -> None:
    """Excel users type dates as date cells, ids as numbers, put columns in their own order and leave gaps."""
    external_id = str(900000 + uuid.uuid4().int % 99999)
    columns = ["title", "external_id", "answer", "source_document", "scope_code", "effective_from", "tags", "questions"]
    rows = [
        columns,
        [
            "老年助餐点在哪里",
            int(external_id),
            "各社区老年助餐点午餐每份12元，80岁以上8元。",
            "《助餐点名单》",
            "demo-district",
            datetime(2025, 9, 1),
            "养老| 助餐 ",
            "助餐点在哪|老人食堂几点开饭|",
        ],
        [None] * len(columns),
    ]
    response = _import(api, "手工表格.xlsx", _xlsx(rows))
    assert response.status_code == 200, response.text
    assert response.json()["created_ids"] == [external_id]
    stored = _by_external_id(api, external_id)
    assert stored is not None
    assert stored["effective_from"] == "2025-09-01" and stored["tags"] == ["养老", "助餐"]
    assert stored["questions"] == ["助餐点在哪", "老人食堂几点开饭"] and stored["scope"] == "district"
    assert _import(api, "手工表格.xlsx", _xlsx(rows)).json()["unchanged"] == 1
    # A CSV without the BOM reads the same.
    row = _flat(_entry(external_id, title="老年助餐点在哪里")) | {
        "answer": "各社区老年助餐点午餐每份12元，80岁以上8元。",
        "source_document": "《助餐点名单》",
        "source_office": "",
        "source_url": "",
        "source_date": "",
        "effective_from": "2025/9/1",
        "tags": "养老|助餐",
        "questions": "助餐点在哪|老人食堂几点开饭",
    }
    assert _import(api, "plain.csv", _csv([row], bom=False)).json()["unchanged"] == 1


def _zip_without_workbook() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "status", "code"),
    [
        ("junk.xlsx", os.urandom(4096), 415, "wrong_media_type"),
        ("photo.xlsx", b"\x89PNG\r\n\x1a\n" + os.urandom(512), 415, "wrong_media_type"),
        ("archive.xlsx", _zip_without_workbook(), 422, "unreadable_file"),
        ("junk.csv", os.urandom(4096), 422, "unreadable_file"),
        ("gbk.csv", "external_id,title\n编号,标题\n".encode("gbk"), 422, "unreadable_file"),
        ("nul.csv", b"external_id,title\x00\n", 422, "unreadable_file"),
        ("columns.csv", b"id,name,text\n1,a,b\n", 422, "wrong_columns"),
        ("semicolons.csv", ";".join(COLUMNS).encode(), 422, "wrong_columns"),
        ("empty.csv", b"", 422, "wrong_columns"),
        ("broken.yml", b"entries: [\n  - {title: ", 422, "unreadable_file"),
        ("scalar.yml", b"just some text\n", 422, "wrong_structure"),
        ("bomb.yml", b"a: &a [x, x]\nb: &b [*a, *a]\nentries: [*b]\n", 422, "unreadable_file"),
        ("notes.txt", b"external_id,title\n", 415, "unsupported_format"),
        ("old.xls", b"\xd0\xcf\x11\xe0" + os.urandom(512), 415, "unsupported_format"),
        ("huge.csv", b"x" * (MAX_FILE_BYTES + 1), 413, "file_too_large"),
    ],
)
def test_junk_files_are_refused_with_a_reason(api: httpx.Client, name: str, content: bytes, status: int, code: str) -> None:
    before = api.get("/api/v1/knowledge/entries", params={"limit": 1}).json()["total"]
    response = _import(api, name, content)
    assert response.status_code == status, response.text
    assert response.json()["detail"]["code"] == code
    assert response.json()["detail"]["message"]
    assert api.get("/api/v1/knowledge/entries", params={"limit": 1}).json()["total"] == before


def test_uploads_are_checked_against_their_declared_type_and_first_bytes(api: httpx.Client) -> None:
    """A file must be what its name says: a declared image or HTML page, or a workbook renamed .csv, is 415."""
    url = "/api/v1/knowledge/import"
    good_csv = _csv([_flat(_entry(_uid("typed")))])
    before = api.get("/api/v1/knowledge/entries", params={"limit": 1}).json()["total"]
    for declared in ("image/png", "text/html", "application/pdf"):
        refused = api.post(url, files={"file": ("entries.csv", good_csv, declared)}, data={"dry_run": "true"})
        assert refused.status_code == 415, refused.text
        assert refused.json()["detail"]["code"] == "wrong_media_type" and declared in refused.json()["detail"]["message"]
    workbook = _xlsx([list(COLUMNS)])
    renamed = api.post(url, files={"file": ("entries.csv", workbook, "text/csv")})
    assert renamed.status_code == 415 and renamed.json()["detail"]["code"] == "wrong_media_type"
    # What browsers and scripts really send for these files is accepted.
    for name, content, declared in (
        ("entries.csv", good_csv, "application/vnd.ms-excel"),  # Windows browsers' type for .csv
        ("entries.csv", good_csv, "application/octet-stream"),
        ("entries.xlsx", workbook, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ):
        accepted = api.post(url, files={"file": (name, content, declared)}, data={"dry_run": "true"})
        assert accepted.status_code == 200, (declared, accepted.text)
    assert api.get("/api/v1/knowledge/entries", params={"limit": 1}).json()["total"] == before


def test_malformed_upload_requests(api: httpx.Client) -> None:
    url = "/api/v1/knowledge/import"
    assert api.post(url, json={"file": "x"}).status_code == 415
    no_file = api.post(url, data={"dry_run": "true"}, files={"other": ("x.csv", b"a")})
    assert no_file.status_code == 422 and no_file.json()["detail"]["code"] == "file_missing"
    garbled = api.post(url, content=b"--xyz\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert 400 <= garbled.status_code < 500
    anonymous = httpx.post(f"{api.base_url}{url}", files={"file": ("a.csv", _csv([]))}, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["detail"]["code"] == "not_logged_in"
    form_fields = api.post(url, data={"dry_run": "true"}, files={"file": ("a.csv", _csv([]))})
    assert form_fields.status_code == 200 and form_fields.json()["dry_run"] is True


# ---------------------------------------------------------------- single entries, history, conflicts


def test_edit_history_through_create_update_and_delete(api: httpx.Client, editor: Editor) -> None:
    external_id = _uid("history")
    created = editor("李管理员").post("/api/v1/knowledge/entries", json=_entry(external_id))
    assert created.status_code == 201, created.text
    entry = created.json()
    assert (entry["version"], entry["updated_by"], entry["changed"]) == (1, "李管理员", True)
    entry_id = entry["id"]
    url = f"/api/v1/knowledge/entries/{entry_id}"

    same = editor("赵管理员").put(url, json=_entry(external_id) | {"version": 1}).json()
    assert (same["changed"], same["version"], same["updated_by"]) == (False, 1, "李管理员")
    assert len(api.get(f"{url}/history").json()) == 1

    edited = _entry(external_id, answer="社区图书角每周二至周日9:00–18:00开放。", tags=["文化", "阅读"])
    saved = editor("赵管理员").put(url, json=edited | {"version": 1})
    assert saved.status_code == 200, saved.text
    assert (saved.json()["changed"], saved.json()["version"], saved.json()["updated_by"]) == (True, 2, "赵管理员")
    assert api.get(url).json()["answer"] == "社区图书角每周二至周日9:00–18:00开放。"

    deleted = editor("钱管理员").delete(url, params={"version": 2})
    assert deleted.status_code == 200 and deleted.json()["change"] == "deleted"
    assert api.get(url).status_code == 404

    history = api.get(f"{url}/history").json()
    assert [(r["change"], r["version"], r["updated_by"]) for r in history] == [
        ("created", 1, "李管理员"),
        ("updated", 2, "赵管理员"),
        ("deleted", 3, "钱管理员"),
    ]
    assert all(r["external_id"] == external_id and r["entry_id"] == entry_id for r in history)
    assert history[0]["snapshot"]["answer"] == _entry(external_id)["answer"]
    assert history[1]["snapshot"]["tags"] == ["文化", "阅读"] and history[1]["snapshot"]["source"]["date"] == "2025-05-01"
    assert history[2]["snapshot"] == history[1]["snapshot"]  # what was deleted

    # Re-created under the same external_id, it continues the history.
    again = editor("李管理员").post("/api/v1/knowledge/entries", json=_entry(external_id)).json()
    assert again["version"] == 4
    assert [r["change"] for r in api.get(f"/api/v1/knowledge/entries/{again['id']}/history").json()] == [
        "created",
        "updated",
        "deleted",
        "created",
    ]


def test_stale_version_is_a_conflict(api: httpx.Client, editor: Editor) -> None:
    external_id = _uid("stale")
    first_admin, second_admin = editor("甲"), editor("乙")
    entry_id = first_admin.post("/api/v1/knowledge/entries", json=_entry(external_id)).json()["id"]
    url = f"/api/v1/knowledge/entries/{entry_id}"
    first = first_admin.put(url, json=_entry(external_id, title="甲改的标题") | {"version": 1})
    assert first.status_code == 200 and first.json()["version"] == 2

    second = second_admin.put(url, json=_entry(external_id, title="乙改的标题") | {"version": 1})
    assert second.status_code == 409
    assert second.json()["detail"]["code"] == "version_conflict" and "version 1" in second.json()["detail"]["message"]
    assert api.get(url).json()["title"] == "甲改的标题"
    assert second_admin.delete(url, params={"version": 1}).status_code == 409
    assert len(api.get(f"{url}/history").json()) == 2
    assert first_admin.delete(url, params={"version": 2}).status_code == 200


def test_refusals_for_single_entries(api: httpx.Client) -> None:
    external_id = _uid("refusals")
    post = api.post
    assert post("/api/v1/knowledge/entries", json=_entry(external_id)).status_code == 201
    taken = post("/api/v1/knowledge/entries", json=_entry(external_id))
    assert taken.status_code == 409 and taken.json()["detail"]["code"] == "external_id_taken"
    nowhere = post("/api/v1/knowledge/entries", json=_entry(_uid("nowhere"), scope_code="atlantis"))
    assert nowhere.status_code == 422
    assert nowhere.json()["detail"]["errors"] == [
        {"row": None, "field": "scope_code", "reason": "'atlantis' is not a region in the database"}
    ]
    wrong_level = post("/api/v1/knowledge/entries", json=_entry(_uid("level"), scope="street"))
    assert wrong_level.status_code == 422 and wrong_level.json()["detail"]["errors"][0]["field"] == "scope"
    assert post("/api/v1/knowledge/entries", json=_entry(_uid("x"), effective_from="soon")).status_code == 422
    claimed = post("/api/v1/knowledge/entries", json=_entry(_uid("x")) | {"updated_by": "someone else"})
    assert claimed.status_code == 422  # the editor is the account, not a name in the body
    piped = post("/api/v1/knowledge/entries", json=_entry(_uid("x"), questions=["图书角|阅览室"]))
    assert piped.status_code == 422 and "separates" in piped.text  # '|' separates questions in CSV and XLSX
    entry_id = _by_external_id(api, external_id)["id"]  # type: ignore[index]
    renamed = api.put(f"/api/v1/knowledge/entries/{entry_id}", json=_entry("another-id") | {"version": 1})
    assert renamed.status_code == 422 and renamed.json()["detail"]["code"] == "external_id_immutable"
    assert api.get("/api/v1/knowledge/entries/999999").status_code == 404
    assert api.get("/api/v1/knowledge/entries/999999/history").status_code == 404
    missing = api.put("/api/v1/knowledge/entries/999999", json=_entry(external_id) | {"version": 1})
    assert missing.status_code == 404 and missing.json()["detail"]["code"] == "entry_not_found"


def test_list_filters_on_title_and_pages(api: httpx.Client) -> None:
    page = api.get("/api/v1/knowledge/entries", params={"q": "高龄", "limit": 5}).json()
    assert page["total"] >= 1 and all("高龄" in item["title"] for item in page["items"])
    everything = api.get("/api/v1/knowledge/entries", params={"limit": 500}).json()
    second = api.get("/api/v1/knowledge/entries", params={"limit": 3, "offset": 3}).json()
    assert [i["id"] for i in second["items"]] == [i["id"] for i in everything["items"][3:6]]
    percent = api.get("/api/v1/knowledge/entries", params={"q": "%", "limit": 500}).json()  # literal, not a wildcard
    assert percent["total"] < everything["total"] and all("%" in item["title"] for item in percent["items"])
    assert api.get("/api/v1/knowledge/entries", params={"limit": 0}).status_code == 422


# ---------------------------------------------------------------- live search


def _search(api: httpx.Client, query: str) -> dict[str, Any]:
    response = api.post("/api/v1/knowledge/search", json={"query": query, "top_k": 3})
    assert response.status_code == 200, response.text
    return response.json()


def test_edited_entry_is_searchable_at_once(api: httpx.Client) -> None:
    """The running app sees creates, edits and deletes at the next search, without a restart."""
    external_id = _uid("search")
    moon = _entry(
        external_id,
        title="月球车停车证怎么办理",
        questions=["月球车停车证在哪里办", "月球车能停小区里吗"],
        answer="月球车停车证请到示范区航天服务窗口办理。",
        tags=["航天"],
        effective_from=None,
    )
    entry = api.post("/api/v1/knowledge/entries", json=moon).json()
    assert _search(api, "月球车停车证在哪里办")["hits"][0]["external_id"] == external_id

    mars = moon | {
        "title": "火星基地参观预约",
        "questions": ["火星基地怎么预约参观"],
        "answer": "火星基地参观请在航天小程序预约。",
    }
    saved = api.put(f"/api/v1/knowledge/entries/{entry['id']}", json=mars | {"version": 1})
    assert saved.status_code == 200, saved.text
    found = _search(api, "火星基地怎么预约参观")
    assert found["hits"][0]["external_id"] == external_id and found["hits"][0]["title"] == "火星基地参观预约"
    old = _search(api, "月球车停车证在哪里办")
    assert not (old["answered"] and old["hits"][0]["external_id"] == external_id)

    assert api.delete(f"/api/v1/knowledge/entries/{entry['id']}").status_code == 200
    gone = _search(api, "火星基地怎么预约参观")
    assert external_id not in [hit["external_id"] for hit in gone["hits"]]


def test_imported_entry_is_searchable_at_once(api: httpx.Client) -> None:
    external_id = _uid("import-search")
    entry = _entry(
        external_id, title="土星环观测证", questions=["土星环观测证怎么申请"], answer="土星环观测证在天文服务窗口申请。"
    )
    assert _import(api, *_file([entry], Format.CSV)).json()["created"] == 1
    assert _search(api, "土星环观测证怎么申请")["hits"][0]["external_id"] == external_id


def test_history_survives_in_the_database_without_the_entry(session_factory: sessionmaker[Session]) -> None:
    """The domain use cases directly: a deleted entry's revisions stay, and `date` values are kept as ISO text."""
    from knowledge.entries import EntryIn
    from knowledge.history import KnowledgeEntryRevision

    external_id = _uid("domain")
    with unit_of_work(session_factory) as session:
        entry = KnowledgeAdmin(session).create(EntryIn.model_validate(_entry(external_id)), "domain")
        entry_id = entry.id
    with unit_of_work(session_factory) as session:
        KnowledgeAdmin(session).delete(entry_id, "domain")
    with unit_of_work(session_factory) as session:
        assert session.get(KnowledgeEntry, entry_id) is None
        revisions = session.scalars(select(KnowledgeEntryRevision).where(KnowledgeEntryRevision.external_id == external_id)).all()
        assert [r.change for r in revisions] == ["created", "deleted"]
        assert revisions[0].snapshot["effective_from"] == date(2025, 5, 1).isoformat()


def test_two_admins_saving_the_same_version_end_with_one_edit(session_factory: sessionmaker[Session]) -> None:
    """Both read version 1 before either saves: the conditional UPDATE lets exactly one of them through."""
    from knowledge.admin import AdminError
    from knowledge.entries import EntryIn

    external_id = _uid("race")
    with unit_of_work(session_factory) as session:
        entry_id = KnowledgeAdmin(session).create(EntryIn.model_validate(_entry(external_id)), "setup").id
    first, second = session_factory(), session_factory()
    try:
        assert first.get(KnowledgeEntry, entry_id).version == second.get(KnowledgeEntry, entry_id).version == 1  # type: ignore[union-attr]
        KnowledgeAdmin(first).update(entry_id, EntryIn.model_validate(_entry(external_id, title="甲的修改")), 1, "甲")
        first.commit()
        with pytest.raises(AdminError) as refused:
            KnowledgeAdmin(second).update(entry_id, EntryIn.model_validate(_entry(external_id, title="乙的修改")), 1, "乙")
        assert refused.value.code == "version_conflict"
        second.rollback()
    finally:
        first.close()
        second.close()
    with unit_of_work(session_factory) as session:
        stored = session.get(KnowledgeEntry, entry_id)
        assert stored is not None and (stored.title, stored.version, stored.updated_by) == ("甲的修改", 2, "甲")
        KnowledgeAdmin(session).delete(entry_id, "cleanup")
