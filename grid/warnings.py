"""Early warnings (预警, docs/tickets.md): many reports of one problem, or of one category, in a community at once.

A burst of reports is news a ticket-by-ticket view hides: three residents reporting the missing manhole cover (one
ticket and two co-reporters), 停水 reported from three buildings, ten 环境卫生 reports in two days. After every filing
the watch looks at the community's recent reports:

- **problem**: the group of reports about the one just filed (grid/problems.py: one place, or one topic by meaning),
  counted over the rule's window; the most sensitive category in the group sets the rule (a hazard sooner);
- **category**: the community's reports of the filed report's category over that rule's window.

A count that reaches its threshold raises a warning: one row in `early_warnings` (open → acknowledged → closed, in
the console), one message to the community lead (bot/warning_notices.py), one outbox event for city platforms
(`early_warning`; red ones name the street). A red warning also goes to the street's contacts (街道,
`street_contacts`, grid/geography.py) on their own channels, as the lead is told; a street with none configured is
told through the platform only. Thresholds and windows come from grid/data/warnings.yml and the site's override
file (`load_rules`).

**Never two warnings for one cluster.** A cluster is the same as a warning's when it shares a ticket with it and the
warning was last seen within the rule's window; it then grows that warning instead of raising another. A growing
cluster warns again only when it reaches the next step — threshold × 2, × 4 (3 → 6 → 12) — and a warning the lead
acknowledged or closed is opened again then, because the problem has doubled since they looked.

**Concurrency.** Two processes filing at the same moment must not both raise one warning: the check takes a
per-community lock first — PostgreSQL's transaction advisory lock, SQLite's single write lock (BEGIN IMMEDIATE, as
grid/deadlines.py does) — and only then reads the reports and warnings, so the second process sees the first one's
report and warning once the first commits. The check runs inside the filing's transaction: the warning commits or
rolls back with the report that raised it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.orm.exc import StaleDataError

from grid.geography import Grid, Region, community_lead, street_contacts
from grid.locks import lock_community
from grid.outbox import OutboxMessage
from grid.places import normalise_place
from grid.problems import ProblemJudge, Report, most_said
from grid.problems import summary as problem_summary
from grid.tickets import Ticket, TicketReporter
from grid.workflow import Status
from storage.base import Base, utcnow
from storage.types import UTCDateTime

log = logging.getLogger(__name__)

RULES_FILE = Path(__file__).parent / "data" / "warnings.yml"
# Reports of tickets in these states are not counted: a merged ticket's report lives on as a co-reporter of the
# ticket it was merged into, and a cancelled one was withdrawn.
NOT_COUNTED = (Status.MERGED.value, Status.CANCELLED.value)
# Lock class of the PostgreSQL advisory lock (its first key); the second is the community's code, hashed.
OUTBOX_TOPIC = "early_warning"


class Rule(StrEnum):
    PROBLEM = "problem"  # reports of one problem (one place, or one topic)
    CATEGORY = "category"  # reports of one category in the community


class WarningState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


# --- rules -----------------------------------------------------------------------------------------------------


class WarningError(Exception):
    """A refused change of a warning: `code` is stable for callers (warning_not_found, warning_state, conflict)."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code, self.params = code, params


class RulesError(ValueError):
    """The warnings file cannot be used; the message names the file, the key and what is expected."""


@dataclass(frozen=True)
class Threshold:
    reports: int  # 0: the rule is off
    hours: float

    @property
    def on(self) -> bool:
        return self.reports > 0

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.hours)

    def step(self, count: int) -> int:
        """The step a count has reached: the threshold doubled as often as the count allows (3, 6, 12…)."""
        level = self.reports
        while level * 2 <= count:
            level *= 2
        return level


_RULE_KEYS = {"reports", "hours"}


@dataclass(frozen=True)
class Rules:
    """Thresholds by rule, most specific first: a community's category, the community, the category, the defaults."""

    defaults: Mapping[str, Mapping[str, Any]]
    categories: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    communities: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def threshold(self, rule: Rule, community: str, category: str) -> Threshold:
        place = self.communities.get(community, {})
        layers = (
            self.defaults.get(rule.value, {}),
            self.categories.get(category, {}).get(rule.value, {}),
            place.get(rule.value, {}),
            place.get("categories", {}).get(category, {}).get(rule.value, {}),
        )
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        return Threshold(int(merged.get("reports", 0)), float(merged.get("hours", 24)))

    def longest(self, community: str) -> timedelta:
        """The longest window any rule of this community looks back over: what to read from the database."""
        named = {*self.categories, *self.communities.get(community, {}).get("categories", {}), ""}
        return max(self.threshold(rule, community, c).window for rule in Rule for c in named)


