"""Grid workers in their own words (docs/tickets.md): 收到, 处理好了 换了阀门, 接单 0123, a quoted notice, and a question when
two tickets fit — read by bot/worker_words.py against the worker's desk, carried by bot/worker_desk.py.

Unit tests of the reading use phrasings of their own (the benchmark's are in bench/data/, scored by `make
bench-workers`). Through the app, on both databases: the router with a stand-in Rasa that records which
`/worker_…` message it was sent, that message then run by the app's own action over /webhook as Rasa would run it,
and the ticket read back from the database. The `rasa` tests say the same through the web chat and the real Rasa.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.normalise import normalise
from bot.worker_desk import MemoryPendingChoices, RedisPendingChoices, load_desk, question
from bot.worker_words import Act, Desk, DeskTicket, Pending, understand
from grid.geography import Grid, Worker
from grid.service import TicketService
from grid.tickets import Ticket
from storage.engine import unit_of_work
from tests.conftest import REDIS_URL
from tests.servers import Chat
from tests.worker_chat import WorkerChat

BOT = "网格助手"
SEPARATOR = "- - - - - - - - - - - - - - -"
DEPARTMENTS = ("城管执法局", "住建局", "水务公司", "供电公司", "燃气公司", "街道办事处")
COLLEAGUES = ("张敏", "李强", "王芳", "赵磊", "孙丽")

LIFT = DeskTicket("GD20261203-0201", "in_progress", "物业管理", "7号楼", "7号楼电梯按钮失灵")
LAMP = DeskTicket("GD20261203-0202", "dispatched", "市政设施", "西门停车场", "停车场路灯全黑")
PIPE = DeskTicket("GD20261203-0203", "in_progress", "水电气暖", "10号楼3单元", "地下室水管爆了")


def desk(*tickets: DeskTicket, last: DeskTicket | None = None) -> Desk:
    return Desk(tickets, last.number if last else None, COLLEAGUES, DEPARTMENTS)


def read(text: str, on: Desk, quote: str = "", pending: Pending | None = None) -> tuple[Act, str | None, str]:
    reading = understand(normalise(text, BOT), on, quote, pending)
    return reading.act, reading.number, reading.text


# --- the reading ---------------------------------------------------------------------------------------------------


def test_an_acknowledgement_takes_the_ticket_just_notified() -> None:
    on = desk(LIFT, LAMP, last=LAMP)
    for said in ("收到啦", "好的 我这就过去", "明白 一会儿到", "OK马上去"):
        assert read(said, on)[:2] == (Act.ACCEPT, LAMP.number), said
    # Already in hand: nothing to take, acknowledged; and nothing open at all: the list says so truly.
    assert read("收到", desk(LIFT, last=LIFT))[:2] == (Act.NOTED, LIFT.number)
    assert read("好的", desk())[0] is Act.LIST


def test_a_completion_resolves_the_one_in_progress_the_rest_is_the_result() -> None:
    on = desk(LIFT, LAMP, last=LAMP)
    assert read("弄完了，换了两个按钮", on) == (Act.RESOLVE, LIFT.number, "换了两个按钮")
    assert read("已经处理", on) == (Act.RESOLVE, LIFT.number, "已经处理")  # nothing else said: the words are the result
    assert read("以经修复 电梯公司来人换的", on)[:2] == (Act.RESOLVE, LIFT.number)  # 以 for 已
    assert read("停车场的灯都亮了", on)[:2] == (Act.RESOLVE, LAMP.number)  # the ticket's own words pick it
    assert read("办结 7号楼电梯已恢复", on) == (Act.RESOLVE, LIFT.number, "7号楼电梯已恢复")


def test_not_done_yet_is_no_completion() -> None:
    on = desk(LIFT, last=LIFT)
    for said in ("还没处理好", "马上就修好了", "修好了再跟你说", "今天弄不完", "师傅在修"):
        assert read(said, on)[:2] == (Act.NOTED, LIFT.number), said
    assert read("修好了没", on)[:2] == (Act.QUERY, LIFT.number)


def test_two_in_progress_ask_once_and_the_pick_decides() -> None:
    on = desk(LIFT, PIPE, last=PIPE)
    reading = understand("都处理好了", on)
    assert reading.act is Act.ASK and reading.choices == (LIFT.number, PIPE.number)
    asked = question(reading, on)
    assert "2个进行中的工单" in asked and f"1. {LIFT.number}" in asked and f"2. {PIPE.number}" in asked and "回复序号" in asked
    pending = reading.pending()
    assert pending is not None and pending.act is Act.RESOLVE
    for pick in ("2", "第二个", "0203"):
        assert read(pick, on, pending=pending) == (Act.RESOLVE, PIPE.number, "都处理好了"), pick
    assert read("都不是", on, pending=pending)[0] is Act.NOTED
    assert read("今天还有几个没办", on, pending=pending)[0] is Act.LIST  # moved on: read as new words


def test_a_short_number_names_a_ticket_when_unique() -> None:
    on = desk(LIFT, LAMP, last=LAMP)
    assert read("接单 0202", on)[:2] == (Act.ACCEPT, LAMP.number)
    assert read("0201 处理完毕", on)[:2] == (Act.RESOLVE, LIFT.number)
    assert read("1203室的按钮修好了", on)[:2] == (Act.RESOLVE, LIFT.number)  # a room, not a ticket
    assert read("接单 0999", on)[0] is Act.ASK  # no such ticket of theirs: asked, not guessed
    twin = DeskTicket("GD20261202-0201", "in_progress", "噪音扰民", "1号楼", "夜里施工")
    reading = understand("0201修好了", desk(LIFT, twin))
    assert reading.act is Act.ASK and set(reading.choices) == {LIFT.number, twin.number}


def test_a_quoted_notice_picks_its_ticket() -> None:
    on = desk(LIFT, PIPE, last=PIPE)
    quote = normalise(f"{BOT}：【新工单】{LIFT.number}（黄色）\n物业管理｜7号楼\n7号楼电梯按钮失灵", BOT)
    assert read("这个好了 换了按钮", on, quote=quote) == (Act.RESOLVE, LIFT.number, "换了按钮")


def test_words_about_something_not_in_hand_never_resolve_the_one_in_progress() -> None:
    reading = understand("井盖那个处理完了", desk(LIFT, last=LIFT))
    assert reading.act is Act.ASK and reading.choices == (LIFT.number,)  # confirm, even with one ticket
    assert read("路灯的已经换好了", desk(LIFT, last=LIFT))[0] is Act.ASK


def test_hand_overs_in_words() -> None:
    on = desk(LAMP, last=LAMP)
    act, number, text = read("让王芳跟一下 她片区的", on)
    assert (act, number, text.split(" ")[0]) == (Act.TRANSFER, LAMP.number, "王芳") and "她片区的" in text
    assert read("得报供电 线路老化", desk(LIFT, last=LIFT)) == (Act.ESCALATE, LIFT.number, "供电公司 线路老化")
    assert read("供电公司的人来修好了", desk(LIFT, last=LIFT))[0] is Act.RESOLVE  # who did it, not where it goes
    assert read("不是我们片区的 退了吧", on)[:2] == (Act.RETURN, LAMP.number)
    assert read("这个我们弄不了 要上报", on)[0] is Act.ASK  # to which department?


def test_questions_about_their_work_and_what_is_not_understood() -> None:
    on = desk(LIFT, LAMP, last=LAMP)
    assert read("还有多少单没弄", on)[0] is Act.LIST
    assert read("0202在哪", on)[:2] == (Act.QUERY, LAMP.number)
    assert read("周末要加班吗", on) == (Act.HELP, None, "周末要加班吗")
    assert read("帮助", on)[:2] == (Act.HELP, None)


def test_exact_commands_keep_working() -> None:
    on = desk(LIFT, LAMP, last=LAMP)
    assert read(f"办结 {LIFT.number} 按钮已更换", on) == (Act.RESOLVE, LIFT.number, "按钮已更换")
    assert read(f"转派 {LAMP.number} 李强 不在我片区", on) == (Act.TRANSFER, LAMP.number, "李强 不在我片区")
    assert read("我的工单", on)[0] is Act.LIST
    assert read("转派", on) == (Act.TRANSFER, None, "")  # alone: its usage, as before


def test_the_pending_choice_is_kept_in_memory_and_in_redis() -> None:
    pending = Pending(Act.RESOLVE, "换了阀门", (LIFT.number, PIPE.number))

    async def roundtrip() -> None:
        client = aioredis.from_url(REDIS_URL)
        try:
            for store in (MemoryPendingChoices(), RedisPendingChoices(client, f"test-{uuid.uuid4().hex[:8]}")):
                conv = f"webchat::w-{uuid.uuid4().hex[:6]}"
                assert await store.get(conv) is None
                await store.put(conv, pending, 60)
                assert await store.get(conv) == pending
                await store.clear(conv)
                assert await store.get(conv) is None
        finally:
            await client.aclose()

    asyncio.run(roundtrip())


# --- through the app, on both databases ----------------------------------------------------------------------------



@dataclass
class Worksite:
    """A grid of its own with one on-duty worker on the web chat, so no other test's tickets land on the desk."""

    factory: sessionmaker[Session]
    grid: str
    worker: str
    name: str
    numbers: list[str] = field(default_factory=list)

    def file(self, what: str, where: str) -> str:
        with unit_of_work(self.factory) as session:
            filing = TicketService(session).file_report(
                group_id=None, reporter_id=f"r-{uuid.uuid4().hex[:6]}", reporter_name="居民小赵", description=what,
                location=where, grid_code=self.grid,
            )
            number = filing.ticket.number
        self.numbers.append(number)
        return number

    def accept(self, number: str) -> None:
        with unit_of_work(self.factory) as session:
            service = TicketService(session)
            service.accept(number, service.actor_for(self.worker, "webchat"))

    def ticket(self, number: str) -> Ticket:
        with self.factory() as session:
            ticket = session.scalar(select(Ticket).where(Ticket.number == number))
            assert ticket is not None
            session.expunge(ticket)
            return ticket


