"""Ticket use cases: one method per thing a resident, worker, lead or department does with a ticket.

The workflow table says which role may take an action from which state; these methods add who, of that
role, may act on this ticket (its assignee, a worker of its grid, its community's lead, the department it
was escalated to, its reporter), and what else the action changes. Every change is flushed at once, so a
concurrent change to the same ticket surfaces here as a `conflict` instead of a lost update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from grid import outbox  # noqa: F401  (registers the outbox writer on every session)
from grid.categories import Category, category_named, classify
from grid.clock import LOCAL_TZ
from grid.duplicates import DuplicateJudge, Report, RuleJudge, Verdict
from grid.emergencies import Emergency, EmergencyTriage
from grid.geography import ChatGroup, Department, Grid, Worker, community_lead, on_duty_worker
from grid.locks import lock_community
from grid.places import same_spot
from grid.ratings import Rating
from grid.tickets import Ticket, TicketCounter, TicketEvent, TicketReporter
from grid.workflow import OPEN_STATUSES, WAITING_FOR_RESIDENT, Role, Status, TicketError
from storage.base import utcnow
from storage.upsert import insert_ignoring_conflicts

if TYPE_CHECKING:  # grid.warnings reads tickets through grid.deadlines, which imports this module
    from grid.warnings import RaisedWarning, WarningWatch

SYSTEM_ACTOR = "system"
DUPLICATE_WINDOW = timedelta(hours=72)
# History action of a new ticket the duplicate judge found may repeat an open one (its note: that ticket's number);
# the worker's notice and the console show it, and `合并 GD…新 GD…旧` folds it in.
POSSIBLE_DUPLICATE_ACTION = "possible_duplicate"
# History action that marks a ticket as a life-safety emergency (its note: the kind, 电梯困人): the re-notice job
# (grid/deadlines.py) finds emergencies by it, so knowing one needs no column of its own.
EMERGENCY_ACTION = "emergency"
COLOURS = ("red", "yellow", "blue")


@dataclass(frozen=True)
class Actor:
    id: str
    role: Role
    department_code: str | None = None


@dataclass
class Filing:
    """What filing a report did: a new ticket, or a link to the open one already handling the problem."""

    ticket: Ticket
    duplicate: bool = False
    notify: list[Worker] = field(default_factory=list)  # besides the assignee: the lead for red tickets
    emergency: Emergency | None = None  # a life-safety emergency: the resident is told whom to call, even on a duplicate
    warnings: list[RaisedWarning] = field(default_factory=list)  # early warnings this report raised (grid/warnings.py)
    # A new ticket that may repeat this open one (the worker is told 可能重复 and can merge it).
    possible_duplicate: Ticket | None = None
    # The words of this report when they raised the ticket it joined (to red, or to an emergency): its worker and
    # lead are told why.
    raised_by: str | None = None


def is_emergency(ticket: Ticket) -> bool:
    return any(event.action == EMERGENCY_ACTION for event in ticket.events)


def _towards(target: str, reason: str) -> str:
    """History note of a hand-over: to whom, and why when a reason was given."""
    return f"→ {target}：{reason}" if reason else f"→ {target}"


class TicketService:
    def __init__(
        self,
        session: Session,
        emergencies: EmergencyTriage | None = None,
        warnings: WarningWatch | None = None,
        duplicates: DuplicateJudge | None = None,
    ) -> None:
        """`emergencies`: how filing recognises life-safety reports; the app's edge injects it (the chat's report
        form), None leaves red to the category keywords (tests, imports, callers that choose the category).
        `warnings`: the early-warning watch run after each filing (the chat's report form); None: no check.
        `duplicates`: who decides a report repeats an open ticket (grid/duplicates.py, by place and meaning when the
        app has an embedding model); None: the safe rule, same category at the same specific spot."""
        self.session = session
        self.emergencies = emergencies
        self.warnings = warnings
        self.duplicates: DuplicateJudge = duplicates or RuleJudge()

    # --- 问 / 派 ---------------------------------------------------------------------------------

    def file_report(
        self,
        *,
        group_id: str | None,
        reporter_id: str,
        reporter_name: str,
        description: str,
        location: str,
        category_hint: str | None = None,
        duplicate_window: timedelta = DUPLICATE_WINDOW,
        grid_code: str | None = None,
        photos: list[str] | None = None,
        category: str | None = None,
        reporter_channel: str | None = None,
    ) -> Filing:
        """Store a report and dispatch it (问→派), or link it to an open ticket for the same problem.

        A report from a group belongs to the group's grid; one from elsewhere (the 12345 hotline through
        Open311, the console, a private chat) names its grid. A private chat's report names its `reporter_channel`
        too: with no group to be told in, its reporter hears of the ticket privately there (bot/ticket_notices.py).

        The same problem (并单, docs/tickets.md) is an open ticket of this grid or a neighbouring grid of its community,
        filed within `duplicate_window`, that the duplicate judge finds at the same spot saying the same thing
        (grid/duplicates.py); the report then joins it as a co-reporter. When the judge is unsure, the report is
        filed as a new ticket that records which one it may repeat. A later report more urgent than the ticket it
        joins (red, or an emergency) raises that ticket (`_raise`).

        A life-safety emergency (电梯困人, 着火…), recognised by meaning when the service was given a recogniser and
        the caller chose no category, is filed red under the emergency category whatever object it names, due
        within the emergency deadline, and marked in its history. Without a judge by meaning it only joins an open
        ticket that is itself an emergency (a fire at a spot is not the blocked fire lane reported there
        yesterday), and vice versa; with one, the descriptions tell them apart.
        """
        group = self.session.get(ChatGroup, group_id) if group_id else None
        if group_id and group is None:
            raise TicketError("unknown_group", group_id=group_id)
        grid_code = group.grid_code if group else grid_code
        grid = self.session.get(Grid, grid_code) if grid_code else None
        if grid_code is None or grid is None:
            raise TicketError("unknown_grid", grid=grid_code or "")
        # Two processes filing one problem at once would both find no open ticket and open two: the duplicate check
        # and the filing take turns per community, until this transaction commits (the warning check re-takes it).
        lock_community(self.session, grid.community_code)
        chosen = category_named(category) if category else None  # a caller's explicit choice (Open311 service_code)
        if category and chosen is None:
            raise TicketError("unknown_category", category=category)
        emergency = self.emergencies.recognise(description) if self.emergencies and chosen is None else None
        kind: Category = chosen or self._emergency_category(emergency) or classify(description, category_hint)
        now = utcnow()
        report = Report(description, location, kind.name, emergency is not None)
        existing, verdict = self._open_duplicate(grid_code, report, reporter_id, now - duplicate_window)
        if existing is not None and verdict is Verdict.LIKELY:
            due = self.emergencies.deadline if emergency and self.emergencies else timedelta(hours=kind.deadline_hours)
            urgent = emergency is not None or kind.colour == "red"
            raised = self._raise(existing, urgent, now + due, emergency.kind.name if emergency else None, description)
            if not existing.reported_by(reporter_id):
                existing.co_reporters.append(
                    TicketReporter(
                        reporter_id=reporter_id,
                        reporter_name=reporter_name,
                        group_id=group.id if group else None,
                        reporter_channel=None if group else reporter_channel,
                        description=description,
                    )
                )
                existing.record("co_report", reporter_id, Role.RESIDENT, note=description)
            self._save(existing)
            lead = community_lead(self.session, existing.grid_code) if raised else None
            notify = [lead] if lead is not None else []
            raised_by = description if raised else None
            return self._watched(Filing(existing, duplicate=True, emergency=emergency, notify=notify, raised_by=raised_by))
        due = self.emergencies.deadline if emergency and self.emergencies else timedelta(hours=kind.deadline_hours)
        ticket = Ticket(
            number=self._next_number(),
            category=kind.name,
            colour="red" if emergency else kind.colour,
            description=description,
            location=location,
            reporter_id=reporter_id,
            reporter_name=reporter_name,
            group_id=group.id if group else None,
            reporter_channel=None if group else reporter_channel,
            grid_code=grid_code,
            status=Status.SUBMITTED,
            created_at=now,
            deadline_at=now + due,
        )
        ticket.events.append(
            TicketEvent(
                action="submit",
                from_status=None,
                to_status=Status.SUBMITTED,
                actor_id=reporter_id,
                actor_role=Role.RESIDENT,
                created_at=now,
                photos=list(photos) if photos else None,
            )
        )
        if emergency is not None:
            ticket.record(EMERGENCY_ACTION, SYSTEM_ACTOR, Role.SYSTEM, note=emergency.kind.name, at=now)
        if existing is not None:  # uncertain: filed, with the ticket it may repeat on record for the worker and console
            ticket.record(POSSIBLE_DUPLICATE_ACTION, SYSTEM_ACTOR, Role.SYSTEM, note=existing.number, at=now)
        self.session.add(ticket)
        worker = on_duty_worker(self.session, grid_code)
        lead = community_lead(self.session, grid_code)
        if worker is not None:
            ticket.assignee_id = worker.id
            ticket.apply("dispatch", SYSTEM_ACTOR, Role.SYSTEM, note=worker.id)
        self._save(ticket)
        notify = [lead] if lead is not None and (ticket.colour == "red" or worker is None) else []
        return self._watched(Filing(ticket, notify=notify, emergency=emergency, possible_duplicate=existing))

    def _watched(self, filing: Filing) -> Filing:
        """Every filing, new ticket or co-report, is a report the early-warning watch counts."""
        if self.warnings is not None:
            filing.warnings = self.warnings.after_filing(self.session, filing.ticket)
        return filing

    def _emergency_category(self, emergency: Emergency | None) -> Category | None:
        if emergency is None or self.emergencies is None:
            return None
        category = category_named(self.emergencies.category)
        if category is None:
            raise TicketError("unknown_category", category=self.emergencies.category)
        return category

    def _open_duplicate(self, grid_code: str, new: Report, reporter_id: str, since: datetime) -> tuple[Ticket | None, Verdict]:
        """The open ticket this report repeats (LIKELY), else the one it may repeat (UNCERTAIN), oldest first, among
        the open tickets of the community's grids filed since `since`; (None, DIFFERENT) when there is none.

        The same resident's same words at the same place always join (a replayed chat turn files once), even where
        the place is too vague for two residents' reports to be matched.
        """
        grid = self.session.get(Grid, grid_code)
        if grid is None or since >= utcnow():
            return None, Verdict.DIFFERENT
        community_grids = select(Grid.code).where(Grid.community_code == grid.community_code)
        query = select(Ticket).where(
            Ticket.grid_code.in_(community_grids),
            Ticket.created_at >= since,
            Ticket.status_in(OPEN_STATUSES),
        )
        maybe: Ticket | None = None
        for ticket in self.session.scalars(query.order_by(Ticket.id)):
            if ticket.reported_by(reporter_id) and (ticket.description, ticket.location) == (new.description, new.location):
                return ticket, Verdict.LIKELY
            if not same_spot(new.location, ticket.location):
                continue  # every judge needs the same spot; this check is cheap, the judge may not be
            open_report = Report(ticket.description, ticket.location, ticket.category, is_emergency(ticket))
            verdict = self.duplicates.judge(new, open_report, same_grid=ticket.grid_code == grid_code)
            if verdict is Verdict.LIKELY:
                return ticket, verdict
            if verdict is Verdict.UNCERTAIN and maybe is None:
                maybe = ticket
        return (maybe, Verdict.UNCERTAIN) if maybe is not None else (None, Verdict.DIFFERENT)

    def _raise(self, ticket: Ticket, red: bool, due_at: datetime, emergency_kind: str | None, reason: str) -> bool:
        """A report more urgent than the open ticket it joins raises it: red, due by the report's own deadline when
        sooner, and marked an emergency when the report is one (so the re-notice job chases it). History says why (a
        system `triage` entry, as a worker's recolouring is). Whether anything changed: the worker and lead are told."""
        becomes_emergency = emergency_kind is not None and not is_emergency(ticket)
        if not becomes_emergency and (ticket.colour == "red" or not red):
            return False
        changes = [] if ticket.colour == "red" else [f"colour {ticket.colour}→red"]
        ticket.colour = "red"
        if due_at < ticket.deadline_at:
            changes.append(f"deadline {ticket.deadline_at.isoformat()}→{due_at.isoformat()}")
            ticket.deadline_at = due_at
            ticket.reminded_at = ticket.overdue_notified_at = None
        if becomes_emergency:
            ticket.record(EMERGENCY_ACTION, SYSTEM_ACTOR, Role.SYSTEM, note=emergency_kind)
        ticket.record("triage", SYSTEM_ACTOR, Role.SYSTEM, note=f"{'; '.join(changes) or EMERGENCY_ACTION}：{reason}")
        return True

    # --- lookups ---------------------------------------------------------------------------------

    def get(self, number: str) -> Ticket:
        ticket = self.session.scalar(select(Ticket).where(Ticket.number == number.strip().upper()))
        if ticket is None:
            raise TicketError("ticket_not_found", number=number)
        return ticket

    def actor_for(self, actor_id: str, channel: str | None = None) -> Actor:
        """A chat account's role: a registered worker or lead, otherwise a resident.

        `channel` is where a chat message came from: an account id is only unique, and only proven, on its own
        platform, so a worker acts only from the channel `workers.channel` names; the same id typed into another
        channel (the web chat, say) is a resident's. None: the caller proved who this is some other way (a
        logged-in account of this worker, an admin acting for someone).
        """
        worker = self.session.get(Worker, actor_id)
        if worker is None or (channel is not None and channel != worker.channel):
            return Actor(actor_id, Role.RESIDENT)
        return Actor(actor_id, Role.LEAD if worker.role == "lead" else Role.WORKER)

    def assigned_to(self, worker_id: str) -> list[Ticket]:
        """A worker's open tickets, oldest deadline first: the order to work them in."""
        query = (
            select(Ticket)
            .where(Ticket.assignee_id == worker_id, Ticket.status_in(OPEN_STATUSES))
            .order_by(Ticket.deadline_at, Ticket.id)
        )
        return list(self.session.scalars(query))

    def open_tickets_of(self, reporter_id: str) -> list[Ticket]:
        query = (
            select(Ticket)
            .where(Ticket.reporter_id == reporter_id, Ticket.status_in(OPEN_STATUSES | WAITING_FOR_RESIDENT))
            .order_by(Ticket.id.desc())
        )
        return list(self.session.scalars(query))

    def worker(self, worker_id: str) -> Worker | None:
        return self.session.get(Worker, worker_id)

    def find_worker(self, key: str) -> Worker | None:
        """A worker by id or by name, as a worker types it after 转派."""
        return self.session.get(Worker, key) or self.session.scalar(select(Worker).where(Worker.name == key))

    def find_department(self, key: str) -> Department | None:
        return self.session.get(Department, key) or self.session.scalar(select(Department).where(Department.name == key))

    def dispatch(self, number: str, actor: Actor, worker_key: str | None = None) -> Ticket:
        """The lead's 派 of a returned ticket: to a named worker, or to the grid's pool for its workers to take."""
        ticket = self.get(number)
        self._require(self._leads(ticket, actor), "not_your_community", ticket)
        target = self.find_worker(worker_key) if worker_key else None
        if worker_key and target is None:
            raise TicketError("unknown_worker", worker=worker_key)
        ticket.apply("dispatch", actor.id, actor.role, note=target.id if target else "pool")
        if target is not None:
            ticket.assignee_id, ticket.grid_code = target.id, target.grid_code
        return self._save(ticket)

    # --- 转 / 办 ---------------------------------------------------------------------------------

    def accept(self, number: str, actor: Actor) -> Ticket:
        """接单: the assignee, any worker of the ticket's grid while nobody has it, or the escalated department."""
        ticket = self.get(number)
        if actor.role is Role.DEPARTMENT:
            self._require(ticket.department_code == actor.department_code, "not_your_department", ticket)
        else:
            self._require(ticket.assignee_id == actor.id or self._free_for(ticket, actor), "not_assignee", ticket)
        ticket.apply("accept", actor.id, actor.role)  # refuses a role that may not accept before anything changes
        if actor.role is not Role.DEPARTMENT:
            ticket.assignee_id = actor.id
        return self._save(ticket)

    def transfer(self, number: str, actor: Actor, target_key: str, reason: str) -> Ticket:
        """转派: to another worker (who may be in another grid: the ticket moves with them)."""
        ticket = self.get(number)
        self._require_handler(ticket, actor)
        target = self.find_worker(target_key)
        if target is None:
            raise TicketError("unknown_worker", worker=target_key)
        if target.id == ticket.assignee_id:
            raise TicketError("same_worker", number=ticket.number)
        ticket.apply("transfer", actor.id, actor.role, note=_towards(target.id, reason))
        ticket.assignee_id, ticket.grid_code = target.id, target.grid_code
        return self._save(ticket)

    def escalate(self, number: str, actor: Actor, department_key: str, reason: str) -> Ticket:
        """上报 (乡呼县应): the grid cannot solve it alone; a department takes it."""
        ticket = self.get(number)
        self._require_handler(ticket, actor)
        department = self.find_department(department_key)
        if department is None:
            raise TicketError("unknown_department", department=department_key)
        ticket.apply("escalate", actor.id, actor.role, note=_towards(department.code, reason))
        ticket.department_code = department.code
        return self._save(ticket)

    def return_ticket(self, number: str, actor: Actor, reason: str) -> Ticket:
        """退回: not this worker's to handle; it goes back unassigned for the lead to dispatch."""
        ticket = self.get(number)
        self._require(ticket.assignee_id == actor.id, "not_assignee", ticket)
        ticket.apply("return", actor.id, actor.role, note=reason or None)
        ticket.assignee_id = None
        return self._save(ticket)

    def resolve(self, number: str, actor: Actor | str, result: str, photos: list[str] | None = None) -> Ticket:
        """办结: the assignee, the department it was escalated to, or the community's lead."""
        actor = actor if isinstance(actor, Actor) else Actor(actor, Role.WORKER)
        ticket = self.get(number)
        if actor.role is Role.DEPARTMENT:
            self._require(ticket.department_code == actor.department_code, "not_your_department", ticket)
        elif actor.role is Role.LEAD:
            self._require(self._leads(ticket, actor), "not_your_community", ticket)
        else:
            self._require(ticket.assignee_id == actor.id, "not_assignee", ticket)
        ticket.apply("resolve", actor.id, actor.role, note=result, photos=photos)
        ticket.result = result
        return self._save(ticket)

    # --- 审 / 回 ---------------------------------------------------------------------------------

    def review(self, number: str, actor: Actor, approve: bool, note: str = "") -> Ticket:
        """审: the community lead accepts the result, or sends it back to work."""
        ticket = self.get(number)
        self._require(actor.role in (Role.LEAD, Role.ADMIN) and self._leads(ticket, actor), "not_your_community", ticket)
        ticket.apply("review" if approve else "reject", actor.id, actor.role, note=note or None)
        return self._save(ticket)

    def awaiting_rating(self, reporter_id: str, group_id: str | None) -> Ticket | None:
        """The reporter's most recently resolved ticket, in this group when the rating comes from one."""
        query = select(Ticket).where(Ticket.reporter_id == reporter_id, Ticket.status_in(WAITING_FOR_RESIDENT))
        if group_id:
            query = query.where(Ticket.group_id == group_id)
        return self.session.scalar(query.order_by(Ticket.resolved_at.desc(), Ticket.id.desc()).limit(1))

    def rate(self, *, reporter_id: str, group_id: str | None, rating: Rating, comment: str | None) -> Ticket:
        """回访: 满意/基本满意 close the ticket; 不满意 reopens it and sends it back to the same worker."""
        ticket = self.awaiting_rating(reporter_id, group_id)
        if ticket is None:
            raise TicketError("nothing_to_rate")
        ticket.rating = rating.value
        ticket.rating_comment = comment
        if rating is Rating.UNSATISFIED:
            ticket.apply("reopen", reporter_id, Role.RESIDENT, note=comment)
            ticket.apply("dispatch", SYSTEM_ACTOR, Role.SYSTEM, note=ticket.assignee_id)
        else:
            ticket.apply("close", reporter_id, Role.RESIDENT, note=rating.value)
        return self._save(ticket)

    def urge(self, *, reporter_id: str, number: str | None) -> Ticket:
        """The resident's 催办 on a named ticket or their latest open one; recorded, the status stays."""
        if number:
            ticket = self.get(number)
            if not ticket.reported_by(reporter_id):
                raise TicketError("not_reporter", number=ticket.number)
        else:
            query = select(Ticket).where(Ticket.reporter_id == reporter_id, Ticket.status_in(OPEN_STATUSES))
            ticket = self.session.scalars(query.order_by(Ticket.id.desc()).limit(1)).first()
            if ticket is None:
                raise TicketError("nothing_to_urge")
        if not ticket.is_open:
            raise TicketError("invalid_transition", action="urge", status=ticket.status)
        ticket.record("urge", reporter_id, Role.RESIDENT)
        return self._save(ticket)

    def cancel(self, number: str, actor: Actor, reason: str = "") -> Ticket:
        ticket = self.get(number)
        allowed = ticket.reporter_id == actor.id if actor.role is Role.RESIDENT else self._leads(ticket, actor)
        self._require(allowed, "not_reporter", ticket)
        ticket.apply("cancel", actor.id, actor.role, note=reason or None)
        return self._save(ticket)

    def merge(self, number: str, into: str, actor: Actor) -> Ticket:
        """Fold a duplicate into the open ticket that handles the problem (并单: `合并 GD…新 GD…旧`, or the console).

        The duplicate is closed as merged; its reporter and co-reporters become co-reporters of the other ticket, so
        they are told when it is resolved; a duplicate more urgent than that ticket raises it (`_raise`). Both must
        be tickets of one community, and the one kept must not be over (closed, cancelled, merged itself): merged
        into a resolved ticket, its reporters hear the state in the merge notice.
        """
        ticket, target = self.get(number), self.get(into)
        if ticket.id == target.id:
            raise TicketError("same_ticket", number=ticket.number)
        if actor.role is not Role.SYSTEM:
            self._require_handler(ticket, actor)
        if Status(target.status) not in OPEN_STATUSES | WAITING_FOR_RESIDENT:
            raise TicketError("merge_target_closed", number=target.number, status=target.status)
        if not self._same_community(ticket, target):
            raise TicketError("not_your_community", number=target.number)
        ticket.apply("merge", actor.id, actor.role, note=target.number)
        ticket.merged_into_id = target.id
        # Each report keeps the time it was made: the early-warning window counts co-reports by it (grid/warnings.py),
        # so a merge must not make days-old reports new.
        # A private reporter keeps their channel: the resolve notice of the ticket kept reaches them there.
        first = ticket
        joining = [
            (first.reporter_id, first.reporter_name, first.group_id, first.description, first.created_at, first.reporter_channel)
        ]
        joining += [
            (c.reporter_id, c.reporter_name, c.group_id, c.description, c.created_at, c.reporter_channel)
            for c in ticket.co_reporters
        ]
        for reporter_id, reporter_name, group_id, description, reported_at, channel in joining:
            if not target.reported_by(reporter_id):
                target.co_reporters.append(
                    TicketReporter(
                        reporter_id=reporter_id,
                        reporter_name=reporter_name,
                        group_id=group_id,
                        reporter_channel=channel,
                        description=description,
                        created_at=reported_at,
                    )
                )
        emergency_kind = next((e.note for e in ticket.events if e.action == EMERGENCY_ACTION), None)
        self._raise(target, ticket.colour == "red", ticket.deadline_at, emergency_kind, ticket.description)
        target.record("merge_in", actor.id, actor.role, note=ticket.number)
        self._save(target)
        return self._save(ticket)

    def _same_community(self, a: Ticket, b: Ticket) -> bool:
        grid_a, grid_b = self.session.get(Grid, a.grid_code), self.session.get(Grid, b.grid_code)
        return grid_a is not None and grid_b is not None and grid_a.community_code == grid_b.community_code

    def change_triage(
        self, number: str, actor: Actor, *, colour: str | None, deadline_at: datetime | None, reason: str
    ) -> Ticket:
        """Workers and leads may recolour a ticket or move its deadline, always with a reason on record."""
        ticket = self.get(number)
        self._require_handler(ticket, actor)
        if not reason.strip():
            raise TicketError("reason_required", number=ticket.number)
        changes = []
        if colour is not None:
            if colour not in COLOURS:
                raise TicketError("unknown_colour", colour=colour)
            changes.append(f"colour {ticket.colour}→{colour}")
            ticket.colour = colour
        if deadline_at is not None:
            if deadline_at <= ticket.created_at:
                raise TicketError("deadline_before_report", number=ticket.number)
            changes.append(f"deadline {ticket.deadline_at.isoformat()}→{deadline_at.isoformat()}")
            ticket.deadline_at = deadline_at
            ticket.reminded_at = ticket.overdue_notified_at = None
        ticket.record("triage", actor.id, actor.role, note=f"{'; '.join(changes)}：{reason}")
        return self._save(ticket)

    # --- helpers ---------------------------------------------------------------------------------

    def _free_for(self, ticket: Ticket, actor: Actor) -> bool:
        """A pooled ticket is free for a worker of its grid: by role too, since a resident may carry a worker's id."""
        if actor.role is not Role.WORKER:
            return False
        worker = self.session.get(Worker, actor.id)
        return ticket.assignee_id is None and worker is not None and worker.grid_code == ticket.grid_code

    def _leads(self, ticket: Ticket, actor: Actor) -> bool:
        """An admin, or a lead of the ticket's community."""
        if actor.role is Role.ADMIN:
            return True
        worker = self.session.get(Worker, actor.id)
        if worker is None or worker.role != "lead":
            return False
        ticket_grid, lead_grid = self.session.get(Grid, ticket.grid_code), self.session.get(Grid, worker.grid_code)
        return ticket_grid is not None and lead_grid is not None and ticket_grid.community_code == lead_grid.community_code

    def _require_handler(self, ticket: Ticket, actor: Actor) -> None:
        """Transfer, escalate and triage are for the assignee or the community's lead."""
        if actor.role in (Role.LEAD, Role.ADMIN):
            self._require(self._leads(ticket, actor), "not_your_community", ticket)
        else:
            self._require(ticket.assignee_id == actor.id, "not_assignee", ticket)

    @staticmethod
    def _require(condition: bool, code: str, ticket: Ticket) -> None:
        if not condition:
            raise TicketError(code, number=ticket.number)

    def _save(self, ticket: Ticket) -> Ticket:
        try:
            self.session.flush()
        except StaleDataError as exc:
            raise TicketError("conflict", number=ticket.number) from exc
        return ticket

    def _next_number(self) -> str:
        """GD + local date + a per-day sequence; the counter row is locked so parallel reports never collide
        (the day's first reports too: its row is created if missing without failing when another just did)."""
        day = utcnow().astimezone(LOCAL_TZ).strftime("%Y%m%d")
        insert_ignoring_conflicts(self.session, TicketCounter.__table__, [{"day": day, "last": 0}], ["day"])
        counter = self.session.scalar(select(TicketCounter).where(TicketCounter.day == day).with_for_update())
        assert counter is not None
        counter.last += 1
        self.session.flush()
        return f"GD{day}-{counter.last:04d}"
