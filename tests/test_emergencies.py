"""Life-safety emergencies recognised by meaning (grid/emergencies.py), on both databases.

The recogniser is the real one (the offline e5 model `make setup` builds, trained on grid/data/emergencies.yml);
the phrasings here are neither its exemplars nor benchmark lines. A report is filed through the ticket service
and the re-notice round runs against the database, as in tests/test_deadlines.py: each test gets a community,
grid, worker and lead of its own, and timestamps are moved into the past so `now` is the real time. The
resident's reply is checked over /webhook as Rasa calls the action (tests/test_unplaced.py), without NLU.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.deadline_job import check_emergencies
from bot.messages import TargetType
from bot.rasa_process import cache_dir
from bot.rasa_tokens import ACTION_TOKEN_HEADER, action_token
from bot.runtime import build_services
from bot.settings import PROJECT_ROOT, Settings
from bot.texts import text as t
from bot.ticket_notices import filing_notices
from grid.categories import category_named
from grid.deadlines import Audience, EmergencyRenotice, due_emergency_renotices
from grid.emergencies import (
    EmergencyTriage,
    KeywordRecogniser,
    MeaningRecogniser,
    Recogniser,
    load_recogniser,
    load_table,
    read_phrasings,
)
from grid.geography import ChatGroup
from grid.service import Actor, Filing, TicketService
from grid.tickets import Ticket
from grid.workflow import Role
from knowledge.embeddings import load_embedder
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.areas import Area, race_twice
from tests.servers import Chat, action_call, app_server, free_port

TRAPPED = "8号楼电梯困人了 快来人"
EVERY = timedelta(minutes=5)


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    """The app's recogniser, from the same cache the app reads (so the app started below loads it, not trains it)."""
    embedder = load_embedder("auto")
    assert embedder is not None, "no offline e5 model: run `make setup`"
    found = load_recogniser(embedder, cache_dir() / "emergencies")
    assert isinstance(found, MeaningRecogniser)
    return found


# --- recognition ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (TRAPPED, "lift_trapped"),
        ("楼下着火了 烟很大", "fire"),
        ("厨房里好大的煤气味", "gas_leak"),
        ("有个老人晕倒在小区门口了", "person_down"),
    ],
)
def test_an_emergency_is_recognised_with_its_kind(recogniser: Recogniser, text: str, kind: str) -> None:
    found = recogniser.recognise(text)
    assert found is not None and found.kind.code == kind, found


@pytest.mark.parametrize(
    "text",
    [
        "电梯坏了好几天了",  # a fault, nobody inside
        "邻居在楼道抽烟",  # smoke that is not a fire
        "上个月电梯困人 后来修好了没",  # over
        "电梯困人了应该找谁",  # a question
        "如果着火了怎么逃生",  # a hypothetical
        "消防通道堆满了杂物",  # a hazard (red by the category keywords), not an emergency
    ],
)
def test_a_near_miss_is_not_an_emergency(recogniser: Recogniser, text: str) -> None:
    assert recogniser.recognise(text) is None


def test_a_cached_recogniser_decides_as_the_freshly_trained_one(recogniser: Recogniser, tmp_path: Any) -> None:
    embedder = load_embedder("auto")
    trained = load_recogniser(embedder, tmp_path)  # nothing cached there: trains, then writes the cache
    [cached_file] = list(tmp_path.glob("emergencies-*.npz"))
    again = load_recogniser(embedder, tmp_path)
    assert isinstance(trained, MeaningRecogniser) and isinstance(again, MeaningRecogniser)
    assert again.model.threshold == trained.model.threshold and cached_file.is_file()
    texts = [TRAPPED, "电梯坏了好几天了", "楼下着火了 烟很大"]
    assert [k for _, k in again.scores(texts)] == [k for _, k in trained.scores(texts)]
    assert trained.model.calibration_recall == 1.0  # every calibration emergency is above the threshold


