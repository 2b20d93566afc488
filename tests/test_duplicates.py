"""Duplicates by meaning (docs/tickets.md, "Duplicates"): place normalisation, the judge, filing, raising, flagging and merging.

Place parsing and the judge are tested without a database; the judge is the real one (the offline e5 model `make
setup` builds), on phrasings of their own (the benchmark's are in bench/data/, scored by `make bench-duplicates`).
Filing and merging go through the ticket service on both databases, each test in a community of its own (two
neighbouring grids, a worker each, a lead) so no other test's open tickets are candidates. The `rasa` tests say the
same through the web chat and the real Rasa server, in the demo community (grids 1 and 2 are neighbours).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.duplicates import DEV_FILE, HELDOUT2_FILE, HOLDOUT_FILE, check_held_out, read_pairs
from bot.embedded import app_server, free_port
from bot.rasa_process import cache_dir
from bot.settings import Settings
from bot.ticket_notices import filing_notices, notices_for
from grid.duplicates import (
    CALIBRATED,
    DescriptionSimilarity,
    DuplicateJudge,
    MeaningJudge,
    Report,
    RuleJudge,
    Verdict,
    load_judge,
    problem_clauses,
)
from grid.emergencies import MeaningRecogniser, load_recogniser
from grid.geography import Grid, Region, Worker
from grid.places import is_specific, normalise_place, parse_place, same_spot
from grid.problem_words import compare_objects, load_objects
from grid.service import POSSIBLE_DUPLICATE_ACTION, Actor, Filing, TicketService
from grid.tickets import Ticket
from grid.workflow import Role, TicketError
from knowledge.embeddings import load_embedder
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.accounts import headers_for
from tests.areas import race_twice
from tests.servers import Chat

COVER = "东侧的下水井盖丢了，晚上有人差点掉下去"  # the report, after "N号楼"
COVER_AGAIN = "东边井盖没了，太危险了"  # a neighbour's, after "N栋"
LEAK = "楼顶水箱漏水，水一直往下流"
JUNK = "九月二十六号从深圳到宁波的航班"


# --- places ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("3号楼门口", "三号楼前面"),
        ("三号楼前面", "3栋楼下"),
        ("3号楼下", "3幢旁边"),
        ("十三号楼东侧", "13栋东边"),
        ("阳光花园3号楼2单元", "3号楼二单元门口"),
        ("小区东门", "东门"),
        ("西门停车场", "停车场"),
        ("3号楼和4号楼中间的路", "3号楼跟4号楼之间那条路"),
    ],
)
def test_one_spot_in_other_words_is_the_same_spot(a: str, b: str) -> None:
    assert same_spot(a, b) and same_spot(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("3号楼", "13号楼"),  # a number is never part of a longer one
        ("三号楼门口", "十三号楼门口"),
        ("3号楼", "二十三号楼"),
        ("5号楼2单元", "5号楼12单元"),
        ("幸福路5号", "幸福路51号"),
        ("3号楼前面", "3号楼后面"),
        ("2号楼楼顶", "2号楼地下室"),
        ("东门", "西门"),
        ("阳光花园3号楼", "和平里3号楼"),  # two estates' building 3
        ("停车场", "3号楼"),  # no part in common
        ("路口", "幸福路口"),  # a bare two-character spot is any such spot anywhere
        ("东门路口", "abcgrid-3路口"),
        ("门口", "3号楼门口"),
    ],
)
def test_other_spots_are_not_the_same_spot(a: str, b: str) -> None:
    assert not same_spot(a, b) and not same_spot(b, a)


@pytest.mark.parametrize("vague", ["号", "楼", "小区", "我们小区", "楼下", "5楼", "阳光花园", JUNK, ""])
def test_a_place_that_names_nothing_specific_matches_nothing(vague: str) -> None:
    """The issue's junk ticket had the location `号`, which the old rule found inside `2号楼` (a real leak report)."""
    assert not is_specific(vague) and normalise_place(vague) == ""
    assert not same_spot(vague, "2号楼楼顶") and not same_spot(vague, vague)


