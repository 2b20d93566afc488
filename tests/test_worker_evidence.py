"""Photos and voice notes as evidence (docs/tickets.md): a worker's picture sent right after (or while) handling a
ticket is kept on it, the resident's rating request says so, the console shows it — bot/worker_evidence.py.

Through the app, on both databases: the router as the app builds it (worker words on) in front of a Rasa stand-in
that records the `/worker_…` turn, that turn then run by the app's own action over /webhook as Rasa would, and the
ticket read back. The `rasa` test says the same through the web chat API (a real picture uploaded) and the real Rasa,
and reads the ticket as the console does.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.wecom.inbound import to_incoming
from bot.messages import IncomingMessage, Media, MediaKind
from bot.worker_desk import RedisPendingChoices
from bot.worker_words import Act, Pending
from tests.accounts import headers_for
from tests.conftest import REDIS_URL
from tests.servers import Chat
from tests.worker_chat import Crew, WorkerChat, crew, delivered, png, texts


@pytest.fixture
def team(session_factory: sessionmaker[Session]) -> Crew:
    return crew(session_factory)


@pytest.fixture
def desk(session_factory: sessionmaker[Session], webhook: httpx.Client) -> Iterator[WorkerChat]:
    harness = WorkerChat(session_factory, webhook)
    yield harness
    harness.close()


# --- which ticket a picture belongs to ------------------------------------------------------------------------------


def test_a_photo_right_after_accepting_goes_to_that_ticket_and_the_rating_request_says_so(team: Crew, desk: WorkerChat) -> None:
    older = team.file("楼道灯不亮", "3号楼2单元")
    team.accept(older, ago=timedelta(hours=3))  # in progress, but long ago
    number = team.file("水管漏水", "8号楼地下室")
    team.accept(number)  # just now: the before photo is this one's
    [reply] = texts(desk.photo(team.worker, team.name, "/media/before.jpg"), team.worker)
    assert number in reply and "现场照片共1张" in reply, reply
    assert team.evidence(number) == [("work_photo", ["/media/before.jpg"], None)] and team.evidence(older) == []
    [event] = [e for e in team.ticket(number).events if e.action == "work_photo"]
    assert (event.actor_id, event.actor_role) == (team.worker, "worker")

    _, turn = desk.say(team.worker, team.name, f"{number[-4:]}处理好了 换了阀门")
    responses = desk.act(turn)
    [ask] = delivered(responses, team.group)
    assert "已处理：换了阀门" in ask and "现场照片1张" in ask and "请评价" in ask, ask


def test_a_photo_after_resolving_is_kept_and_the_resident_told_once(team: Crew, desk: WorkerChat) -> None:
    number = team.file("垃圾堆积", "5号楼门口")
    team.accept(number, ago=timedelta(hours=2))
    _, turn = desk.say(team.worker, team.name, "清理干净了")
    [ask] = delivered(desk.act(turn), team.group)
    assert "现场照片" not in ask, ask  # none yet
    first = desk.photo(team.worker, team.name, "/media/after-1.jpg")
    assert number in texts(first, team.worker)[0]
    [told] = texts(first, team.group)
    assert number in told and "现场照片" in told and "共1张" in told, told
    second = desk.photo(team.worker, team.name, "/media/after-2.jpg")  # WeChat sends each picture as a message of its own
    assert "共2张" in texts(second, team.worker)[0] and texts(second, team.group) == []  # the resident hears once
    assert [p for _, p, _ in team.evidence(number)] == [["/media/after-1.jpg"], ["/media/after-2.jpg"]]
    assert team.ticket(number).status == "resolved"


def test_two_in_progress_the_photos_wait_for_the_pick(team: Crew, desk: WorkerChat) -> None:
    first, second = team.file("电梯异响", "1号楼"), team.file("门禁失灵", "2号楼")
    team.accept(first, ago=timedelta(hours=2))
    team.accept(second, ago=timedelta(hours=2))
    [asked] = texts(desk.photo(team.worker, team.name, "/media/a.jpg"), team.worker)
    assert "存到哪个工单" in asked and f"1. {first}" in asked and f"2. {second}" in asked, asked
    [more] = texts(desk.photo(team.worker, team.name, "/media/b.jpg"), team.worker)
    assert "共2张" in more, more
    assert team.evidence(first) == team.evidence(second) == []  # nothing kept before the pick
    replies, turn = desk.say(team.worker, team.name, "2")
    assert turn is None and second in texts(replies, team.worker)[0]
    assert team.evidence(second) == [("work_photo", ["/media/a.jpg", "/media/b.jpg"], None)] and team.evidence(first) == []


def test_photos_sent_while_a_completion_asks_which_go_to_the_ticket_resolved(team: Crew, desk: WorkerChat) -> None:
    first, second = team.file("路灯不亮", "东门"), team.file("井盖松动", "西门")
    team.accept(first, ago=timedelta(hours=2))
    team.accept(second, ago=timedelta(hours=2))
    replies, turn = desk.say(team.worker, team.name, "修好了")
    assert turn is None and "回复序号" in texts(replies, team.worker)[0]
    assert "回复序号后一起存入" in texts(desk.photo(team.worker, team.name, "/media/lamp.jpg"), team.worker)[0]
    _, turn = desk.say(team.worker, team.name, "1")
    [ask] = delivered(desk.act(turn), team.group)  # the rating request counts the photo sent before the pick
    assert first in ask and "现场照片1张" in ask, ask
    assert team.evidence(first) == [("work_photo", ["/media/lamp.jpg"], None)]


def test_photos_sent_at_once_from_three_processes_all_wait_for_the_pick() -> None:
    """WeCom delivers each of three pictures as its own callback, run at once and maybe by different app processes
    (three Redis clients here): each appends to the open question, none overwrites another's."""
    conv, namespace = f"webchat:w-{uuid.uuid4().hex[:8]}", f"test-{uuid.uuid4().hex[:8]}"
    urls = [f"/media/burst-{i}.jpg" for i in range(3)]

    async def burst() -> tuple[list[Pending | None], Pending | None, Pending | None]:
        clients = [aioredis.Redis.from_url(REDIS_URL) for _ in urls]
        stores = [RedisPendingChoices(client, namespace) for client in clients]
        try:
            await stores[0].put(conv, Pending(Act.EVIDENCE, "", ("GD20261207-0001", "GD20261207-0002")), 60)
            grown = await asyncio.gather(*(s.add_photos(conv, (url,), 60) for s, url in zip(stores, urls, strict=True)))
            return list(grown), await stores[1].take(conv), await stores[2].take(conv)
        finally:
            for client in clients:
                await client.aclose()

    grown, taken, again = asyncio.run(burst())
    assert taken is not None and sorted(taken.photos) == urls and again is None
    assert sorted(len(g.photos) for g in grown if g is not None) == [1, 2, 3]