def test_without_a_model_the_kind_keywords_decide_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="grid.emergencies"):
        fallback = load_recogniser(None)
    assert isinstance(fallback, KeywordRecogniser) and "keywords only" in caplog.text
    found = fallback.recognise(TRAPPED)
    assert found is not None and found.kind.code == "lift_trapped"
    assert fallback.recognise("电梯坏了好几天了") is None


def test_every_kind_tells_the_resident_its_numbers_and_files_red() -> None:
    table = load_table()
    category = category_named(table.category)
    assert category is not None and category.colour == "red"
    for kind in table.kinds:
        advice = t(f"emergencies.advice.{kind.code}")
        assert kind.numbers and all(number in advice for number in kind.numbers), kind.code


def test_the_benchmark_is_held_out_and_large_enough() -> None:
    from bench.emergencies import BENCH_FILE, check_held_out

    bench = read_phrasings(BENCH_FILE)
    check_held_out(bench)  # raises SystemExit on a line shared with the exemplars or the calibration file
    assert len(bench) >= 150 and {p.kind for p in bench} >= {None, *(k.code for k in load_table().kinds)}
    assert BENCH_FILE.is_relative_to(PROJECT_ROOT)


# --- filing ----------------------------------------------------------------------------------------------------


def _file(
    factory: sessionmaker[Session], area: Area, text: str, place: str, triage: EmergencyTriage | None
) -> tuple[Filing, list[tuple[str, str]]]:
    """File a report; the filing and its notices as (recipient, text), read inside the transaction."""
    with unit_of_work(factory) as session:
        filing = TicketService(session, triage).file_report(
            group_id=None,
            reporter_id=f"r-em-{uuid.uuid4().hex[:8]}",
            reporter_name="居民",
            description=text,
            location=place,
            grid_code=area.grid,
        )
        notices = [(m.target_id, m.text) for m in filing_notices(session, filing)] if not filing.duplicate else []
        return filing, notices


def _ticket(session: Session, number: str) -> Ticket:
    ticket = session.scalar(select(Ticket).where(Ticket.number == number))
    assert ticket is not None
    return ticket


def _history(factory: sessionmaker[Session], number: str) -> list[tuple[str, str | None]]:
    with factory() as session:
        return [(e.action, e.note) for e in _ticket(session, number).events]


def _place() -> str:
    return f"8号楼{uuid.uuid4().hex[:6]}单元"


def test_a_trapped_lift_is_red_due_at_once_and_both_worker_and_lead_are_told(
    session_factory: sessionmaker[Session], area: Area, recogniser: Recogniser
) -> None:
    filing, notices = _file(session_factory, area, TRAPPED, _place(), EmergencyTriage(recogniser))
    ticket = filing.ticket
    assert filing.emergency is not None and filing.emergency.kind.code == "lift_trapped"
    assert (ticket.colour, ticket.category) == ("red", "安全隐患")
    assert ticket.deadline_at - ticket.created_at == timedelta(hours=1)
    assert ticket.assignee_id == area.worker and [w.id for w in filing.notify] == [area.lead]
    told = dict(notices)
    assert set(told) == {area.worker, area.lead}
    assert told[area.worker].startswith("【紧急工单】") and "电梯困人" in told[area.worker] and "96333" in told[area.worker]
    assert told[area.lead].startswith("【抄送社区负责人】") and "【紧急工单】" in told[area.lead]
    assert _history(session_factory, ticket.number) == [("submit", None), ("emergency", "电梯困人"), ("dispatch", area.worker)]


def test_without_a_recogniser_the_old_rule_files_it_yellow(session_factory: sessionmaker[Session], area: Area) -> None:
    """The observed bug, kept visible: the keyword rule alone makes 电梯困人 a two-day 物业管理 ticket, which is why
    the chat's report form files with the recogniser the app injects."""
    filing, _ = _file(session_factory, area, TRAPPED, _place(), None)
    assert filing.emergency is None and (filing.ticket.colour, filing.ticket.category) == ("yellow", "物业管理")