@pytest.mark.parametrize(
    ("inside", "place"),
    [("停车场里", "停车场"), ("地下车库里", "地下车库"), ("楼道里", "楼道"), ("电梯里", "电梯"), ("小区里", "小区")],
)
def test_in_a_place_is_no_estate(inside: str, place: str) -> None:
    """里 after a place is "in" (停车场里), not an estate's 里 (幸福里): it must not become an estate that names no
    spot and keeps 停车场里 from matching 停车场."""
    assert parse_place(inside).estate == "" and parse_place(inside) == parse_place(place)
    assert parse_place("幸福里3号楼").estate == "幸福里"


@pytest.mark.parametrize(
    ("a", "b"), [("停车场里", "停车场"), ("小区里3号楼门口", "阳光花园3号楼门口"), ("西门停车场里", "停车场")]
)
def test_in_a_place_is_the_same_spot(a: str, b: str) -> None:
    assert same_spot(a, b) and same_spot(b, a)


def test_one_written_form_per_spot() -> None:
    assert normalise_place("三号楼前面") == normalise_place("3栋楼下") == normalise_place("3号楼门口") == "3栋·门口"
    assert normalise_place("阳光花园十二号楼二单元302") == "阳光花园12栋2单元302室"
    place = parse_place("第二单元")
    assert (place.unit, place.building) == ("2", None) and place.specific


def test_the_problem_is_compared_without_the_place() -> None:
    assert problem_clauses(f"3号楼{COVER}", "3号楼东侧") == ["下水井盖丢了", "晚上有人差点掉下去"]
    assert problem_clauses("三号楼前面那个路灯一直不亮", "三号楼前面") == ["路灯不亮"]
    # how long and who does nothing are said of any problem: 好几天了, 没人管 are left out (alone, they stay)
    assert problem_clauses("7号楼电梯坏了好几天了，没人管", "7号楼") == ["电梯坏了", "没人管"]


# --- the judge ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def judge() -> DuplicateJudge:
    embedder = load_embedder("auto")
    assert embedder is not None, "no offline e5 model: run `make setup`"
    found = load_judge(embedder)
    assert isinstance(found, MeaningJudge) and found.thresholds == CALIBRATED
    return found


def test_one_problem_in_other_words_and_categories_is_likely(judge: DuplicateJudge) -> None:
    first = Report(f"3号楼{COVER}", "3号楼东侧", "市政设施")
    later = Report(f"三号楼{COVER_AGAIN}", "三号楼东边", "安全隐患")  # 危险: another, red, category
    assert judge.judge(later, first) is Verdict.LIKELY
    lamp, again = Report("3号楼门口的路灯不亮了", "3号楼门口"), Report("三号楼前面路灯坏了好几天", "三号楼前面")
    assert judge.judge(again, lamp) is Verdict.LIKELY


def test_another_problem_or_another_building_is_different(judge: DuplicateJudge) -> None:
    cover = Report("3号楼东侧的井盖丢了", "3号楼东侧", "市政设施")
    assert judge.judge(Report("3号楼东侧的路灯不亮了", "3号楼东侧", "市政设施"), cover) is Verdict.DIFFERENT
    assert judge.judge(Report("13号楼东侧的井盖丢了", "13号楼东侧", "市政设施"), cover) is Verdict.DIFFERENT
    assert judge.judge(Report(f"2号楼{LEAK}", "2号楼楼顶", "其他"), Report(JUNK, "号", "其他")) is Verdict.DIFFERENT


