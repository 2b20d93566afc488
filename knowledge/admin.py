"""Admin use cases for the knowledge base: create, update, delete, history, import and export.

Every change goes through here so that it keeps a revision (`knowledge.history`) and moves what the
retrieval index watches (count, max(updated_at) and sum(version) of `knowledge_entries`): an edited entry
is searchable at the next question in every app process, without a restart.

Concurrent edits never silently overwrite each other: an update names the version it was made from and is
applied by a conditional UPDATE (`WHERE version = :edited`), so of two admins saving the same entry the
second gets `version_conflict` — also when both read before either wrote. An import validates every row
(shape, dates, URLs, regions, duplicates) before writing any, and then writes all rows or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grid.geography import Region
from knowledge.entries import EntryIn, RowError, entry_document, entry_snapshot
from knowledge.formats import Format, parse_entries, write_entries
from knowledge.history import Change, KnowledgeEntryRevision
from knowledge.models import KnowledgeEntry
from storage.base import utcnow

# Rows looked up per query: SQLite caps bound parameters per statement.
_CHUNK = 500


class AdminError(Exception):
    """A refused admin request; `code` is stable for API clients (not found, conflict, invalid…)."""

    def __init__(self, code: str, message: str, errors: Sequence[RowError] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = list(errors)


class ImportRejected(AdminError):
    """Rows of a file (or one entry) are invalid; every reason is in `errors` and nothing was written."""

    def __init__(self, errors: Sequence[RowError], source: str = "the file") -> None:
        rows = {e.row for e in errors if e.row is not None}
        what = f"{len(rows)} invalid row{'s' if len(rows) != 1 else ''}" if rows else "invalid content"
        super().__init__("invalid_rows", f"{source}: {what}, nothing was written", sorted(errors, key=_order))


def _order(error: RowError) -> tuple[int, str]:
    return (error.row or 0, error.field or "")


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do), by external_id."""

    dry_run: bool = False
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        done = "would create" if self.dry_run else "created"
        updated = "would update" if self.dry_run else "updated"
        return f"{done} {len(self.created)}, {updated} {len(self.updated)}, unchanged {len(self.unchanged)}"