def _check_rule(where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or not set(value) <= _RULE_KEYS:
        raise RulesError(f"{where}: expected a mapping with reports and/or hours, got {value!r}")
    reports, hours = value.get("reports", 0), value.get("hours", 1)
    if not isinstance(reports, int) or isinstance(reports, bool) or reports < 0:
        raise RulesError(f"{where}.reports: expected a whole number ≥ 0 (0 turns the rule off), got {reports!r}")
    if not isinstance(hours, int | float) or isinstance(hours, bool) or not 0 < hours <= 24 * 31:
        raise RulesError(f"{where}.hours: expected hours between 0 and 744, got {hours!r}")
    return dict(value)


def _check_rules(where: str, value: object, *, nested: bool) -> dict[str, Any]:
    """A mapping of rule → threshold (and, in a community, `categories`: category → rules)."""
    if value is None:
        return {}
    allowed = {r.value for r in Rule} | ({"categories"} if nested else set())
    if not isinstance(value, dict) or not set(value) <= allowed:
        raise RulesError(f"{where}: expected keys among {sorted(allowed)}, got {value!r}")
    checked: dict[str, Any] = {}
    for key, rule in value.items():
        if key == "categories":
            checked[key] = _check_table(f"{where}.categories", rule, nested=False)
        else:
            checked[key] = _check_rule(f"{where}.{key}", rule)
    return checked


def _check_table(where: str, value: object, *, nested: bool) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RulesError(f"{where}: expected a mapping of names to rules, got {value!r}")
    return {str(name): _check_rules(f"{where}.{name}", rules, nested=nested) for name, rules in value.items()}


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: cannot read the warnings file: {exc}") from None
    if not isinstance(raw, dict) or not set(raw) <= {"defaults", "categories", "communities"}:
        raise RulesError(f"{path}: expected the keys defaults, categories and communities")
    return {
        "defaults": _check_rules(f"{path}: defaults", raw.get("defaults"), nested=False),
        "categories": _check_table(f"{path}: categories", raw.get("categories"), nested=False),
        "communities": _check_table(f"{path}: communities", raw.get("communities"), nested=True),
    }


def _overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _overlay(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


@cache
def load_rules(override: Path | None = None) -> Rules:
    """The shipped rules, with the site's file (the WARNINGS_FILE setting) laid over them key by key.

    Raises RulesError naming the file and key when either is malformed: a typo must not silently turn warnings off.
    """
    raw = _read(RULES_FILE)
    if override is not None:
        raw = _overlay(raw, _read(override))
    return Rules(raw["defaults"], raw["categories"], raw["communities"])


# --- the table ---------------------------------------------------------------------------------------------------


class EarlyWarning(Base):
    """A warning raised to a community's lead; `ticket_ids` are every ticket it has covered, its identity."""

    __tablename__ = "early_warnings"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    rule: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    colour: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), default=WarningState.OPEN.value, index=True)
    level: Mapped[int] = mapped_column(Integer)  # the step it last warned at (3, 6, 12…)
    reports: Mapped[int] = mapped_column(Integer)  # reports in its window when last seen
    hours: Mapped[float] = mapped_column(Float)
    ticket_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text)
    places: Mapped[list[str]] = mapped_column(JSON, default=list)
    told: Mapped[list[str]] = mapped_column(JSON, default=list)  # ids sent the last message (lead, street contacts)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    warned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # the last message
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)  # the last filing that grew it
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    closed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # Two leads acknowledging at once: the slower UPDATE matches no row and is told so (a conflict), not lost.
    version_id: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version_id}  # noqa: RUF012


# --- what a raised warning says ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarnedTicket:
    number: str
    category: str
    colour: str
    location: str
    description: str
    reports: int  # this ticket's reports in the window: its first and its co-reporters'


@dataclass(frozen=True)
class Recipient:
    worker_id: str
    name: str