def test_a_neighbouring_grids_ticket_is_at_most_uncertain_unless_the_estate_is_named(judge: DuplicateJudge) -> None:
    """Two grids' 3号楼 may be two estates' buildings: flagged for the worker, never linked on the numbers alone."""
    first, later = Report("3号楼门口的路灯不亮了", "3号楼门口"), Report("三号楼前面路灯坏了好几天", "三号楼前面")
    assert judge.judge(later, first, same_grid=False) is Verdict.UNCERTAIN
    named_first = Report("阳光花园3号楼门口的路灯不亮了", "阳光花园3号楼门口")
    named_later = Report("阳光花园三号楼前面路灯坏了好几天", "阳光花园三号楼前面")
    assert judge.judge(named_later, named_first, same_grid=False) is Verdict.LIKELY


def test_the_judge_centres_where_the_emergency_recogniser_does(judge: DuplicateJudge) -> None:
    """The app hands in the emergency recogniser's mean vector instead of encoding the table again: same scores."""
    assert isinstance(judge, MeaningJudge)
    recogniser = load_recogniser(judge.similarity.encoder, cache_dir() / "emergencies")  # type: ignore[arg-type]
    assert isinstance(recogniser, MeaningRecogniser)
    reused = DescriptionSimilarity(judge.similarity.encoder, recogniser.model.mean)
    pair = (Report(f"3号楼{COVER}", "3号楼东侧"), Report(f"三号楼{COVER_AGAIN}", "三号楼东边"))
    assert reused.score(*pair) == pytest.approx(judge.similarity.score(*pair), abs=1e-6)


def test_what_leaks_separates_two_leaks(judge: DuplicateJudge) -> None:
    """暖气漏水 and 燃气表漏气 both "leak" (e5 puts them as close as two wordings of one leak): the objects named —
    heating, gas — are two, so two problems; 燃气 and 煤气 are one object, so one problem."""
    heating = Report("6号楼暖气漏水，楼道里都是水", "6号楼", "水电气暖")
    assert judge.judge(Report("6号楼燃气表漏气，有股味道", "6号楼", "安全隐患"), heating) is Verdict.DIFFERENT
    assert judge.judge(Report("6号楼自来水管漏水了", "6号楼", "水电气暖"), heating) is Verdict.DIFFERENT
    assert judge.judge(Report("六号楼暖气管子在滴水", "六号楼", "水电气暖"), heating) is Verdict.LIKELY
    gas = Report("2号楼3单元燃气管道漏气", "2号楼3单元", "安全隐患")
    assert judge.judge(Report("2栋3单元楼道里煤气味很大", "2栋3单元", "安全隐患"), gas) is Verdict.LIKELY


def test_objects_are_read_with_their_synonyms_and_longest_words() -> None:
    table = load_objects()
    assert table.objects("燃气表漏气") == table.objects("煤气味很大") == {"gas"}
    assert table.objects("暖气片漏水") == {"heating"}
    assert table.objects("电线杆歪了") == {"pole"}  # not 电线 (wires) inside it
    assert table.objects("下水井盖丢了") == {"sewer", "cover"}  # overlapping words both count
    assert compare_objects(["暖气漏水"], ["燃气表漏气"]).conflict
    assert compare_objects(["下水井盖丢了"], ["井盖没了"]).agree
    assert compare_objects(["灯坏了"], ["路灯不亮"]) == compare_objects(["坏了"], ["电梯坏了"])  # one names none: no say


def test_without_a_model_the_rule_needs_the_same_category_at_a_specific_spot() -> None:
    rule = RuleJudge()
    lamp = Report("楼道灯坏了", "3号楼2单元", "物业管理")
    assert rule.judge(Report("楼道灯又不亮了", "三号楼二单元门口", "物业管理"), lamp) is Verdict.LIKELY
    assert rule.judge(Report("楼上装修太吵了", "3号楼2单元", "噪音扰民"), lamp) is Verdict.DIFFERENT
    assert rule.judge(Report("楼道灯坏了", "号", "物业管理"), Report("楼道灯坏了", "号", "物业管理")) is Verdict.DIFFERENT
    assert rule.judge(Report("楼道灯坏了", "3号楼2单元", "物业管理"), lamp, same_grid=False) is Verdict.DIFFERENT


