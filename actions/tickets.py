"""The resident and worker sides of the ticket loop: report form, submit, 办结, rating, status."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.context import Speaker, deliver, deliver_message, entity, speaker
from actions.format import run_messages
from actions.places import whole_place
from actions.policy import Events
from actions.runtime import in_transaction, services
from actions.unplaced import nothing_open, place, too_long_for_small_talk
from bot.texts import error_text, local_time, status_name
from bot.texts import text as t
from bot.ticket_notices import emergency_advice, filing_notices, notices_for, told_text
from bot.warning_notices import warning_notices
from grid.geography import Worker
from grid.ratings import Rating, parse_rating
from grid.service import Filing, TicketService
from grid.workflow import TicketError

Messages = list[dict[str, Any]]

_LOCATION_FILLERS = re.compile(r"^(就在|在|是|位置是|地址是|地点是)|(那里|那边|这里|这边|附近|旁边)$")
_HAS_PLACE = re.compile(r"[\u4e00-\u9fff0-9]")
MAX_LOCATION_CHARS = 100


def clean_location(value: str) -> str | None:
    """'就在3号楼那边' → '3号楼'; empty or unreadable answers are refused so the form asks again."""
    cleaned = _LOCATION_FILLERS.sub("", value.strip(" ，。,.!！?？")).strip()
    if not cleaned or len(cleaned) > MAX_LOCATION_CHARS or not _HAS_PLACE.search(cleaned):
        return None
    return cleaned


class ValidateReportForm(FormValidationAction):
    def name(self) -> str:
        return "validate_report_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        """A report made in private chat without a grid of its own: ask nothing, the submit step says where to report."""
        if not speaker(tracker).can_report:
            return []
        return domain_slots

    def validate_location(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """The place as the resident said it: NLU's pieces (a list when it tagged two) joined into the whole spot;
        a free answer to "where?" (the whole text) is kept as said."""
        latest = tracker.latest_message or {}
        whole = whole_place(latest.get("text") or "", latest.get("entities") or [])
        pieces = slot_value if isinstance(slot_value, list) else [slot_value] if slot_value else []
        if whole and all(str(piece) in whole for piece in pieces):
            slot_value = whole
        if isinstance(slot_value, list):
            slot_value = slot_value[0] if slot_value else None
        return {"location": clean_location(str(slot_value)) if slot_value else None}

    def validate_issue_description(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Keep the first description: an answer to "where?" that NLU also reads as a report must not replace it.

        A new description that is an emergency, said without a place, gets its advice (whom to call) at once."""
        if tracker.get_slot("requested_slot") not in (None, "issue_description"):
            earlier = value_before_latest_message(tracker, "issue_description")
            if earlier:
                return {"issue_description": earlier}
        value = str(slot_value or "").strip()
        if value and not (tracker.slots_to_validate().get("location") or tracker.get_slot("location")):
            # The form asks "where?" next; whom to call in an emergency cannot wait for that answer (the reply
            # that files the ticket says it again).
            triage = services().emergencies
            found = triage.recognise(value) if triage and speaker(tracker).can_report else None
            if found is not None:
                dispatcher.utter_message(text=emergency_advice(found.kind))
        return {"issue_description": value or None}


def value_before_latest_message(tracker: Tracker, slot: str) -> Any:
    """The slot's value as it stood before the latest user message was processed."""
    before_latest_message = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            before_latest_message = True
        elif before_latest_message and event.get("event") == "slot" and event.get("name") == slot:
            return event.get("value")
    return None


class ActionClearReport(Action):
    """Forget a report the resident abandoned, so its description never leaks into the next one."""

    def name(self) -> str:
        return "action_clear_report"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        return [SlotSet("issue_description", None), SlotSet("location", None)]


class ActionSubmitTicket(Action):
    def name(self) -> str:
        return "action_submit_ticket"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        description = tracker.get_slot("issue_description") or ""
        location = tracker.get_slot("location") or ""
        category_hint = entity(tracker, "issue_category")
        run_messages(dispatcher, await in_transaction(lambda s: self._file(s, who, description, location, category_hint)))
        return [SlotSet("issue_description", None), SlotSet("location", None), SlotSet("requested_slot", None)]

    def _file(self, session: Session, who: Speaker, description: str, location: str, hint: str | None) -> Messages:
        if not who.can_report:
            return [{"text": t("tickets.not_a_group")}]
        service = TicketService(session, services().emergencies, services().warnings, duplicates=services().duplicates)
        try:
            filing = service.file_report(
                group_id=who.group_id,
                grid_code=None if who.group_id else who.grid_code,  # a private report of a person with a grid
                reporter_channel=None if who.group_id else who.channel,  # …who is told privately there of its outcome
                reporter_id=who.sender_id,
                reporter_name=who.sender_name,
                description=description,
                location=location,
                category_hint=hint,
                duplicate_window=services().duplicate_window,
            )
        except TicketError as err:
            return [{"text": error_text(err.code, err.params)}]
        # A burst of reports (this one included, new ticket or co-report) warns the community lead (预警).
        warned = [{"json_message": deliver_message(notice)} for notice in warning_notices(filing.warnings)]
        return [*self._replies(session, filing), *warned]

    def _replies(self, session: Session, filing: Filing) -> Messages:
        """The resident's reply and the notices of the ticket filed or joined."""
        ticket = filing.ticket
        common = {
            "number": ticket.number,
            "category": ticket.category,
            "location": ticket.location,
            "deadline": local_time(ticket.deadline_at),
        }
        if filing.emergency is not None:
            # Whom to call comes first, in this very reply: the ticket brings a worker in minutes, 119 in fewer.
            advice, kind_name = emergency_advice(filing.emergency.kind), filing.emergency.kind.name
            if filing.duplicate:  # the ticket joined was raised to an emergency if it was none: its people are told why
                joined = t("tickets.duplicate_emergency", advice=advice, number=ticket.number)
                return [{"text": joined}, *({"json_message": deliver_message(n)} for n in filing_notices(session, filing))]
            filed = t("tickets.filed_emergency", **common, advice=advice, kind_name=kind_name, told=told_text(session, filing))
            return [{"text": filed}, *({"json_message": deliver_message(n)} for n in filing_notices(session, filing))]
        if filing.duplicate:
            template = "tickets.duplicate_raised" if filing.raised_by else "tickets.duplicate"
            said = t(template, **common, status_name=status_name(ticket.status))
            return [{"text": said}, *({"json_message": deliver_message(n)} for n in filing_notices(session, filing))]
        worker = session.get(Worker, ticket.assignee_id) if ticket.assignee_id else None
        messages: Messages = [
            {"text": t("tickets.filed", **common, worker_name=worker.name) if worker else t("tickets.filed_no_worker", **common)}
        ]
        messages.extend({"json_message": deliver_message(notice)} for notice in filing_notices(session, filing))
        return messages