@dataclass(frozen=True)
class RaisedWarning:
    """A warning to send, as plain values so it outlives the session (the caller sends after commit)."""

    id: int
    rule: Rule
    community_code: str
    community_name: str
    category: str
    colour: str
    reports: int
    level: int
    hours: float
    grown_from: int | None  # the step it had warned at before, when this is a re-warning
    summary: str
    places: tuple[str, ...]
    tickets: tuple[WarnedTicket, ...]
    lead: Recipient | None
    street: tuple[str, str] | None  # (code, name) of the street told through the platform (red warnings)
    street_contacts: tuple[Recipient, ...] = ()  # the street's people, told privately (red warnings)


# --- the watch ---------------------------------------------------------------------------------------------------


@dataclass
class WarningWatch:
    """Checks a community after each filing; the app's edge builds one with the site's rules and the meaning model."""

    rules: Rules
    judge: ProblemJudge = field(default_factory=ProblemJudge)

    def after_filing(self, session: Session, ticket: Ticket, now: datetime | None = None) -> list[RaisedWarning]:
        """The warnings the report just filed on `ticket` raises or grows (usually none), claimed in this transaction.

        A failure here (a model error, a malformed stored row) is logged and raises nothing: the report it was
        asked about must not be lost to it; the warning comes with the next report of the cluster.
        """
        moment = now or utcnow()
        grid = session.get(Grid, ticket.grid_code)
        if grid is None:
            return []
        lock_community(session, grid.community_code)  # before the savepoint: on SQLite it opens the transaction
        try:
            with session.begin_nested():
                return self._check(session, grid.community_code, ticket, moment)
        except Exception:
            log.exception("early-warning check after %s failed; the report is filed, no warning raised", ticket.number)
            return []

    def _check(self, session: Session, community: str, ticket: Ticket, now: datetime) -> list[RaisedWarning]:
        reports = community_reports(session, community, now - self.rules.longest(community))
        clusters: list[_Cluster] = []
        problem = self._problem(community, ticket, reports, now)
        if problem is not None:
            clusters.append(problem)
        threshold = self.rules.threshold(Rule.CATEGORY, community, ticket.category)
        if threshold.on:
            since = now - threshold.window
            same = [r for r in reports if r.category == ticket.category and r.at >= since]
            covered = problem is not None and {r.ticket_id for r in same} <= problem.ticket_ids
            # Five reports of one problem are that problem's warning, not a second one about their category.
            if len(same) >= threshold.reports and not covered:
                clusters.append(_Cluster(community, Rule.CATEGORY, ticket.category, threshold, same))
        return [raised for cluster in clusters if (raised := self._raise_or_grow(session, cluster, now)) is not None]

    def _problem(self, community: str, ticket: Ticket, reports: Sequence[Report], now: datetime) -> _Cluster | None:
        """The group of the filed ticket's reports, under the threshold of its most sensitive category, if reached."""
        counted = [r for r in reports if self.rules.threshold(Rule.PROBLEM, community, r.category).on]
        groups = self.judge.groups(counted, across_places=True)
        group = next((g for g in groups if any(r.ticket_id == ticket.id for r in g)), [])
        if not group:
            return None
        thresholds = [self.rules.threshold(Rule.PROBLEM, community, r.category) for r in group]
        chosen = min(thresholds, key=lambda t: (t.reports, -t.hours))
        within = sorted((r for r in group if r.at >= now - chosen.window), key=lambda r: (r.at, r.key))
        if len(within) < chosen.reports:
            return None
        return _Cluster(community, Rule.PROBLEM, most_said(r.category for r in within), chosen, within)

    def _raise_or_grow(self, session: Session, cluster: _Cluster, now: datetime) -> RaisedWarning | None:
        """A new warning for the cluster, or its warning grown; raised (to send) only when new or past the next step."""
        count, ids = len(cluster.reports), sorted(cluster.ticket_ids)
        tickets = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_(ids)))}
        colour = "red" if any(t.colour == "red" for t in tickets.values()) else "yellow"
        places = _places(cluster.reports)
        summary = problem_summary(cluster.reports) if cluster.rule is Rule.PROBLEM else cluster.category
        warning = _same_cluster(session, cluster, now - cluster.threshold.window)
        grown_from: int | None = None
        if warning is not None:
            warning.ticket_ids = sorted(set(warning.ticket_ids) | set(ids))
            warning.places = list(dict.fromkeys([*warning.places, *places]))
            warning.reports, warning.seen_at = count, now
            warning.colour = "red" if colour == "red" else warning.colour
            if count < warning.level * 2:
                session.flush()
                return None
            grown_from = warning.level
            warning.level = max(cluster.threshold.step(count), grown_from * 2)
            warning.state, warning.warned_at, warning.summary = WarningState.OPEN.value, now, summary
        else:
            warning = EarlyWarning(
                community_code=cluster.community,
                rule=cluster.rule.value,
                category=cluster.category,
                colour=colour,
                state=WarningState.OPEN.value,
                level=cluster.threshold.step(count),
                reports=count,
                hours=cluster.threshold.hours,
                ticket_ids=ids,
                summary=summary,
                places=places,
                created_at=now,
                warned_at=now,
                seen_at=now,
            )
            session.add(warning)
        lead = _lead(session, cluster.community)
        street = street_of(session, cluster.community) if warning.colour == "red" else None
        street_people = tuple(Recipient(p.id, p.name) for p in street_contacts(session, street[0])) if street else ()
        warning.told = ([lead.worker_id] if lead else []) + [p.worker_id for p in street_people]
        session.flush()
        if lead is None:
            log.warning("early warning %s in %s has no community lead to tell", warning.id, cluster.community)
        region = session.get(Region, cluster.community)
        raised = RaisedWarning(
            id=warning.id,
            rule=cluster.rule,
            community_code=cluster.community,
            community_name=region.name if region else cluster.community,
            category=cluster.category,
            colour=warning.colour,
            reports=count,
            level=warning.level,
            hours=cluster.threshold.hours,
            grown_from=grown_from,
            summary=summary,
            places=tuple(places),
            tickets=_warned_tickets(cluster.reports, tickets),
            lead=lead,
            street=street,
            street_contacts=street_people,
        )
        newest = max(cluster.reports, key=lambda r: (r.at, r.key))
        session.add(OutboxMessage(ticket_id=newest.ticket_id, topic=OUTBOX_TOPIC, payload=outbox_payload(raised, now)))
        return raised