def test_a_near_miss_is_filed_as_before(session_factory: sessionmaker[Session], area: Area, recogniser: Recogniser) -> None:
    filing, notices = _file(session_factory, area, "8号楼电梯坏了 一直停在一楼", _place(), EmergencyTriage(recogniser))
    ticket = filing.ticket
    assert filing.emergency is None and (ticket.colour, ticket.category) == ("yellow", "物业管理")
    assert ticket.deadline_at - ticket.created_at == timedelta(hours=48)
    assert [who for who, _ in notices] == [area.worker]
    assert "emergency" not in [a for a, _ in _history(session_factory, ticket.number)]


def test_a_second_report_joins_the_emergency_but_a_hazard_there_does_not(
    session_factory: sessionmaker[Session], area: Area, recogniser: Recogniser
) -> None:
    triage, place = EmergencyTriage(recogniser), _place()
    first, _ = _file(session_factory, area, TRAPPED, place, triage)
    again, _ = _file(session_factory, area, "电梯里关着人 出不来", place, triage)
    assert again.duplicate and again.ticket.number == first.ticket.number
    assert again.emergency is not None and again.emergency.kind.code == "lift_trapped"  # told whom to call, too
    hazard, _ = _file(session_factory, area, "消防通道堆满了杂物 很危险", place, triage)  # red by keywords, 安全隐患 too
    assert not hazard.duplicate and hazard.emergency is None and hazard.ticket.category == "安全隐患"
    assert hazard.ticket.deadline_at - hazard.ticket.created_at == timedelta(hours=4)


# --- told again while nobody accepts -------------------------------------------------------------------------------


def _filed_minutes_ago(factory: sessionmaker[Session], number: str, now: datetime, minutes: float) -> None:
    with unit_of_work(factory) as session:
        ticket = _ticket(session, number)
        span = ticket.deadline_at - ticket.created_at
        ticket.created_at = now - timedelta(minutes=minutes)
        ticket.deadline_at = ticket.created_at + span


def _round(factory: sessionmaker[Session], now: datetime, numbers: list[str]) -> dict[str, EmergencyRenotice]:
    with unit_of_work(factory) as session:
        claimed = due_emergency_renotices(session, now, EVERY)
    mine = [r for r in claimed if r.number in numbers]
    assert len({r.number for r in mine}) == len(mine), "a ticket got two re-notices in one round"
    return {r.number: r for r in mine}


def test_an_unaccepted_emergency_is_told_again_once_per_interval_until_accepted(
    session_factory: sessionmaker[Session], area: Area, recogniser: Recogniser
) -> None:
    now = utcnow()
    emergency, _ = _file(session_factory, area, TRAPPED, _place(), EmergencyTriage(recogniser))
    hazard, _ = _file(session_factory, area, "消防通道堆满了杂物 很危险", _place(), EmergencyTriage(recogniser))
    number = emergency.ticket.number
    numbers = [number, hazard.ticket.number]
    for filed in numbers:
        _filed_minutes_ago(session_factory, filed, now, 6)
    assert _round(session_factory, now - timedelta(minutes=2), numbers) == {}  # 4 minutes after filing: not yet
    first = _round(session_factory, now, numbers)
    assert list(first) == [number]  # the red hazard is not an emergency: 督办 chases it, not this round
    assert [(r.worker_id, r.audience) for r in first[number].recipients] == [
        (area.worker, Audience.ASSIGNEE),
        (area.lead, Audience.LEAD),
    ]
    assert first[number].kind_name == "电梯困人"
    assert _round(session_factory, now, numbers) == {}  # the same round again: nothing
    assert _round(session_factory, now + timedelta(minutes=4), numbers) == {}  # before the next interval
    assert list(_round(session_factory, now + EVERY, numbers)) == [number]  # the next interval: once more
    with unit_of_work(session_factory) as session:
        TicketService(session).accept(number, Actor(area.worker, Role.WORKER))
    assert _round(session_factory, now + 3 * EVERY, numbers) == {}  # accepted: nobody is chased
    history = _history(session_factory, number)
    assert [note for action, note in history if action == "renotice"] == [f"{area.worker},{area.lead}"] * 2


