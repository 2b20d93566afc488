"""The ticket lifecycle 问→派→转→办→审→回 as data: which action moves which states, and who may take it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    SUBMITTED = "submitted"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    CANCELLED = "cancelled"


class Role(StrEnum):
    SYSTEM = "system"
    WORKER = "worker"
    RESIDENT = "resident"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[Status]
    target: Status
    roles: frozenset[Role]


_OPEN_FOR_WORK = frozenset({Status.DISPATCHED, Status.IN_PROGRESS, Status.REOPENED})

TRANSITIONS: dict[str, Transition] = {
    # 派: the system routes a new or reopened ticket to the grid's worker.
    "dispatch": Transition(frozenset({Status.SUBMITTED, Status.REOPENED}), Status.DISPATCHED, frozenset({Role.SYSTEM})),
    # 办: the worker takes it on and reports the result.
    "accept": Transition(frozenset({Status.DISPATCHED, Status.REOPENED}), Status.IN_PROGRESS, frozenset({Role.WORKER})),
    "resolve": Transition(_OPEN_FOR_WORK, Status.RESOLVED, frozenset({Role.WORKER})),
    # 回: the resident's rating decides closure; 不满意 sends it back.
    "close": Transition(frozenset({Status.RESOLVED}), Status.CLOSED, frozenset({Role.RESIDENT, Role.SYSTEM})),
    "reopen": Transition(frozenset({Status.RESOLVED}), Status.REOPENED, frozenset({Role.RESIDENT})),
    "cancel": Transition(
        frozenset({Status.SUBMITTED, Status.DISPATCHED, Status.REOPENED}),
        Status.CANCELLED,
        frozenset({Role.RESIDENT, Role.WORKER}),
    ),
}

OPEN_STATUSES = frozenset({Status.SUBMITTED, Status.DISPATCHED, Status.IN_PROGRESS, Status.REOPENED})


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