def worksite(factory: sessionmaker[Session]) -> Worksite:
    tag = uuid.uuid4().hex[:8]
    site = Worksite(factory, f"grid-ww-{tag}", f"worker-ww-{tag}", f"网格员{tag[:4]}")
    with unit_of_work(factory) as session:
        session.add(Grid(code=site.grid, name=f"测试网格{tag}", community_code="demo-community-1"))
        session.flush()
        session.add(Worker(id=site.worker, name=site.name, grid_code=site.grid, channel="webchat"))
    return site


@pytest.fixture
def site(session_factory: sessionmaker[Session]) -> Worksite:
    return worksite(session_factory)


class Conversation(WorkerChat):
    """tests/worker_chat.WorkerChat read as texts: what the app replied itself and what the actions said."""

    def say(self, sender: str, name: str, text: str, voice: bool = False) -> tuple[list[str], dict[str, Any] | None]:  # type: ignore[override]
        """What the app replied itself, and the turn it sent Rasa (None when it answered without Rasa)."""
        outgoing, turn = super().say(sender, name, text, voice)
        return [out.text for out in outgoing], turn

    def act(self, turn: dict[str, Any] | None) -> list[str]:  # type: ignore[override]
        """Run the turn's `/worker_…{…}` as Rasa does: its intent's action, with the entities it carries."""
        return [r["text"] for r in super().act(turn) if r.get("text")]