def test_the_benchmark_is_held_out_and_large_enough() -> None:
    dev, holdout, heldout2 = read_pairs(DEV_FILE), read_pairs(HOLDOUT_FILE), read_pairs(HELDOUT2_FILE)
    check_held_out(dev, holdout)  # raises on a shared pair
    check_held_out(dev, heldout2)
    check_held_out(holdout, heldout2)
    assert len(dev) + len(holdout) >= 150 and len(holdout) >= 75 and len(heldout2) >= 60
    for pairs in (dev, holdout, heldout2):
        kinds = {(p.kind, p.same) for p in pairs}
        assert {("other_words", True), ("place_wording", True), ("category_words", True)} <= kinds
        assert {("same_place_other_problem", False), ("other_building", False), ("number_trap", False)} <= kinds
        assert {("junk_place", False)} <= kinds
    raw = yaml.safe_load(HOLDOUT_FILE.read_text(encoding="utf-8"))["pairs"]
    assert all(len(row["a"]) == 2 and len(row["b"]) == 2 for row in raw)


# --- filing, on both databases -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbours:
    """A community of two grids (neighbours), a worker in each and the community lead, made for one test."""

    grid: str
    other_grid: str
    worker: str
    other_worker: str
    lead: str


@pytest.fixture
def neighbours(session_factory: sessionmaker[Session]) -> Neighbours:
    tag = uuid.uuid4().hex[:8]
    found = Neighbours(f"grid-dup-{tag}", f"grid-dup2-{tag}", f"worker-dup-{tag}", f"worker-dup2-{tag}", f"lead-dup-{tag}")
    with unit_of_work(session_factory) as session:
        session.add(Region(code=f"community-dup-{tag}", name=f"测试社区{tag}", level="community"))
        session.flush()
        session.add_all(
            [
                Grid(code=found.grid, name=f"第一网格{tag}", community_code=f"community-dup-{tag}"),
                Grid(code=found.other_grid, name=f"第二网格{tag}", community_code=f"community-dup-{tag}"),
            ]
        )
        session.flush()
        session.add_all(
            [
                Worker(id=found.worker, name="周网格", grid_code=found.grid),
                Worker(id=found.other_worker, name="吴网格", grid_code=found.other_grid),
                Worker(id=found.lead, name="郑书记", grid_code=found.grid, role="lead"),
            ]
        )
    return found


def _file(
    factory: sessionmaker[Session], grid: str, text: str, place: str, judge: DuplicateJudge | None, reporter: str | None = None
) -> tuple[Filing, list[tuple[str, str]]]:
    """File a report as the chat's form does, and the private notices it causes: (who, text)."""
    with unit_of_work(factory) as session:
        filing = TicketService(session, duplicates=judge).file_report(
            group_id=None,
            grid_code=grid,
            reporter_id=reporter or f"r-{uuid.uuid4().hex[:6]}",
            reporter_name="居民小孙",
            description=text,
            location=place,
        )
        notices = [(m.target_id, m.text) for m in filing_notices(session, filing)]
        return filing, notices


def _ticket(factory: sessionmaker[Session], number: str) -> Ticket:
    with factory() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        ticket.events, ticket.co_reporters  # noqa: B018  (loaded before the session closes)
        session.expunge(ticket)
        return ticket


