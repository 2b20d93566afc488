"""The ticket lifecycle 问→派→转→办→审→回 as data: which action moves which states, and who may take it.

Who may act is checked twice: here by role, and in grid.service by relation (the assignee, a worker of
the ticket's grid, the reporter), because a role alone does not make a worker responsible for a ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    SUBMITTED = "submitted"  # 问: reported, not yet with anyone
    DISPATCHED = "dispatched"  # 派: routed to the grid's worker
    TRANSFERRED = "transferred"  # 转: handed to another worker
    ESCALATED = "escalated"  # 乡呼县应: reported up to a department
    IN_PROGRESS = "in_progress"  # 办: someone took it on
    RESOLVED = "resolved"  # result reported, waiting for review / the resident
    REVIEWED = "reviewed"  # 审: the community lead checked the result
    CLOSED = "closed"  # 回: the resident's rating (or the rating window) closed it
    REOPENED = "reopened"  # 不满意: back to work
    MERGED = "merged"  # a duplicate folded into another ticket
    CANCELLED = "cancelled"


class Role(StrEnum):
    SYSTEM = "system"
    WORKER = "worker"
    LEAD = "lead"  # community lead (社区负责人): dispatches, reviews, gets red and overdue tickets
    DEPARTMENT = "department"
    RESIDENT = "resident"
    ADMIN = "admin"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[Status]
    target: Status
    roles: frozenset[Role]


def _s(*statuses: Status) -> frozenset[Status]:
    return frozenset(statuses)


def _r(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


S = Status
R = Role
WITH_A_WORKER = _s(S.DISPATCHED, S.TRANSFERRED, S.IN_PROGRESS, S.REOPENED)
OPEN_STATUSES = _s(S.SUBMITTED, S.DISPATCHED, S.TRANSFERRED, S.ESCALATED, S.IN_PROGRESS, S.REOPENED)
WAITING_FOR_RESIDENT = _s(S.RESOLVED, S.REVIEWED)

TRANSITIONS: dict[str, Transition] = {
    "dispatch": Transition(_s(S.SUBMITTED, S.REOPENED), S.DISPATCHED, _r(R.SYSTEM, R.LEAD, R.ADMIN)),
    "transfer": Transition(WITH_A_WORKER, S.TRANSFERRED, _r(R.WORKER, R.LEAD, R.ADMIN)),
    "escalate": Transition(WITH_A_WORKER, S.ESCALATED, _r(R.WORKER, R.LEAD, R.ADMIN)),
    "accept": Transition(_s(S.DISPATCHED, S.TRANSFERRED, S.ESCALATED, S.REOPENED), S.IN_PROGRESS, _r(R.WORKER, R.DEPARTMENT)),
    "return": Transition(_s(S.DISPATCHED, S.TRANSFERRED), S.SUBMITTED, _r(R.WORKER)),
    "resolve": Transition(WITH_A_WORKER | _s(S.ESCALATED), S.RESOLVED, _r(R.WORKER, R.DEPARTMENT, R.LEAD)),
    "review": Transition(_s(S.RESOLVED), S.REVIEWED, _r(R.LEAD, R.ADMIN)),
    "reject": Transition(_s(S.RESOLVED), S.IN_PROGRESS, _r(R.LEAD, R.ADMIN)),
    "close": Transition(WAITING_FOR_RESIDENT, S.CLOSED, _r(R.RESIDENT, R.SYSTEM, R.LEAD, R.ADMIN)),
    "reopen": Transition(WAITING_FOR_RESIDENT, S.REOPENED, _r(R.RESIDENT)),
    "merge": Transition(OPEN_STATUSES, S.MERGED, _r(R.SYSTEM, R.WORKER, R.LEAD, R.ADMIN)),
    "cancel": Transition(_s(S.SUBMITTED, S.DISPATCHED, S.TRANSFERRED, S.REOPENED), S.CANCELLED, _r(R.RESIDENT, R.LEAD, R.ADMIN)),
}


class TicketError(Exception):
    """A refused request on a ticket; `code` picks the sentence the chat or API layer shows."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(f"{code}: {params}")
        self.code = code
        self.params = params


def check_transition(action: str, status: Status, role: Role) -> Transition:
    transition = TRANSITIONS.get(action)
    if transition is None:
        raise TicketError("unknown_action", action=action)
    if role not in transition.roles:
        raise TicketError("role_not_allowed", action=action, role=role.value)
    if status not in transition.sources:
        raise TicketError("invalid_transition", action=action, status=status.value)
    return transition