class KnowledgeAdmin:
    """The use cases over one session; the caller's unit of work commits them or rolls them back whole."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # ------------------------------------------------------------------ reading

    def list_entries(self, q: str | None = None, limit: int = 50, offset: int = 0) -> tuple[int, list[KnowledgeEntry]]:
        """Entries whose title contains `q` (case-insensitive), in id order, with the total for paging."""
        query = select(KnowledgeEntry)
        if q:
            query = query.where(KnowledgeEntry.title.icontains(q, autoescape=True))
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = self.session.scalars(query.order_by(KnowledgeEntry.id).limit(limit).offset(offset))
        return total, list(page)

    def get(self, entry_id: int) -> KnowledgeEntry:
        entry = self.session.get(KnowledgeEntry, entry_id)
        if entry is None:
            raise AdminError("entry_not_found", f"no knowledge entry {entry_id}")
        return entry

    def history(self, entry_id: int) -> list[KnowledgeEntryRevision]:
        """Every revision of the entry's external_id, oldest first; also for an entry that has been deleted."""
        entry = self.session.get(KnowledgeEntry, entry_id)
        external_id = (
            entry.external_id
            if entry is not None
            else self.session.scalar(
                select(KnowledgeEntryRevision.external_id)
                .where(KnowledgeEntryRevision.entry_id == entry_id)
                .order_by(KnowledgeEntryRevision.id.desc())
                .limit(1)
            )
        )
        if external_id is None:
            raise AdminError("entry_not_found", f"no knowledge entry {entry_id}, and no history of one")
        query = select(KnowledgeEntryRevision).where(KnowledgeEntryRevision.external_id == external_id)
        return list(self.session.scalars(query.order_by(KnowledgeEntryRevision.id)))

    def export(self, fmt: Format) -> bytes:
        """All entries in external_id order (stable diffs between exports)."""
        entries = self.session.scalars(select(KnowledgeEntry).order_by(KnowledgeEntry.external_id))
        return write_entries((entry_document(e) for e in entries), fmt)

    # ------------------------------------------------------------------ single entries

    def create(self, data: EntryIn, updated_by: str) -> KnowledgeEntry:
        taken = AdminError("external_id_taken", f"an entry with external_id {data.external_id!r} exists already")
        self._validate([(None, data)], source="the entry")
        if self._by_external_id([data.external_id]):
            raise taken
        try:
            return self._insert([data], updated_by)[0]
        except IntegrityError:  # created by someone else between the check and the insert; the caller rolls back
            raise taken from None

    def update(self, entry_id: int, data: EntryIn, edited_version: int, updated_by: str) -> tuple[KnowledgeEntry, bool]:
        """Save an edit made from `edited_version`; returns the entry and whether anything changed."""
        entry = self.get(entry_id)
        if data.external_id != entry.external_id:
            raise AdminError(
                "external_id_immutable",
                f"external_id is {entry.external_id!r} and cannot change (files are matched on it): create a new entry",
            )
        if entry.version != edited_version:
            raise self._conflict(entry, edited_version)
        self._validate([(None, data)], source="the entry")
        return entry, self._apply(entry, data, updated_by)

    def delete(self, entry_id: int, updated_by: str, edited_version: int | None = None) -> KnowledgeEntryRevision:
        """Delete the entry, keeping a revision with what it said; `edited_version` guards against a concurrent edit."""
        entry = self.get(entry_id)
        version = entry.version if edited_version is None else edited_version
        if entry.version != version:
            raise self._conflict(entry, version)
        snapshot = entry_snapshot(entry)
        gone = self.session.execute(
            delete(KnowledgeEntry)
            .where(KnowledgeEntry.id == entry.id, KnowledgeEntry.version == version)
            .execution_options(synchronize_session=False)
        )
        if gone.rowcount != 1:  # type: ignore[attr-defined]
            raise self._conflict(entry, version)
        self.session.expunge(entry)
        return self._revise(entry.external_id, entry.id, version + 1, "deleted", snapshot, updated_by)

    # ------------------------------------------------------------------ files

    def import_file(self, content: bytes, fmt: Format, updated_by: str, dry_run: bool = False) -> ImportReport:
        """Validate every row, then write all of them or none (nothing at all for a dry run)."""
        parsed, errors = parse_entries(content, fmt)
        self._validate(parsed, errors)
        return self.apply([entry for _, entry in parsed], updated_by, dry_run)

    def apply(self, entries: Sequence[EntryIn], updated_by: str, dry_run: bool = False) -> ImportReport:
        """Upsert by external_id without region checks (validated entries, or the demo data)."""
        existing = self._by_external_id([e.external_id for e in entries])
        report = ImportReport(dry_run=dry_run)
        new: dict[str, EntryIn] = {}
        for data in entries:
            entry = existing.get(data.external_id)
            if entry is None:
                report.created.append(data.external_id)
                new[data.external_id] = data  # a later duplicate in the list wins, as it would on a second import
            elif _differs(entry, data):
                report.updated.append(data.external_id)
                if not dry_run:
                    self._apply(entry, data, updated_by)
            else:
                report.unchanged.append(data.external_id)
        if new and not dry_run:
            self._insert(list(new.values()), updated_by)
        return report

    # ------------------------------------------------------------------ internals

    def _validate(
        self, parsed: Sequence[tuple[int | None, EntryIn]], errors: Iterable[RowError] = (), source: str = "the file"
    ) -> None:
        """What a single row cannot know: duplicates in the file, and whether its region exists at that level."""
        errors = list(errors)
        levels = dict(self.session.execute(select(Region.code, Region.level)).all())
        first_row: dict[str, int | None] = {}
        for row, data in parsed:
            if data.external_id in first_row:
                where = f" (first on row {first_row[data.external_id]})" if first_row[data.external_id] else ""
                errors.append(RowError(row, "external_id", f"duplicate external_id {data.external_id!r} in the file{where}"))
            else:
                first_row[data.external_id] = row
            level = levels.get(data.scope_code)
            if level is None:
                errors.append(RowError(row, "scope_code", f"{data.scope_code!r} is not a region in the database"))
            elif level != data.scope:
                errors.append(RowError(row, "scope", f"scope is {data.scope!r} but {data.scope_code!r} is a {level}"))
        if errors:
            raise ImportRejected(errors, source)

    def _by_external_id(self, external_ids: Sequence[str]) -> dict[str, KnowledgeEntry]:
        found: dict[str, KnowledgeEntry] = {}
        for start in range(0, len(external_ids), _CHUNK):
            chunk = external_ids[start : start + _CHUNK]
            for entry in self.session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.external_id.in_(chunk))):
                found[entry.external_id] = entry
        return found

    def _insert(self, entries: Sequence[EntryIn], updated_by: str) -> list[KnowledgeEntry]:
        """Insert in one flush, then one revision each (they need the new ids)."""
        # An entry re-created under a deleted one's external_id continues its version numbers and history.
        previous: dict[str, int] = {}
        ids = [data.external_id for data in entries]
        for start in range(0, len(ids), _CHUNK):
            query = (
                select(KnowledgeEntryRevision.external_id, func.max(KnowledgeEntryRevision.version))
                .where(KnowledgeEntryRevision.external_id.in_(ids[start : start + _CHUNK]))
                .group_by(KnowledgeEntryRevision.external_id)
            )
            previous.update(self.session.execute(query).all())
        now = utcnow()
        created = [
            KnowledgeEntry(
                external_id=data.external_id,
                version=previous.get(data.external_id, 0) + 1,
                updated_by=updated_by,
                updated_at=now,
                **data.columns(),
            )
            for data in entries
        ]
        self.session.add_all(created)
        self.session.flush()
        for entry in created:
            self._revise(entry.external_id, entry.id, entry.version, "created", entry_snapshot(entry), updated_by, flush=False)
        self.session.flush()
        return created

    def _apply(self, entry: KnowledgeEntry, data: EntryIn, updated_by: str) -> bool:
        """Write the new values if they differ, bumping the version only if nobody else bumped it first."""
        if not _differs(entry, data):
            return False
        version = entry.version
        changed = self.session.execute(
            update(KnowledgeEntry)
            .where(KnowledgeEntry.id == entry.id, KnowledgeEntry.version == version)
            .values(**data.columns(), version=version + 1, updated_by=updated_by, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise self._conflict(entry, version)
        self.session.refresh(entry)
        self._revise(entry.external_id, entry.id, entry.version, "updated", entry_snapshot(entry), updated_by)
        return True

    def _revise(
        self,
        external_id: str,
        entry_id: int,
        version: int,
        change: Change,
        snapshot: dict[str, object],
        updated_by: str,
        flush: bool = True,
    ) -> KnowledgeEntryRevision:
        revision = KnowledgeEntryRevision(
            external_id=external_id,
            entry_id=entry_id,
            version=version,
            change=change,
            snapshot=snapshot,
            updated_by=updated_by,
            updated_at=utcnow(),
        )
        self.session.add(revision)
        if flush:
            self.session.flush()
        return revision

    def _conflict(self, entry: KnowledgeEntry, edited_version: int) -> AdminError:
        entry_id = entry.id
        current = self.session.scalar(select(KnowledgeEntry.version).where(KnowledgeEntry.id == entry_id))
        return AdminError(
            "version_conflict",
            f"entry {entry_id} was changed by someone else (you edited version {edited_version}, it is now "
            f"{current if current is not None else 'deleted'}): reload it and edit again",
        )


def _differs(entry: KnowledgeEntry, data: EntryIn) -> bool:
    return any(getattr(entry, key) != value for key, value in data.columns().items())


def read_yaml(path: Path) -> list[EntryIn]:
    """The entries of a YAML file (demo data, older callers); raises `ImportRejected` listing every bad entry."""
    parsed, errors = parse_entries(path.read_bytes(), Format.YAML)
    if errors:
        raise ImportRejected(errors, source=str(path))
    return [entry for _, entry in parsed]


def upsert_entries(session: Session, entries: list[EntryIn], updated_by: str) -> tuple[int, int]:
    """Insert new entries and update changed ones, with history; returns (created, updated). No region checks:
    callers that take files from admins use `KnowledgeAdmin.import_entries`, which validates everything first."""
    report = KnowledgeAdmin(session).apply(entries, updated_by)
    return len(report.created), len(report.updated)
