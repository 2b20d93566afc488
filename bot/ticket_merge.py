"""A worker's `合并 GD…新 GD…旧` in private chat: fold a duplicate into the ticket that handles the problem (并单).

The duplicate check flags a report it is unsure of (可能重复：GD…, grid/duplicates.py) and files it; the worker, who
has seen both places, folds it in with one command. The app carries the command out itself, like a question back to
a worker (bot/worker_desk.py), so it needs no Rasa intent: the merged ticket's reporters are told which ticket now
handles their problem, and hear again when it is resolved, as co-reporters. The console does the same through
`POST /api/v1/tickets/{number}/actions` with `{"action": "merge", "target": …}`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.commands import MergeCommand
from bot.messages import OutgoingMessage
from bot.texts import error_text, status_name
from bot.texts import text as t
from bot.ticket_notices import notices_for
from grid.service import TicketService
from grid.workflow import TicketError
from storage.engine import with_reconnect


def merge_by_worker(
    factory: sessionmaker[Session], sender_id: str, channel: str, command: MergeCommand
) -> tuple[str, list[OutgoingMessage]]:
    """The worker's reply, and the notices to the merged ticket's reporters (and to whoever a raise concerns)."""
    if command.number is None or command.into is None:
        return t("errors.merge_usage"), []
    number, into = command.number, command.into

    def merge(session: Session) -> tuple[str, list[OutgoingMessage]]:
        service = TicketService(session)
        actor = service.actor_for(sender_id, channel)
        ticket = service.merge(number, into, actor)
        target = service.get(into)
        reply = t(
            "tickets.worker_merged",
            number=ticket.number,
            target=target.number,
            status_name=status_name(target.status),
            count=1 + len(ticket.co_reporters),
        )
        return reply, notices_for(session, ticket, "merge", actor.id)

    try:
        return with_reconnect(factory, merge)
    except TicketError as err:
        return error_text(err.code, err.params), []