@dataclass(frozen=True)
class _Cluster:
    """Reports that passed a rule's threshold together."""

    community: str
    rule: Rule
    category: str
    threshold: Threshold
    reports: list[Report]

    @property
    def ticket_ids(self) -> set[int]:
        return {r.ticket_id for r in self.reports}


def community_reports(session: Session, community: str, since: datetime) -> list[Report]:
    """Every report made in the community since `since`: tickets' first reports and co-reports, oldest first."""
    grids = select(Grid.code).where(Grid.community_code == community).scalar_subquery()
    counted = Ticket.status.not_in(NOT_COUNTED)
    first = session.scalars(
        select(Ticket).where(Ticket.grid_code.in_(grids), Ticket.created_at >= since, counted).order_by(Ticket.id)
    )
    reports = [Report(t.id, t.number, t.category, t.colour, t.grid_code, t.location, t.description, t.created_at) for t in first]
    again = session.execute(
        select(TicketReporter, Ticket)
        .join(Ticket, Ticket.id == TicketReporter.ticket_id)
        .where(Ticket.grid_code.in_(grids), TicketReporter.created_at >= since, counted)
        .order_by(TicketReporter.id)
    )
    reports += [
        Report(t.id, t.number, t.category, t.colour, t.grid_code, t.location, co.description, co.created_at, co.id)
        for co, t in again
    ]
    reports.sort(key=lambda r: (r.at, r.key))
    return reports


def _same_cluster(session: Session, cluster: _Cluster, since: datetime) -> EarlyWarning | None:
    """The earliest warning of this rule (and category, for the category rule) that shares a ticket with the
    cluster and was seen within the rule's window: the cluster is that warning's, grown."""
    query = select(EarlyWarning).where(
        EarlyWarning.community_code == cluster.community,
        EarlyWarning.rule == cluster.rule.value,
        EarlyWarning.seen_at >= since,
    )
    if cluster.rule is Rule.CATEGORY:
        query = query.where(EarlyWarning.category == cluster.category)
    wanted = cluster.ticket_ids
    return next((w for w in session.scalars(query.order_by(EarlyWarning.id)) if wanted & set(w.ticket_ids or [])), None)


def _places(group: Sequence[Report]) -> list[str]:
    """The places as residents wrote them, one per spot (三号楼前面 and 3号楼门口 are one), first said first."""
    seen: dict[str, str] = {}
    for report in group:
        place = report.location.strip()
        if place:
            seen.setdefault(normalise_place(place) or place, place)
    return list(seen.values())