@pytest.fixture
def talk(session_factory: sessionmaker[Session], webhook: httpx.Client) -> Iterator[Conversation]:
    conversation = Conversation(session_factory, webhook)
    yield conversation
    conversation.close()


def sent(turn: dict[str, Any] | None) -> tuple[str, dict[str, str]]:
    assert turn is not None, "nothing was sent to Rasa"
    found = re.fullmatch(r"/(\w+)(\{.*\})?", turn["message"], re.DOTALL)
    assert found, turn["message"]
    return found.group(1), json.loads(found.group(2) or "{}")


def test_收到_accepts_the_ticket_just_notified(site: Worksite, talk: Conversation) -> None:
    older = site.file("楼道灯不亮", "3号楼2单元")
    newest = site.file("单元门关不上", "5号楼1单元")
    replies, turn = talk.say(site.worker, site.name, "收到")
    assert replies == [] and sent(turn) == ("worker_accept", {"ticket_number": newest, "command_text": ""})
    said = talk.act(turn)  # type: ignore[arg-type]
    assert said and "已接单" in said[0] and newest in said[0], said
    assert site.ticket(newest).status == "in_progress" and site.ticket(older).status == "dispatched"


def test_处理好了_resolves_the_one_in_progress_with_its_result(site: Worksite, talk: Conversation) -> None:
    number = site.file("水管漏水", "8号楼地下室")
    site.accept(number)
    waiting = site.file("垃圾没人清", "8号楼门口")  # a newer one, not taken: not what a completion is about
    _, turn = talk.say(site.worker, site.name, "处理好了 换了阀门")
    assert sent(turn) == ("worker_resolve", {"ticket_number": number, "command_text": "换了阀门"})
    said = talk.act(turn)  # type: ignore[arg-type]
    assert said and number in said[0] and "已办结" in said[0], said
    resolved = site.ticket(number)
    assert (resolved.status, resolved.result) == ("resolved", "换了阀门")
    assert site.ticket(waiting).status == "dispatched"


def test_接单_with_the_short_number(site: Worksite, talk: Conversation) -> None:
    first = site.file("路灯不亮", "北门")
    second = site.file("井盖松动", "南门")
    _, turn = talk.say(site.worker, site.name, f"接单 {first[-4:]}")
    assert sent(turn) == ("worker_accept", {"ticket_number": first, "command_text": ""})
    talk.act(turn)  # type: ignore[arg-type]
    assert site.ticket(first).status == "in_progress" and site.ticket(second).status == "dispatched"