def test_photos_waiting_for_a_pick_are_not_dropped_silently_when_the_worker_moves_on(team: Crew, desk: WorkerChat) -> None:
    first, second = team.file("电梯异响", "1号楼"), team.file("门禁失灵", "2号楼")
    team.accept(first, ago=timedelta(hours=2))
    team.accept(second, ago=timedelta(hours=2))
    desk.photo(team.worker, team.name, "/media/a.jpg")
    assert "共2张" in texts(desk.photo(team.worker, team.name, "/media/b.jpg"), team.worker)[0]
    replies, _ = desk.say(team.worker, team.name, "简报")  # no pick: the question is over, its pictures not kept
    assert any("2张照片没有存入工单" in said for said in texts(replies, team.worker)), replies
    assert team.evidence(first) == team.evidence(second) == []


def test_with_nothing_in_hand_the_photo_is_not_kept_and_the_worker_is_told(team: Crew, desk: WorkerChat) -> None:
    [said] = texts(desk.photo(team.worker, team.name, "/media/nothing.jpg"), team.worker)
    assert "没有存入" in said and "@我" not in said, said


def test_a_residents_private_picture_is_left_to_the_residents_handling(desk: WorkerChat) -> None:
    picture = (Media(MediaKind.IMAGE, "/media/x.jpg"),)
    message = IncomingMessage("webchat", f"resident-{uuid.uuid4().hex[:6]}", "居民", "", media=picture)
    assert desk._run(desk.router.worker_media(message)) is None


# --- voice notes -----------------------------------------------------------------------------------------------------


def test_a_voice_note_with_completion_words_resolves_like_typed_words(team: Crew, desk: WorkerChat) -> None:
    number = team.file("水压低", "6号楼")
    team.accept(number, ago=timedelta(hours=2))
    _, turn = desk.say(team.worker, team.name, "处理好了 换了减压阀", voice=True)
    assert turn is not None and "worker_resolve" in turn["message"] and number in turn["message"], turn