def test_two_wordings_are_one_ticket_raised_to_red_with_both_told(
    session_factory: sessionmaker[Session], neighbours: Neighbours, judge: DuplicateJudge
) -> None:
    first, notices = _file(session_factory, neighbours.grid, f"3号楼{COVER}", "3号楼东侧", judge, "r-first")
    assert first.ticket.colour == "yellow" and [who for who, _ in notices] == [neighbours.worker]
    again, raised = _file(session_factory, neighbours.grid, f"3栋{COVER_AGAIN}", "3栋东边", judge, "r-again")
    assert again.duplicate and again.ticket.number == first.ticket.number and again.raised_by == f"3栋{COVER_AGAIN}"
    told = dict(raised)
    assert set(told) == {neighbours.worker, neighbours.lead}
    assert told[neighbours.worker].startswith("【工单升级】") and "红色" in told[neighbours.worker]
    assert "太危险了" in told[neighbours.worker] and told[neighbours.lead].startswith("【抄送社区负责人】")
    ticket = _ticket(session_factory, first.ticket.number)
    assert ticket.colour == "red" and [r.reporter_id for r in ticket.co_reporters] == ["r-again"]
    assert ticket.deadline_at - ticket.created_at <= timedelta(hours=4) + timedelta(minutes=1)  # 安全隐患's deadline
    assert [e.action for e in ticket.events][-2:] == ["triage", "co_report"]
    assert "colour yellow→red" in (ticket.events[-2].note or "")
    once_more, _ = _file(session_factory, neighbours.grid, "东侧那个井盖还是没人管", "3号楼东侧", judge, "r-third")
    assert once_more.duplicate and once_more.raised_by is None  # already red: nobody is told again


def test_3_and_13_and_the_junk_ticket_do_not_swallow_a_report(
    session_factory: sessionmaker[Session], neighbours: Neighbours, judge: DuplicateJudge
) -> None:
    thirteen, _ = _file(session_factory, neighbours.grid, f"13号楼{COVER}", "13号楼东侧", judge)
    three, _ = _file(session_factory, neighbours.grid, f"3号楼{COVER}", "3号楼东侧", judge)
    assert not three.duplicate and three.ticket.number != thirteen.ticket.number
    for building, by_meaning in ((2, judge), (4, None)):  # nor without a model
        junk, _ = _file(session_factory, neighbours.grid, JUNK, "号", by_meaning)
        leak, _ = _file(session_factory, neighbours.grid, f"{building}号楼{LEAK}", f"{building}号楼楼顶", by_meaning)
        assert not leak.duplicate and leak.ticket.number != junk.ticket.number
        assert leak.possible_duplicate is None


def test_a_neighbouring_grids_likely_duplicate_is_filed_and_flagged(
    session_factory: sessionmaker[Session], neighbours: Neighbours, judge: DuplicateJudge
) -> None:
    first, _ = _file(session_factory, neighbours.grid, "5号楼门口的路灯不亮了", "5号楼门口", judge)
    flagged, notices = _file(session_factory, neighbours.other_grid, "五号楼前面路灯坏了好几天", "五号楼前面", judge)
    assert not flagged.duplicate and flagged.possible_duplicate is not None
    assert flagged.possible_duplicate.number == first.ticket.number
    [(who, notice)] = notices
    assert who == neighbours.other_worker and notice.startswith("【新工单】")
    assert f"可能重复：{first.ticket.number}" in notice and f"合并 {flagged.ticket.number} {first.ticket.number}" in notice
    history = [(e.action, e.note) for e in _ticket(session_factory, flagged.ticket.number).events]
    assert (POSSIBLE_DUPLICATE_ACTION, first.ticket.number) in history