def test_two_processes_racing_renotice_once(session_factory: sessionmaker[Session], area: Area, recogniser: Recogniser) -> None:
    now = utcnow()
    numbers = [_file(session_factory, area, TRAPPED, _place(), EmergencyTriage(recogniser))[0].ticket.number for _ in range(3)]
    for number in numbers:
        _filed_minutes_ago(session_factory, number, now, 6)

    def claim(session: Session) -> list[str]:
        return [r.number for r in due_emergency_renotices(session, now, EVERY) if r.number in numbers]

    results = race_twice(session_factory, claim)
    assert sorted(n for claimed in results for n in claimed) == sorted(numbers)
    for number in numbers:
        assert [a for a, _ in _history(session_factory, number)].count("renotice") == 1


def test_the_job_tells_the_worker_and_the_lead_on_their_channel(database_url: str, area: Area, recogniser: Recogniser) -> None:
    services = build_services(Settings(database_url=database_url, rasa_url="http://127.0.0.1:9", kb_embedding_model="none"))
    factory = services.session_factory
    now = utcnow()
    filing, _ = _file(factory, area, TRAPPED, _place(), EmergencyTriage(recogniser))
    number = filing.ticket.number
    _filed_minutes_ago(factory, number, now, 7)

    async def rounds() -> None:
        try:
            await check_emergencies(services)
            await check_emergencies(services)  # the second round, at once: nothing new
        finally:
            await services.aclose()

    asyncio.run(rounds())

    def texts(contact: str) -> list[str]:
        return [m.text for m in services.webchat.transcript(TargetType.CONTACT, contact) if number in m.text]

    [to_worker] = texts(area.worker)
    assert to_worker.startswith("【紧急工单仍未接单】") and "电梯困人" in to_worker and f"接单 {number}" in to_worker
    assert "7分钟" in to_worker
    [to_lead] = texts(area.lead)
    assert to_lead.startswith("【紧急工单仍未接单】") and "周网格尚未接单" in to_lead
    services.engine.dispose()


# --- the resident's reply -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook(database_url: str, recogniser: Recogniser) -> Iterator[httpx.Client]:
    """The app with the default embedding model (`auto`): it loads the recogniser the fixture above cached."""
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port())
    with (
        app_server(settings) as url,
        httpx.Client(base_url=url, timeout=30, headers={ACTION_TOKEN_HEADER: action_token()}) as client,
    ):
        yield client


def _submit(client: httpx.Client, text: str, place: str) -> list[dict[str, Any]]:
    """action_submit_ticket for a fresh resident of demo-grid-1 (张敏's grid, 陈书记's community), as Rasa calls it."""
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    metadata = {
        "channel": "webchat",
        "group_id": "demo-grid-1",
        "sender_id": sender,
        "sender_name": "居民小周",
        "addressed": True,
    }
    latest = {"text": text, "intent": {"name": "report_issue", "confidence": 0.95}, "entities": [], "metadata": metadata}
    body = action_call("action_submit_ticket", f"webchat:demo-grid-1:{sender}", latest)
    body["tracker"]["slots"] = {"issue_description": text, "location": place}
    response = client.post("/webhook", json=body)
    assert response.status_code == 200, response.text
    return list(response.json()["responses"])


def test_the_reply_tells_the_resident_whom_to_call_and_who_was_told(webhook: httpx.Client) -> None:
    responses = _submit(webhook, TRAPPED, _place())
    [reply] = [r["text"] for r in responses if r.get("text")]
    assert reply.startswith(t("emergencies.advice.lift_trapped")) and "96333" in reply and "119" in reply
    assert "紧急工单 GD" in reply and "张敏（网格员）" in reply and "陈书记（社区负责人）" in reply
    delivered = [d for r in responses if r.get("custom") for d in r["custom"].get("deliver", [])]
    # An early warning (预警) to the lead may ride along when the suite's earlier reports in this community made a
    # burst (grid/warnings.py); it is no notice of this ticket.
    delivered = [d for d in delivered if not d["text"].startswith("【预警")]
    assert {d["target_id"] for d in delivered if d["target_type"] == "contact"} == {"worker-1", "lead-1"}
    assert all("【紧急工单】" in d["text"] for d in delivered)