def test_a_voice_note_right_after_resolving_is_kept_as_a_note(team: Crew, desk: WorkerChat) -> None:
    number = team.file("下水道堵了", "9号楼")
    team.accept(number, ago=timedelta(hours=2))
    _, turn = desk.say(team.worker, team.name, "疏通好了")
    desk.act(turn)
    replies, turn = desk.say(team.worker, team.name, "补充一下 是楼上住户倒了油渣 已经提醒他们了", voice=True)
    assert turn is None, "a note on the ticket needs no action"
    [said] = texts(replies, team.worker)
    assert number in said and "处理记录" in said, said
    assert team.evidence(number) == [("work_note", None, "补充一下 是楼上住户倒了油渣 已经提醒他们了")]
    # The same words typed are not a dictated note: the worker's help, as before.
    _, turn = desk.say(team.worker, team.name, "补充一下 是楼上住户倒了油渣")
    assert turn is not None and "worker_help" in turn["message"]


def test_a_voice_note_nobody_transcribed_gets_the_workers_request_for_text(team: Crew, desk: WorkerChat) -> None:
    message = IncomingMessage("webchat", team.worker, team.name, "", media=(Media(MediaKind.VOICE, ""),))
    [out] = desk._run(desk.router.worker_media(message))
    assert "语音" in out.text and "处理好了" in out.text and "打字告诉我，谢谢" not in out.text, out.text  # not the residents'


def test_wecom_voice_arrives_with_its_recognised_words_and_marked_as_voice() -> None:
    root = {"MsgType": "voice", "FromUserName": "zhangmin", "MsgId": "1", "MediaId": "m", "Recognition": "处理好了。"}
    message = to_incoming(root).message
    assert message is not None and message.text == "处理好了。" and [m.kind for m in message.media] == [MediaKind.VOICE]
    silent = to_incoming({**root, "Recognition": ""}).message
    assert silent is not None and silent.text == "" and [m.kind for m in silent.media] == [MediaKind.VOICE]


# --- through the web chat and the real Rasa, read as the console reads it ---------------------------------------------


def _private(chat: Chat, who: Crew, **payload: Any) -> list[dict[str, str]]:
    response = chat.post(group_id=None, sender_id=who.worker, sender_name=who.name, **payload)
    assert response.status_code == 200, response.text
    return list(response.json()["replies"])


@pytest.mark.rasa
def test_a_photo_attached_at_办结_through_the_web_chat_and_shown_by_the_console(
    chat: Chat, session_factory: sessionmaker[Session], app_url: str
) -> None:
    team = crew(session_factory)
    number = team.file("楼道灯不亮", "3号楼2单元")
    accepted = _private(chat, team, text="好的马上去")
    assert any("已接单" in r["text"] and number in r["text"] for r in accepted), accepted
    picture = base64.b64encode(png(3)).decode()
    kept = _private(chat, team, media=[{"kind": "image", "data_base64": picture}])
    assert any(number in r["text"] and "照片已存入" in r["text"] for r in kept), kept
    done = _private(chat, team, text="处理好了，换了灯泡", media=[{"kind": "voice"}])  # dictated: a voice note's words
    [ask] = [r["text"] for r in done if r["target_id"] == team.group]
    assert "换了灯泡" in ask and "现场照片1张" in ask and "请评价" in ask, ask

    headers = headers_for(session_factory)
    with httpx.Client(base_url=app_url, timeout=30, headers=headers) as api:
        detail = api.get(f"/api/v1/tickets/{number}")
        assert detail.status_code == 200, detail.text
        [event] = [e for e in detail.json()["events"] if e["action"] == "work_photo"]
        assert event["actor_id"] == team.worker and len(event["photos"]) == 1
        shown = api.get(event["photos"][0])  # the console's <img src>: our own /media/ address, the picture itself
        assert shown.status_code == 200 and shown.content == png(3) and shown.headers["content-type"] == "image/png"
    # Bad input is refused clearly and loses nothing: not base64, not a picture, a picture with words.
    for media, text in (([{"kind": "image", "data_base64": "%%%"}], ""), ([{"kind": "image", "data_base64": "aGVsbG8="}], ""),
                        ([{"kind": "image", "data_base64": picture}], "修好了")):
        refused = chat.post(group_id=None, sender_id=team.worker, sender_name=team.name, text=text, media=media)
        assert refused.status_code == 422, refused.text
    lines = chat.http.get("/api/v1/local/transcript", params={"target_type": "contact", "target_id": team.worker}).json()
    assert any(line["text"].startswith("[image] /media/") for line in lines["messages"]), lines
