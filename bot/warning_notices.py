"""What the community lead is told when reports cluster (grid/warnings.py): one private message per warning, with
the tickets, their places and a short summary; a red one also goes to the street's contacts (街道). Texts:
bot/texts/zh.yml `warnings`."""

from __future__ import annotations

from collections.abc import Iterable

from bot.messages import OutgoingMessage, TargetType
from bot.texts import colour_name
from bot.texts import text as t
from grid.warnings import RaisedWarning

# A message a lead reads on a phone: the first tickets, then how many more (the console lists them all).
MAX_TICKET_LINES = 8
MAX_DESCRIPTION_CHARS = 40


def _hours(hours: float) -> str:
    return str(int(hours)) if float(hours).is_integer() else f"{hours:g}"


def _clip(text: str, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _street_line(raised: RaisedWarning, *, for_street: bool) -> str:
    """Red only: the lead learns whom at the street was told (or that only the platform was); a street contact's
    copy names the lead who has it."""
    if raised.colour != "red":
        return ""
    if raised.street is None:
        return t("warnings.no_street")
    street = raised.street[1]
    if for_street:
        if raised.lead is None:
            return t("warnings.street_copy_no_lead", street=street)
        return t("warnings.street_copy", street=street, lead=raised.lead.name)
    if raised.street_contacts:
        names = t("warnings.names_join").join(p.name for p in raised.street_contacts)
        return t("warnings.street_told", street=street, names=names)
    return t("warnings.street", street=street)


def warning_text(raised: RaisedWarning, *, for_street: bool = False) -> str:
    lines = [
        t(
            "warnings.ticket",
            number=ticket.number,
            colour_name=colour_name(ticket.colour),
            location=ticket.location or t("warnings.no_place"),
            description=_clip(ticket.description),
            reporters=t("warnings.reporters", count=ticket.reports) if ticket.reports > 1 else "",
        )
        for ticket in raised.tickets[:MAX_TICKET_LINES]
    ]
    if len(raised.tickets) > MAX_TICKET_LINES:
        lines.append(t("warnings.more", count=len(raised.tickets) - MAX_TICKET_LINES))
    street = _street_line(raised, for_street=for_street)
    title = t("warnings.title_grown", previous=raised.grown_from) if raised.grown_from else t("warnings.title")
    return t(
        f"warnings.{raised.rule.value}",
        title=title,
        community=raised.community_name,
        hours=_hours(raised.hours),
        count=raised.reports,
        summary=_clip(raised.summary),
        category=raised.category,
        places=t("warnings.places_join").join(raised.places) or t("warnings.no_place"),
        tickets="\n".join(lines),
        street=street,
    )


def warning_notices(raised: Iterable[RaisedWarning]) -> list[OutgoingMessage]:
    """One private message to the community lead per warning raised or grown (none when the community has no lead:
    the warning is still in the console and the outbox), and for a red one to each of the street's contacts; each
    goes out on the person's own channel (bot/channels/dispatch.py)."""
    messages = []
    for warning in raised:
        if warning.lead is not None:
            messages.append(OutgoingMessage(TargetType.CONTACT, warning.lead.worker_id, warning_text(warning)))
        for person in warning.street_contacts:
            messages.append(OutgoingMessage(TargetType.CONTACT, person.worker_id, warning_text(warning, for_street=True)))
    return messages