def test_two_in_progress_修好了_asks_and_2_resolves_the_second(site: Worksite, talk: Conversation) -> None:
    first, second = site.file("电梯异响", "1号楼"), site.file("门禁失灵", "2号楼")
    site.accept(first)
    site.accept(second)
    replies, turn = talk.say(site.worker, site.name, "修好了")
    assert turn is None, "an ambiguous completion never reaches an action"
    [asked] = replies
    assert f"1. {first}" in asked and f"2. {second}" in asked and "回复序号" in asked, asked
    replies, turn = talk.say(site.worker, site.name, "2")
    assert replies == [] and sent(turn) == ("worker_resolve", {"ticket_number": second, "command_text": "修好了"})
    talk.act(turn)  # type: ignore[arg-type]
    assert site.ticket(second).status == "resolved" and site.ticket(first).status == "in_progress"
    _, turn = talk.say(site.worker, site.name, "2")  # asked once: a later "2" is no pick
    assert sent(turn)[0] == "worker_help"


def test_a_quoted_notice_picks_its_ticket_through_the_app(site: Worksite, talk: Conversation) -> None:
    first, second = site.file("路灯不亮", "东门"), site.file("占道摆摊", "西门")
    site.accept(first)
    site.accept(second)
    quoted = f"「{BOT}：【新工单】{first}（黄色）\n市政设施｜东门\n路灯不亮」\n{SEPARATOR}\n这个好了 换了灯泡"
    _, turn = talk.say(site.worker, site.name, quoted)
    assert sent(turn) == ("worker_resolve", {"ticket_number": first, "command_text": "换了灯泡"})
    talk.act(turn)  # type: ignore[arg-type]
    assert site.ticket(first).result == "换了灯泡" and site.ticket(second).status == "in_progress"


def test_not_understood_words_get_the_workers_help_never_the_residents(site: Worksite, talk: Conversation) -> None:
    site.file("路灯不亮", "东门")
    _, turn = talk.say(site.worker, site.name, "周末要加班吗")
    assert sent(turn) == ("worker_help", {"command_text": "周末要加班吗"})
    [said] = talk.act(turn)  # type: ignore[arg-type]
    assert said.startswith("没太明白") and "办结 工单号" in said and "@我" not in said, said


def test_a_residents_private_message_still_goes_to_nlu(talk: Conversation) -> None:
    _, turn = talk.say(f"resident-{uuid.uuid4().hex[:6]}", "居民小钱", "收到")
    assert turn is not None and turn["message"] == "收到"


def test_the_last_notified_is_the_newest_notice_of_an_open_ticket(session_factory: sessionmaker[Session]) -> None:
    """A ticket transferred to the worker after their own was filed is the one they were told about last."""
    mine, other = worksite(session_factory), worksite(session_factory)
    own = mine.file("楼道灯不亮", "3号楼")
    moved = other.file("下水道堵了", "6号楼")
    with unit_of_work(session_factory) as session:
        service = TicketService(session)
        service.transfer(moved, service.actor_for(other.worker, "webchat"), mine.worker, "他那片的")
    with session_factory() as session:
        on = load_desk(session, mine.worker, "webchat")
        assert on is not None and {x.number for x in on.tickets} == {own, moved} and on.last_notified == moved
        assert load_desk(session, mine.worker, "wechaty") is None  # the id on another channel is no worker
        assert load_desk(session, "resident-nobody", "webchat") is None


# --- through the web chat and the real Rasa ------------------------------------------------------------------------


def _private(chat: Chat, site: Worksite, text: str) -> list[str]:
    return [r["text"] for r in chat.say(text, group=None, sender=site.worker, name=site.name) if r["target_id"] == site.worker]


@pytest.mark.rasa
def test_free_words_through_the_web_chat(chat: Chat, session_factory: sessionmaker[Session]) -> None:
    site = worksite(session_factory)
    first = site.file("楼道灯不亮", "3号楼2单元")
    accepted = _private(chat, site, "好的马上去")
    assert accepted and "已接单" in accepted[0] and first in accepted[0], accepted
    done = _private(chat, site, "处理好了，换了灯泡")
    assert done and "已办结" in done[0], done
    assert site.ticket(first).result == "换了灯泡"

    second, third = site.file("电梯异响", "1号楼"), site.file("门禁失灵", "2号楼")
    short = _private(chat, site, f"接单 {second[-4:]}")
    assert short and second in short[0] and "已接单" in short[0], short
    site.accept(third)
    asked = _private(chat, site, "修好了")
    assert asked and "回复序号" in asked[0] and f"2. {third}" in asked[0], asked
    picked = _private(chat, site, "2")
    assert picked and third in picked[0] and "已办结" in picked[0], picked
    quoted = f"「{BOT}：【新工单】{second}（黄色）\n物业管理｜1号楼」\n{SEPARATOR}\n这个弄好了"
    done = _private(chat, site, quoted)
    assert done and second in done[0] and "已办结" in done[0], done
    assert site.ticket(second).status == "resolved"