def test_a_merge_folds_reporters_in_raises_and_tells_them(
    session_factory: sessionmaker[Session], neighbours: Neighbours, judge: DuplicateJudge
) -> None:
    old, _ = _file(session_factory, neighbours.grid, "7号楼门口的井盖松了", "7号楼门口", judge, "r-old")
    new, _ = _file(session_factory, neighbours.other_grid, "7号楼楼下井盖晃得厉害 很危险", "7号楼楼下", judge, "r-new")
    again, _ = _file(session_factory, neighbours.other_grid, "七号楼下面那个井盖 太危险了", "七号楼下面", judge, "r-new2")
    assert again.duplicate and again.ticket.number == new.ticket.number  # the new ticket has a co-reporter
    worker = Actor(neighbours.other_worker, Role.WORKER)
    with unit_of_work(session_factory) as session, pytest.raises(TicketError) as refused:
        TicketService(session).merge(new.ticket.number, old.ticket.number, Actor(neighbours.worker, Role.WORKER))
    assert refused.value.code == "not_assignee"  # the new ticket's worker (or the lead) merges it
    with unit_of_work(session_factory) as session:
        merged = TicketService(session).merge(new.ticket.number, old.ticket.number, worker)
        told = [(m.target_id, m.text) for m in notices_for(session, merged, "merge", worker.id)]
    assert _ticket(session_factory, new.ticket.number).status == "merged"
    kept = _ticket(session_factory, old.ticket.number)
    assert [r.reporter_id for r in kept.co_reporters] == ["r-new", "r-new2"] and kept.colour == "red"
    assert [e.action for e in kept.events][-2:] == ["triage", "merge_in"]
    assert {who for who, text in told if text.startswith("【工单升级】")} == {neighbours.worker}  # raised: its worker
    assert {who for who, text in told if text.startswith("【抄送社区负责人】")} == {neighbours.lead}
    with unit_of_work(session_factory) as session, pytest.raises(TicketError) as refused:
        TicketService(session).merge(old.ticket.number, new.ticket.number, Actor(neighbours.lead, Role.LEAD))
    assert refused.value.code == "merge_target_closed"


def test_a_merge_keeps_when_each_report_was_made(session_factory: sessionmaker[Session], neighbours: Neighbours) -> None:
    """The early warning counts co-reports by their time: a merge must not make days-old reports new."""
    old, _ = _file(session_factory, neighbours.grid, "11号楼门口路灯坏了", "11号楼门口", None, "r-kept")
    new, _ = _file(session_factory, neighbours.other_grid, "11号楼下面路灯不亮", "11号楼下面", None, "r-merged")
    co, _ = _file(session_factory, neighbours.other_grid, "11号楼下面路灯不亮", "11号楼下面", None, "r-co")
    assert co.duplicate and co.ticket.number == new.ticket.number
    days_ago = utcnow() - timedelta(days=5)
    with unit_of_work(session_factory) as session:
        merged = session.scalar(select(Ticket).where(Ticket.number == new.ticket.number))
        assert merged is not None
        merged.created_at = days_ago
        merged.co_reporters[0].created_at = days_ago + timedelta(hours=1)
    with unit_of_work(session_factory) as session:
        TicketService(session).merge(new.ticket.number, old.ticket.number, Actor(neighbours.lead, Role.LEAD))
    kept = _ticket(session_factory, old.ticket.number)
    times = {r.reporter_id: r.created_at for r in kept.co_reporters}
    assert times == {"r-merged": days_ago, "r-co": days_ago + timedelta(hours=1)}


def test_two_processes_filing_one_problem_at_once_open_one_ticket(
    session_factory: sessionmaker[Session], neighbours: Neighbours
) -> None:
    """Both would find no open ticket and open one each; the community lock makes the second find the first's."""

    def claim(session: Session) -> list[str]:
        filing = TicketService(session).file_report(
            group_id=None,
            grid_code=neighbours.grid,
            reporter_id=f"r-race-{uuid.uuid4().hex[:6]}",
            reporter_name="居民",
            description="15号楼门口的路灯坏了",
            location="15号楼门口",
        )
        return [filing.ticket.number]

    first, second = race_twice(session_factory, claim)
    assert first == second
    assert len(_ticket(session_factory, first[0]).co_reporters) == 1


def test_a_merge_stays_in_one_community(session_factory: sessionmaker[Session], neighbours: Neighbours) -> None:
    mine, _ = _file(session_factory, neighbours.grid, "9号楼路灯坏了", "9号楼", None)
    elsewhere, _ = _file(session_factory, "grid-3", "9号楼路灯坏了", "9号楼", None)
    with unit_of_work(session_factory) as session, pytest.raises(TicketError) as refused:
        TicketService(session).merge(mine.ticket.number, elsewhere.ticket.number, Actor(neighbours.lead, Role.LEAD))
    assert refused.value.code == "not_your_community"