def test_an_ordinary_report_gets_the_ordinary_reply(webhook: httpx.Client) -> None:
    responses = _submit(webhook, "8号楼电梯坏了 一直停在一楼", _place())
    [reply] = [r["text"] for r in responses if r.get("text")]
    assert reply.startswith("已为您登记工单") and "96333" not in reply and "119" not in reply


def _validate(client: httpx.Client, text: str, location: str | None) -> list[dict[str, Any]]:
    """validate_report_form right after a resident's first message filled the slots, as Rasa calls it."""
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    metadata = {"channel": "webchat", "group_id": "demo-grid-1", "sender_id": sender, "sender_name": "居民小周"}
    latest = {"text": text, "intent": {"name": "report_issue", "confidence": 0.95}, "entities": [], "metadata": metadata}
    body = action_call("validate_report_form", f"webchat:demo-grid-1:{sender}", latest)
    filled = {"issue_description": text, **({"location": location} if location else {})}
    body["domain"] = {"forms": {"report_form": {"required_slots": ["issue_description", "location"]}}}
    body["tracker"]["slots"] = {**filled, "requested_slot": None}
    body["tracker"]["active_loop"] = {"name": "report_form"}
    body["tracker"]["events"] = [
        {"event": "user", "text": text, "parse_data": latest, "metadata": metadata},
        *({"event": "slot", "name": name, "value": value} for name, value in filled.items()),
    ]
    response = client.post("/webhook", json=body)
    assert response.status_code == 200, response.text
    return list(response.json()["responses"])


def test_an_emergency_said_without_a_place_is_told_whom_to_call_before_where(webhook: httpx.Client) -> None:
    """The form asks "where?" next; the number to call does not wait for the answer."""
    said = [r["text"] for r in _validate(webhook, "电梯困人了 快来人", None) if r.get("text")]
    assert said == [t("emergencies.advice.lift_trapped")]
    assert not [r for r in _validate(webhook, TRAPPED, "8号楼") if r.get("text")]  # placed: the filing reply says it
    assert not [r for r in _validate(webhook, "电梯坏了好几天了", None) if r.get("text")]  # no emergency: nothing extra


# --- through the web chat on the real Rasa server ------------------------------------------------------------------


@pytest.mark.rasa
def test_a_trapped_lift_in_the_group_chat_is_red_both_are_told_and_the_number_given(
    chat: Chat, session_factory: sessionmaker[Session]
) -> None:
    """The issue's report, as a resident types it in the group: the reply names 96333 and 119, the worker and the
    lead both get 【紧急工单】, and the ticket is red and due within the hour."""
    sender, building = f"resident-{uuid.uuid4().hex[:8]}", f"{100 + uuid.uuid4().int % 900}号楼"
    replies = chat.say(f"{building}电梯困人了，快来人", group="demo-grid-1", sender=sender, name="居民小周", mention=True)
    room = [r["text"] for r in replies if r["target_type"] == "room"]
    if not any("紧急工单" in text for text in room):  # NLU did not take the building for the place: the form asks
        assert any("96333" in text for text in room), room  # …and the number came before the question
        replies = chat.say(building, group="demo-grid-1", sender=sender, name="居民小周", mention=True)
        room = [r["text"] for r in replies if r["target_type"] == "room"]
    [filed] = [text for text in room if "紧急工单" in text]
    assert "96333" in filed and "119" in filed, filed
    told = {r["target_id"] for r in replies if r["target_type"] == "contact" and "【紧急工单】" in r["text"]}
    assert told == {"worker-1", "lead-1"}
    with session_factory() as session:
        [ticket] = session.scalars(select(Ticket).where(Ticket.reporter_id == sender))
        assert ticket.colour == "red" and ticket.deadline_at - ticket.created_at == timedelta(hours=1)


# --- unasked in the group chat: the recogniser, NLU and the gate together ------------------------------------------