class ActionWorkerResolve(Action):
    def name(self) -> str:
        return "action_worker_resolve"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        number = entity(tracker, "ticket_number")
        result = (entity(tracker, "command_text") or "").strip()
        if not number or not result:
            dispatcher.utter_message(text=t("errors.command_usage"))
            return []
        run_messages(dispatcher, await in_transaction(lambda s: self._resolve(s, who, number, result)))
        return []

    def _resolve(self, session: Session, who: Speaker, number: str, result: str) -> Messages:
        service = TicketService(session)
        try:
            ticket = service.resolve(number, service.actor_for(who.sender_id, who.channel), result)
        except TicketError as err:
            return [{"text": error_text(err.code, err.params)}]
        messages: Messages = [{"text": t("tickets.worker_resolved_ack", number=ticket.number)}]
        messages += [{"json_message": deliver_message(m)} for m in notices_for(session, ticket, "resolve", who.sender_id, result)]
        return messages


class ActionRateService(Action):
    def name(self) -> str:
        return "action_rate_service"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        said = (tracker.latest_message or {}).get("text") or ""
        rating = parse_rating(said, entity(tracker, "rating"))
        if rating is None:
            # No rating in the words. Only a resident asked to rate is asked again; otherwise, or when the message is
            # too long to be a rating, it is a request NLU misread (a pollution complaint was told to reply 满意/不满意,
            # a bus title 405公交上班高峰期等不到车 too): placed like any message NLU could not place.
            awaited = await in_transaction(lambda s: TicketService(s).awaiting_rating(who.sender_id, who.group_id) is not None)
            if not awaited or too_long_for_small_talk(said):
                return await place(dispatcher, tracker)
            dispatcher.utter_message(text=t("tickets.rating_unclear"))
            return []
        run_messages(dispatcher, await in_transaction(lambda s: self._rate(s, who, rating, said)))
        return []

    def _rate(self, session: Session, who: Speaker, rating: Rating, said: str) -> Messages:
        try:
            ticket = TicketService(session).rate(reporter_id=who.sender_id, group_id=who.group_id, rating=rating, comment=said)
        except TicketError as err:
            return [{"text": error_text(err.code, err.params)}]
        if rating is not Rating.UNSATISFIED:
            return [{"text": t("tickets.rated_closed", rating=rating.value, number=ticket.number)}]
        messages: Messages = [{"text": t("tickets.rated_reopened", number=ticket.number)}]
        if ticket.assignee_id:
            notice = t("tickets.worker_reopened", number=ticket.number, comment=said)
            messages.append({"json_message": deliver("contact", ticket.assignee_id, notice)})
        return messages


class ActionTicketStatus(Action):
    def name(self) -> str:
        return "action_ticket_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        number = entity(tracker, "ticket_number")
        said = (tracker.latest_message or {}).get("text") or ""
        messages, events = await in_transaction(lambda s: self._status(s, who, number, said))
        run_messages(dispatcher, messages)
        return events

    def _status(self, session: Session, who: Speaker, number: str | None, said: str) -> tuple[Messages, Events]:
        """The resident's tickets, or what the words were really about; events remember a "您想问的是" offer."""
        service = TicketService(session)
        if number:
            try:
                tickets = [service.get(number)]
            except TicketError as err:
                return [{"text": error_text(err.code, err.params)}], []
        else:
            tickets = service.open_tickets_of(who.sender_id)
        if not tickets and not number and who.addressed:
            return nothing_open(session, who, said)
        if not tickets:
            return ([{"text": t("tickets.status_none")}] if who.addressed else []), []
        lines = [
            t(
                "tickets.status_line",
                number=x.number,
                category=x.category,
                location=x.location,
                status_name=status_name(x.status),
                deadline=local_time(x.deadline_at),
            )
            for x in tickets[:5]
        ]
        return [{"text": "\n".join([t("tickets.status_header"), *lines])}], []