# --- the console's merge -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console(database_url: str) -> Iterator[str]:
    settings = Settings(
        database_url=database_url,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        app_port=free_port(),
        kb_embedding_model="none",
        local_chat_enabled=True,
    )
    with app_server(settings) as url:
        yield url


def test_the_console_merges_and_the_reporter_hears_it(console: str, session_factory: sessionmaker[Session]) -> None:
    """worker-2 folds its flagged ticket into grid 1's through POST /api/v1/tickets/{number}/actions."""
    building = f"{uuid.uuid4().int % 9000 + 1000}号楼"
    with unit_of_work(session_factory) as session:
        service = TicketService(session)
        old = service.file_report(group_id="demo-grid-1", reporter_id="r-console-old", reporter_name="居民甲",
                                  description="路灯坏了", location=building).ticket.number  # fmt: skip
        new = service.file_report(group_id="demo-grid-2", reporter_id="r-console-new", reporter_name="居民乙",
                                  description="路灯不亮", location=building).ticket.number  # fmt: skip
    with httpx.Client(base_url=console, timeout=30, headers=headers_for(session_factory, "worker-2")) as worker:
        response = worker.post(f"/api/v1/tickets/{new}/actions", json={"action": "merge", "target": old})
        assert response.status_code == 403  # grid 1's ticket is not worker-2's to see: the lead merges across grids
        lead = httpx.Client(base_url=console, timeout=30, headers=headers_for(session_factory, "lead-1"))
        response = lead.post(f"/api/v1/tickets/{new}/actions", json={"action": "merge", "target": old})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "merged"
        again = lead.post(f"/api/v1/tickets/{new}/actions", json={"action": "merge", "target": old})
        assert again.status_code == 409
        room = lead.get("/api/v1/local/transcript", params={"target_type": "room", "target_id": "demo-grid-2"}).json()
        lead.close()
    told = [m["text"] for m in room["messages"] if new in m["text"]]
    assert told and old in told[-1] and "同一问题" in told[-1]
    assert [r.reporter_id for r in _ticket(session_factory, old).co_reporters] == ["r-console-new"]


# --- through the web chat and the real Rasa --------------------------------------------------------------------------------


def _report(chat: Chat, group: str, sender: str, name: str, text: str, place: str) -> list[dict[str, str]]:
    """A resident's report in the group; when NLU took no place from it, the form asks and the place is answered."""
    replies = chat.say(text, group=group, sender=sender, name=name, mention=True)
    if not any("工单" in r["text"] for r in replies if r["target_type"] == "room"):
        replies = chat.say(place, group=group, sender=sender, name=name, mention=True)
    return replies


def _room(replies: list[dict[str, str]]) -> str:
    texts = [r["text"] for r in replies if r["target_type"] == "room" and "工单" in r["text"]]
    assert texts, replies
    return texts[-1]


def _private(replies: list[dict[str, str]], who: str) -> list[str]:
    return [r["text"] for r in replies if r["target_type"] == "contact" and r["target_id"] == who]


def _building() -> int:
    return 100 + uuid.uuid4().int % 900


@pytest.mark.rasa
def test_two_wordings_in_the_group_are_one_ticket_and_both_reporters_are_told(
    chat: Chat, session_factory: sessionmaker[Session]
) -> None:
    n = _building()
    first, second = f"resident-{uuid.uuid4().hex[:8]}", f"resident-{uuid.uuid4().hex[:8]}"
    # The issue's own words: a near miss (差点掉下去) is no emergency happening now, so no red 高空坠物 ticket.
    said = f"{n}号楼东侧的下水井盖丢了，晚上有人差点掉下去"
    filed = _room(_report(chat, "demo-grid-1", first, "居民小周", said, f"{n}号楼东侧"))
    with session_factory() as session:
        [ticket] = session.scalars(select(Ticket).where(Ticket.reporter_id == first))
        number = ticket.number
    assert number in filed
    replies = _report(chat, "demo-grid-1", second, "居民小吴", f"{n}栋{COVER_AGAIN}", f"{n}栋东边")
    joined = _room(replies)
    assert number in joined and "已经有人" in joined, joined
    assert any(text.startswith("【工单升级】") for text in _private(replies, "worker-1")), replies  # 危险: raised
    with session_factory() as session:
        assert session.scalars(select(Ticket).where(Ticket.reporter_id == second)).first() is None
    ticket = _ticket(session_factory, number)
    assert ticket.colour == "red" and [r.reporter_id for r in ticket.co_reporters] == [second]

    done = chat.say(f"办结 {number} 已补上新井盖", group=None, sender="worker-1", name="张敏")
    told = [r["text"] for r in done if r["target_type"] == "room" and r["target_id"] == "demo-grid-1" and number in r["text"]]
    assert any(text.startswith("@居民小周") and "请评价" in text for text in told), told  # the first reporter rates
    assert any(text.startswith("@居民小吴") and "您也反映过的问题" in text for text in told), told