@pytest.fixture
def quiet_group(session_factory: sessionmaker[Session]) -> Iterator[str]:
    """A group of grid-2 of its own, inside quiet hours (an hour either side of now), removed afterwards. Its
    own: the app caches a group's policy for a few seconds, so another test's reading of a shared group would
    outlive the quiet hours set here."""
    from bot.group_settings import GroupBotSettings
    from bot.router import LOCAL_TZ

    group, now = f"quiet-{uuid.uuid4().hex[:8]}", datetime.now(LOCAL_TZ)
    with unit_of_work(session_factory) as session:
        session.add(ChatGroup(id=group, name="夜间免打扰测试群", grid_code="grid-2"))
        session.flush()
        start, end = (now - timedelta(hours=1)).time(), (now + timedelta(hours=1)).time()
        session.add(GroupBotSettings(group_id=group, quiet_start=start, quiet_end=end))
    yield group
    with unit_of_work(session_factory) as session:
        if (row := session.get(GroupBotSettings, group)) is not None:
            session.delete(row)


def _unasked_emergency(chat: Chat, factory: sessionmaker[Session], group: str) -> None:
    """An unaddressed emergency gets the number to call, then the red ticket, or "where?" and, answered, the red
    ticket (whether NLU takes the building for the place decides which). A building no other test reports at: an
    open ticket there would be joined, and the reply would say so instead."""
    sender, building = f"resident-{uuid.uuid4().hex[:8]}", 100 + uuid.uuid4().int % 900
    replies = chat.say(f"{building}号楼电梯困人了快来人", group=group, sender=sender, name="居民小周")
    room = [r["text"] for r in replies if r["target_type"] == "room"]
    assert any("96333" in said for said in room), replies
    if not any("紧急工单" in said for said in room):
        assert any("哪个位置" in said for said in room), room  # the number came first, then "where?"
        replies = chat.say(f"{building}号楼2单元", group=group, sender=sender, name="居民小周")  # unasked: awaited
        room = [r["text"] for r in replies if r["target_type"] == "room"]
        assert any("紧急工单" in said and "96333" in said for said in room), room
    with factory() as session:
        tickets = list(session.scalars(select(Ticket).where(Ticket.reporter_id == sender)))
        assert [t.colour for t in tickets] == ["red"], tickets


@pytest.mark.rasa
def test_an_unasked_emergency_is_answered_with_the_number(
    recogniser: Recogniser, chat: Chat, session_factory: sessionmaker[Session]
) -> None:
    """(`recogniser` first: it caches the model the app then loads instead of training it while starting.)"""
    _unasked_emergency(chat, session_factory, "demo-grid-1")


@pytest.mark.rasa
def test_quiet_hours_do_not_silence_an_emergency(
    recogniser: Recogniser, chat: Chat, session_factory: sessionmaker[Session], quiet_group: str
) -> None:
    _unasked_emergency(chat, session_factory, quiet_group)
    # … while an ordinary request still waits for the morning (or an @), and chatter gets silence
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    assert chat.say("低保怎么申请啊 需要什么材料", group=quiet_group, sender=sender, name="居民小周") == []
    assert chat.say("今天空气很甜", group=quiet_group, sender=sender, name="居民小周") == []


@pytest.mark.rasa
@pytest.mark.parametrize("text", ["今天空气很甜", "刚看了个视频 有人被困电梯里三小时 吓人"])
def test_unasked_chatter_gets_silence_even_when_the_recogniser_hears_an_emergency(
    recogniser: Recogniser, chat: Chat, session_factory: sessionmaker[Session], text: str
) -> None:
    """The recogniser alone never makes the bot speak: the second line is one it takes for 电梯困人 (a video), and
    NLU and the gate do not take it for a report."""
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    assert chat.say(text, group="demo-grid-1", sender=sender, name="居民小周") == []
    with session_factory() as session:
        assert session.scalar(select(Ticket).where(Ticket.reporter_id == sender)) is None


def test_the_chatter_above_is_one_the_recogniser_hears(recogniser: Recogniser) -> None:
    """Keeps the test above meaningful: if the recogniser stops hearing it, pick another such line."""
    assert recogniser.recognise("刚看了个视频 有人被困电梯里三小时 吓人") is not None