def _warned_tickets(group: Sequence[Report], tickets: Mapping[int, Ticket]) -> tuple[WarnedTicket, ...]:
    counts: dict[int, int] = {}
    for report in group:
        counts[report.ticket_id] = counts.get(report.ticket_id, 0) + 1
    return tuple(
        WarnedTicket(t.number, t.category, t.colour, t.location, t.description, counts[t.id])
        for t in sorted((tickets[i] for i in counts if i in tickets), key=lambda t: t.id)
    )


def _lead(session: Session, community: str) -> Recipient | None:
    grid = session.scalar(select(Grid.code).where(Grid.community_code == community).order_by(Grid.code).limit(1))
    lead = community_lead(session, grid) if grid else None
    return Recipient(lead.id, lead.name) if lead else None


def street_of(session: Session, community: str) -> tuple[str, str] | None:
    """The street (街道) above a community, walking up the region tree; None when the map has none."""
    region = session.get(Region, community)
    for _ in range(8):
        if region is None or region.parent_code is None:
            return None
        region = session.get(Region, region.parent_code)
        if region is not None and region.level == "street":
            return region.code, region.name
    return None


def outbox_payload(raised: RaisedWarning, now: datetime) -> dict[str, Any]:
    """What a city platform receives: the warning, its tickets and places, and the street for red ones."""
    return {
        "event": OUTBOX_TOPIC,
        "at": now.isoformat(),
        "warning": {
            "id": raised.id,
            "rule": raised.rule.value,
            "community": raised.community_code,
            "category": raised.category,
            "colour": raised.colour,
            "reports": raised.reports,
            "level": raised.level,
            "hours": raised.hours,
            "grown_from": raised.grown_from,
            "summary": raised.summary,
            "places": list(raised.places),
            "tickets": [t.number for t in raised.tickets],
            "lead": raised.lead.worker_id if raised.lead else None,
            "street": raised.street[0] if raised.street else None,
            "street_contacts": [p.worker_id for p in raised.street_contacts],
        },
    }


# --- the lead's side: list, acknowledge, close ---------------------------------------------------------------------

_NEXT_STATES = {
    "acknowledge": ({WarningState.OPEN}, WarningState.ACKNOWLEDGED),
    "close": ({WarningState.OPEN, WarningState.ACKNOWLEDGED}, WarningState.CLOSED),
}


def list_warnings(
    session: Session, *, communities: Iterable[str] | None = None, states: Iterable[str] | None = None, limit: int = 100
) -> list[EarlyWarning]:
    """Newest first; `communities` None: every community."""
    query = select(EarlyWarning)
    if communities is not None:
        query = query.where(EarlyWarning.community_code.in_(sorted(set(communities))))
    if states is not None:
        query = query.where(EarlyWarning.state.in_(sorted(set(states))))
    return list(session.scalars(query.order_by(EarlyWarning.warned_at.desc(), EarlyWarning.id.desc()).limit(limit)))


def change_state(session: Session, warning_id: int, action: str, actor_id: str, note: str = "") -> EarlyWarning:
    """确认 (acknowledge: the lead has seen it and is on it) or 关闭 (close: dealt with); WarningError when the
    warning is unknown, its state does not allow it, or someone changed it first (conflict)."""
    warning = session.get(EarlyWarning, warning_id)
    if warning is None:
        raise WarningError("warning_not_found", id=warning_id)
    allowed, target = _NEXT_STATES[action]
    if WarningState(warning.state) not in allowed:
        raise WarningError("warning_state", id=warning_id, state=warning.state, action=action)
    now = utcnow()
    warning.state = target.value
    if target is WarningState.ACKNOWLEDGED:
        warning.acknowledged_by, warning.acknowledged_at = actor_id, now
    else:
        warning.closed_by, warning.closed_at = actor_id, now
    if note.strip():
        warning.note = note.strip()
    newest = max(warning.ticket_ids or [0])
    if newest:  # city platforms learn that the lead took it on, or closed it
        topic = f"{OUTBOX_TOPIC}_{target.value}"
        about = {"id": warning.id, "state": target.value, "by": actor_id, "note": warning.note}
        payload = {"event": topic, "at": now.isoformat(), "warning": about}
        session.add(OutboxMessage(ticket_id=newest, topic=topic, payload=payload))
    try:
        session.flush()
    except StaleDataError:
        raise WarningError("conflict", id=warning_id) from None
    return warning


def community_of_grids(session: Session, grid_codes: Iterable[str]) -> set[str]:
    codes = sorted(set(grid_codes))
    return set(session.scalars(select(Grid.community_code).where(Grid.code.in_(codes)))) if codes else set()