@pytest.mark.rasa
def test_a_neighbouring_grids_report_is_flagged_and_the_worker_merges_it(
    chat: Chat, session_factory: sessionmaker[Session]
) -> None:
    n = _building()
    first, second = f"resident-{uuid.uuid4().hex[:8]}", f"resident-{uuid.uuid4().hex[:8]}"
    _report(chat, "demo-grid-1", first, "居民小周", f"{n}号楼门口的路灯坏了，晚上黑乎乎的", f"{n}号楼门口")
    replies = _report(chat, "demo-grid-2", second, "居民小郑", f"{n}号楼前面那个路灯一直不亮", f"{n}号楼前面")
    with session_factory() as session:
        old = session.scalars(select(Ticket.number).where(Ticket.reporter_id == first)).one()
        new = session.scalars(select(Ticket.number).where(Ticket.reporter_id == second)).one()
    assert new in _room(replies)  # filed: grid 2's 3号楼 might be another estate's
    [notice] = [text for text in _private(replies, "worker-2") if text.startswith("【新工单】")]
    assert f"可能重复：{old}" in notice and f"合并 {new} {old}" in notice, notice

    merged = chat.say(f"合并 {new} {old}", group=None, sender="worker-2", name="李强")
    [reply] = _private(merged, "worker-2")
    assert reply.startswith(f"已把工单 {new} 合并到 {old}"), reply
    told = [r["text"] for r in merged if r["target_type"] == "room" and r["target_id"] == "demo-grid-2"]
    assert len(told) == 1 and told[0].startswith("@居民小郑") and old in told[0] and "同一问题" in told[0], told
    assert _ticket(session_factory, new).status == "merged"
    assert [r.reporter_id for r in _ticket(session_factory, old).co_reporters] == [second]
    usage = _private(chat.say("合并", group=None, sender="worker-2", name="李强"), "worker-2")
    assert usage and usage[0].startswith("格式：合并"), usage


@pytest.mark.rasa
def test_the_junk_ticket_does_not_swallow_a_real_report(chat: Chat, session_factory: sessionmaker[Session]) -> None:
    """The issue's bug: a 其他 ticket whose location was `号` answered a leak report 已经有人反映过了."""
    with unit_of_work(session_factory) as session:
        junk = (
            TicketService(session)
            .file_report(
                group_id="demo-grid-1",
                reporter_id=f"r-{uuid.uuid4().hex[:6]}",
                reporter_name="居民",
                description=JUNK,
                location="号",
            )
            .ticket.number
        )
    n, sender = _building(), f"resident-{uuid.uuid4().hex[:8]}"
    filed = _room(_report(chat, "demo-grid-1", sender, "居民小钱", f"{n}号楼{LEAK}", f"{n}号楼楼顶"))
    assert "已为您登记" in filed and "已经有人" not in filed and junk not in filed, filed  # (a 紧急工单 here: 室内进水)
    with session_factory() as session:
        [own] = session.scalars(select(Ticket).where(Ticket.reporter_id == sender))
        assert own.number in filed and own.location.startswith(f"{n}号楼")
