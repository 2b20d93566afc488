"""Early warnings (预警) and recurring problems (举一反三; docs/tickets.md), on both databases.

Reports are filed through the ticket service with the real watch (grid/warnings.py) and the real meaning model
(the offline e5 the app loads); each test gets a community of its own (tests/areas.py), so other modules' reports
never join its clusters. The lead's message is built as the chat sends it (bot/warning_notices.py); the console's
list/acknowledge/close run over HTTP on the live app; the weekly workbook is downloaded and read; and one test goes
through the web chat on the real Rasa server: three residents, three wordings, one warning to the lead.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.dispatch import Dispatcher
from bot.embedded import app_server, free_port
from bot.messages import TargetType
from bot.settings import PROJECT_ROOT, Settings
from bot.warning_notices import warning_notices
from grid.duplicates import load_judge
from grid.geography import ChatGroup, Grid, Region, StreetContact, Worker
from grid.outbox import OutboxMessage
from grid.problems import ProblemJudge
from grid.service import TicketService
from grid.stats import ticket_stats
from grid.tickets import Ticket
from grid.warnings import EarlyWarning, RaisedWarning, Rule, RulesError, WarningWatch, load_rules
from knowledge.embeddings import load_embedder
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.accounts import bearer, headers_for, new_account, token_for
from tests.areas import Area, race_twice
from tests.servers import Chat

Factory = sessionmaker[Session]


@pytest.fixture(scope="module")
def judge() -> ProblemJudge:
    """The app's grouping: the duplicate judge's description similarity and thresholds, with the offline e5."""
    embedder = load_embedder("auto")
    assert embedder is not None, "no offline e5 model: run `make setup`"
    return ProblemJudge.for_duplicates(load_judge(embedder))


@pytest.fixture(scope="module")
def watch(judge: ProblemJudge) -> WarningWatch:
    return WarningWatch(load_rules(), judge)


def _report(factory: Factory, area: Area, watch: WarningWatch, text: str, place: str) -> tuple[str, list[RaisedWarning]]:
    """A fresh resident's report in the area's grid: its ticket number and the warnings it raised."""
    with unit_of_work(factory) as session:
        filing = TicketService(session, warnings=watch).file_report(
            group_id=None,
            grid_code=area.grid,
            reporter_id=f"r-yw-{uuid.uuid4().hex[:8]}",
            reporter_name="居民",
            description=text,
            location=place,
        )
        return filing.ticket.number, filing.warnings


def _community(factory: Factory, area: Area) -> str:
    with factory() as session:
        grid = session.get(Grid, area.grid)
        assert grid is not None
        return grid.community_code


def _warnings(factory: Factory, area: Area) -> list[EarlyWarning]:
    with factory() as session:
        community = _community(factory, area)
        return list(session.scalars(select(EarlyWarning).where(EarlyWarning.community_code == community)))


COVER = [
    ("3号楼东侧的下水井盖丢了，晚上有人差点掉下去", "3号楼东侧"),
    ("三号楼东边井盖没了，路过的人小心", "三号楼东边"),
    ("3栋楼东侧下水道的盖子不见了，一个大窟窿", "3栋楼东侧"),
]


def test_three_reports_of_one_problem_in_other_words_warn_the_lead_once(
    session_factory: Factory, area: Area, watch: WarningWatch
) -> None:
    first, raised = _report(session_factory, area, watch, *COVER[0])
    assert raised == []
    other, raised = _report(session_factory, area, watch, "7号楼楼道灯不亮了", "7号楼")  # another problem, elsewhere
    assert raised == []
    _, raised = _report(session_factory, area, watch, *COVER[1])
    assert raised == []
    third, raised = _report(session_factory, area, watch, *COVER[2])
    [warning] = raised
    assert (warning.rule, warning.reports, warning.level, warning.grown_from) == (Rule.PROBLEM, 3, 3, None)
    assert warning.lead is not None and warning.lead.worker_id == area.lead
    numbers = {t.number for t in warning.tickets}
    assert {first, third} <= numbers and other not in numbers
    assert "井盖" in warning.summary or "盖子" in warning.summary
    [message] = warning_notices(raised)
    assert (message.target_type, message.target_id) == (TargetType.CONTACT, area.lead)
    assert message.text.startswith("【预警】") and "3条反映指向同一问题" in message.text
    assert all(number in message.text for number in numbers) and "7号楼" not in message.text
    assert "3号楼东侧" in message.text  # the places, one per spot as residents wrote them
    [stored] = _warnings(session_factory, area)
    assert (stored.state, stored.rule, stored.reports) == ("open", "problem", 3) and stored.told == [area.lead]
    with session_factory() as session:
        events = session.scalars(select(OutboxMessage).where(OutboxMessage.topic == "early_warning")).all()
        [event] = [e for e in events if e.payload["warning"]["id"] == stored.id]
        assert set(event.payload["warning"]["tickets"]) == numbers and event.payload["warning"]["lead"] == area.lead


# Twelve residents about one overflowing refuse station, in their own words and with their own idea of where it is.
REFUSE = [
    ("垃圾站垃圾满了没人清", "小区垃圾站"),
    ("垃圾站那边的垃圾堆成山了", "垃圾站"),
    ("垃圾站好几天没清运了，臭得很", "垃圾站旁边"),
    ("垃圾站的垃圾溢出来了", "垃圾站"),
    ("垃圾站门口全是垃圾袋", "垃圾站门口"),
    ("小区垃圾站没人管，苍蝇乱飞", "小区垃圾站"),
    ("垃圾站又满了", "垃圾站"),
    ("垃圾站垃圾一直没人收", "垃圾站附近"),
    ("垃圾站那里太脏了，快清一下", "垃圾站"),
    ("垃圾站的垃圾都堆到路上了", "垃圾站"),
    ("垃圾站臭气熏天没人处理", "垃圾站"),
    ("垃圾站垃圾桶全满了", "垃圾站"),
]


def test_a_growing_burst_warns_again_only_at_the_next_step(session_factory: Factory, area: Area, watch: WarningWatch) -> None:
    """3 → 6 → 12: the lead hears when it starts and each time it doubles, never for the reports in between; the
    category rule (5 环境卫生 in 48 h) stays silent, because those reports are this one problem."""
    told: dict[int, RaisedWarning] = {}
    for index, (text, place) in enumerate(REFUSE, start=1):
        _, raised = _report(session_factory, area, watch, text, place)
        assert len(raised) <= 1, raised
        if raised:
            told[index] = raised[0]
    assert sorted(told) == [3, 6, 12], {i: (w.rule, w.reports) for i, w in told.items()}
    assert [(w.level, w.grown_from) for w in told.values()] == [(3, None), (6, 3), (12, 6)]
    assert len({w.id for w in told.values()}) == 1  # one warning, grown
    assert warning_notices([told[6]])[0].text.startswith("【预警升级】（此前3条时已预警）")
    [stored] = _warnings(session_factory, area)
    assert (stored.level, stored.reports, stored.rule) == (12, 12, "problem")


def test_reports_older_than_the_window_do_not_count(session_factory: Factory, area: Area, watch: WarningWatch) -> None:
    old = [_report(session_factory, area, watch, *cover)[0] for cover in COVER[:2]]
    with unit_of_work(session_factory) as session:
        for ticket in session.scalars(select(Ticket).where(Ticket.number.in_(old))):
            ticket.created_at -= timedelta(hours=25)
            ticket.deadline_at -= timedelta(hours=25)
    _, raised = _report(session_factory, area, watch, *COVER[2])
    assert raised == [] and _warnings(session_factory, area) == []


def test_co_reports_count_as_reports(session_factory: Factory, area: Area, watch: WarningWatch) -> None:
    """Three residents joining one ticket (the duplicate check linked them) are three reports of one problem."""
    place = "5号楼2单元"
    results = [_report(session_factory, area, watch, "电梯坏了", place) for _ in range(3)]
    assert len({number for number, _ in results}) == 1  # one ticket, two co-reporters
    assert [len(raised) for _, raised in results] == [0, 0, 1]
    [warning] = results[2][1]
    assert warning.tickets[0].reports == 3 and "（3人反映）" in warning_notices([warning])[0].text


GRIDBOT = str(Path(sys.executable).parent / "gridbot")
FLYING_WIRES = ["11号楼有人用飞线给电动车充电，太危险了", "11号楼又有人飞线给电瓶车充电", "11号楼飞线充电没人管"]


def _street(factory: Factory, area: Area, people: list[tuple[str, str, str]]) -> tuple[str, str]:
    """A street of its own above the area's community, with these (id, name, channel) people: its (code, name)."""
    tag = uuid.uuid4().hex[:8]
    code, name = f"street-area-{tag}", f"测试街道{tag}"
    with unit_of_work(factory) as session:
        session.add(Region(code=code, name=name, level="street", parent_code="demo-district"))
        session.flush()
        region = session.get(Region, _community(factory, area))
        assert region is not None
        region.parent_code = code
        session.add_all([StreetContact(id=pid, name=pname, street_code=code, channel=ch) for pid, pname, ch in people])
    return code, name


def test_a_red_warning_without_street_contacts_names_the_street(
    session_factory: Factory, area: Area, watch: WarningWatch
) -> None:
    """A street nobody stands for in the map: a red warning tells the lead it went to the street through the outbox
    (city platform), and names which street; nobody else is messaged."""
    code, name = _street(session_factory, area, [])
    raised = [_report(session_factory, area, watch, text, "11号楼")[1] for text in FLYING_WIRES]
    [warning] = raised[2]
    assert warning.colour == "red" and warning.street == (code, name) and warning.street_contacts == ()
    [message] = warning_notices([warning])
    assert message.target_id == area.lead and f"已同步报送{name}" in message.text


def test_a_red_warning_goes_to_the_streets_people_on_their_own_channels(
    session_factory: Factory, area: Area, watch: WarningWatch
) -> None:
    """The street's contacts (街道) get the red warning privately as the lead does, each on their own channel; the
    lead is told who at the street has it, they are told the lead has it; the outbox event names them."""
    tag = uuid.uuid4().hex[:6]
    zhou, qian = f"street-zhou-{tag}", f"street-qian-{tag}"
    code, name = _street(session_factory, area, [(zhou, "周主任", "webchat"), (qian, "钱科长", "wecom")])
    raised = [_report(session_factory, area, watch, text, "11号楼")[1] for text in FLYING_WIRES]
    assert raised[:2] == [[], []]
    [warning] = raised[2]
    assert warning.colour == "red" and [p.worker_id for p in warning.street_contacts] == [qian, zhou]
    messages = warning_notices([warning])
    assert [(m.target_type, m.target_id) for m in messages] == [
        (TargetType.CONTACT, area.lead),
        (TargetType.CONTACT, qian),
        (TargetType.CONTACT, zhou),
    ]
    to_lead, *to_street = messages
    assert f"已同步告知{name}钱科长、周主任" in to_lead.text and to_lead.text.startswith("【预警】")
    for message in to_street:
        assert message.text.startswith("【预警】") and "11号楼" in message.text and "3条反映" in message.text
        assert f"报送{name}：社区负责人吴书记已收到此预警" in message.text
    with session_factory() as session:
        # each goes out on the person's own channel, as a worker's message does
        channels = [Dispatcher._home_channel(session, m) for m in messages]
    assert channels == ["webchat", "wecom", "webchat"]
    [stored] = _warnings(session_factory, area)
    assert stored.told == [area.lead, qian, zhou]
    with session_factory() as session:
        events = session.scalars(select(OutboxMessage).where(OutboxMessage.topic == "early_warning")).all()
        [event] = [e for e in events if e.payload["warning"]["id"] == stored.id]
    assert event.payload["warning"]["street"] == code and event.payload["warning"]["street_contacts"] == [qian, zhou]


def test_a_yellow_warning_stays_with_the_lead(session_factory: Factory, area: Area, watch: WarningWatch) -> None:
    """The street hears of red warnings only: a yellow burst goes to the community lead alone."""
    _street(session_factory, area, [(f"street-sun-{uuid.uuid4().hex[:6]}", "孙主任", "webchat")])
    raised = [_report(session_factory, area, watch, *cover)[1] for cover in COVER]
    [warning] = raised[2]
    assert warning.colour == "yellow" and warning.street is None and warning.street_contacts == ()
    assert [m.target_id for m in warning_notices([warning])] == [area.lead]


def test_a_street_contact_is_added_changed_and_removed_with_the_cli(database_url: str, session_factory: Factory) -> None:
    """`gridbot group street` manages the street's people as `gridbot group worker` does workers; the console's
    meta lists them."""
    person = f"street-cli-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL"))}
    env |= {"DATABASE_URL": database_url, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}

    def gridbot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GRIDBOT, "group", "street", *args], capture_output=True, text=True, env=env,
                              cwd=PROJECT_ROOT, timeout=120)  # fmt: skip

    refused = gridbot(person, "--channel", "webchat", "--name", "吴科长", "--street", "demo-community-1")
    assert refused.returncode != 0 and "no street region" in refused.stdout + refused.stderr  # a community is no street
    added = gridbot(person, "--channel", "wechaty", "--name", "吴科长", "--street", "demo-street")
    assert added.returncode == 0, added.stdout + added.stderr
    with session_factory() as session:
        stored = session.get(StreetContact, person)
        assert stored is not None and (stored.name, stored.street_code, stored.channel) == ("吴科长", "demo-street", "wechaty")
    changed = gridbot(person, "--channel", "wecom")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    with session_factory() as session:
        stored = session.get(StreetContact, person)
        assert stored is not None and (stored.name, stored.channel) == ("吴科长", "wecom")
    removed = gridbot(person, "--channel", "wecom", "--remove")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    with session_factory() as session:
        assert session.get(StreetContact, person) is None


SANITATION = [
    ("1号楼门口的垃圾桶满了", "1号楼门口"),
    ("篮球场边上有老鼠", "篮球场"),
    ("9号楼后面有狗粪便没人清扫", "9号楼后面"),
    ("东门口的公厕太脏了", "东门口"),
    ("7号楼地下室蟑螂特别多", "7号楼地下室"),
]


def test_a_category_burst_across_places_warns_by_category(session_factory: Factory, area: Area, watch: WarningWatch) -> None:
    """Five different sanitation problems at five places in two days: no one problem, but one category's burst."""
    raised = [_report(session_factory, area, watch, text, place)[1] for text, place in SANITATION]
    assert [len(r) for r in raised] == [0, 0, 0, 0, 1]
    assert raised[4][0].rule is Rule.CATEGORY and "“环境卫生”类" in warning_notices(raised[4])[0].text
    [stored] = _warnings(session_factory, area)
    assert (stored.rule, stored.category, stored.reports, len(stored.ticket_ids)) == ("category", "环境卫生", 5, 5)


def test_two_processes_filing_at_once_raise_one_warning(session_factory: Factory, area: Area, watch: WarningWatch) -> None:
    """Four sanitation tickets filed; then, at the same instant, two processes each add a resident to a different one
    of them (co-reports: no ticket number is drawn, so nothing else makes them wait for each other). Each alone would
    count five and warn; the community lock makes the second see the first's report and warning."""
    for text, place in SANITATION[:4]:
        _report(session_factory, area, watch, text, place)
    again = iter(SANITATION[:2])
    taking = threading.Lock()

    def claim(session: Session) -> list[str]:
        with taking:
            text, place = next(again)
        filing = TicketService(session, warnings=watch).file_report(
            group_id=None,
            grid_code=area.grid,
            reporter_id=f"r-race-{uuid.uuid4().hex[:8]}",
            reporter_name="居民",
            description=text,
            location=place,
        )
        assert filing.duplicate
        return [str(w.id) for w in filing.warnings]

    results = race_twice(session_factory, claim)
    assert sorted(len(r) for r in results) == [0, 1], results
    [stored] = _warnings(session_factory, area)
    assert (stored.rule, stored.reports, stored.level, len(stored.ticket_ids)) == ("category", 6, 5, 4)


def test_thresholds_per_category_and_per_community(
    session_factory: Factory, area: Area, judge: ProblemJudge, tmp_path: Path
) -> None:
    community = _community(session_factory, area)
    site = tmp_path / "warnings.yml"
    site.write_text(
        f"communities:\n  {community}:\n    categories:\n      市政设施: {{problem: {{reports: 2, hours: 6}}}}\n",
        encoding="utf-8",
    )
    rules = load_rules(site)
    assert rules.threshold(Rule.PROBLEM, community, "市政设施").reports == 2
    assert rules.threshold(Rule.PROBLEM, community, "环境卫生").reports == 3  # other categories keep the default
    assert rules.threshold(Rule.PROBLEM, "demo-community-1", "市政设施").reports == 3  # other communities too
    assert rules.threshold(Rule.CATEGORY, community, "咨询").on is False  # questions are never a burst
    sooner = WarningWatch(rules, judge)
    assert _report(session_factory, area, sooner, *COVER[0])[1] == []
    [warning] = _report(session_factory, area, sooner, *COVER[1])[1]
    assert (warning.reports, warning.hours) == (2, 6)

    broken = tmp_path / "broken.yml"
    broken.write_text("defaults:\n  problem: {reports: three}\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"defaults\.problem\.reports"):
        load_rules(broken)


# --- the console: list, acknowledge, close -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(database_url: str, judge: ProblemJudge) -> Iterator[str]:
    """The live app on this database, with the embedding model the judge fixture loaded (shared in-process)."""
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port())
    with app_server(settings) as url:
        yield url


def test_a_lead_acknowledges_and_closes_a_warning_through_the_api(
    api: str, session_factory: Factory, area: Area, watch: WarningWatch
) -> None:
    for cover in COVER:
        _report(session_factory, area, watch, *cover)
    [stored] = _warnings(session_factory, area)
    lead = httpx.Client(
        base_url=api,
        timeout=30,
        headers=bearer(token_for(session_factory, new_account(session_factory, "worker", worker_id=area.lead))),
    )
    worker = httpx.Client(
        base_url=api,
        timeout=30,
        headers=bearer(token_for(session_factory, new_account(session_factory, "worker", worker_id=area.worker))),
    )
    viewer = httpx.Client(base_url=api, timeout=30, headers=headers_for(session_factory, "viewer"))
    other_lead = httpx.Client(base_url=api, timeout=30, headers=headers_for(session_factory, "lead-1"))
    with lead, worker, viewer, other_lead:
        [listed] = lead.get("/api/v1/warnings", params={"state": "open"}).json()
        assert (listed["id"], listed["rule"], listed["reports"]) == (stored.id, "problem", 3)
        assert [t["number"] for t in listed["tickets"]] == sorted(t["number"] for t in listed["tickets"])
        assert len(listed["tickets"]) == len(stored.ticket_ids) and listed["tickets"][0]["location"] == "3号楼东侧"
        assert any(w["id"] == stored.id for w in viewer.get("/api/v1/warnings").json())  # leaders read every community
        assert all(w["id"] != stored.id for w in other_lead.get("/api/v1/warnings").json())  # another community's
        assert other_lead.post(f"/api/v1/warnings/{stored.id}/acknowledge").status_code == 404
        assert worker.post(f"/api/v1/warnings/{stored.id}/acknowledge").status_code == 403  # the lead decides
        assert viewer.post(f"/api/v1/warnings/{stored.id}/close").status_code == 403

        acknowledged = lead.post(f"/api/v1/warnings/{stored.id}/acknowledge", json={"note": "已通知物业补井盖"})
        assert acknowledged.status_code == 200, acknowledged.text
        assert (acknowledged.json()["state"], acknowledged.json()["acknowledged_by"]) == ("acknowledged", area.lead)
        again = lead.post(f"/api/v1/warnings/{stored.id}/acknowledge")
        assert again.status_code == 409 and "已确认" in again.json()["detail"]["message"]
        assert lead.get("/api/v1/warnings", params={"state": "open"}).json() == []

        closed = lead.post(f"/api/v1/warnings/{stored.id}/close", json={"note": "井盖已补上"})
        assert closed.status_code == 200 and closed.json()["state"] == "closed" and closed.json()["note"] == "井盖已补上"
        assert lead.post(f"/api/v1/warnings/{stored.id}/close").status_code == 409
        assert lead.post("/api/v1/warnings/999999999/close").status_code == 404
        page = lead.get("/console/warnings")
        assert page.status_code == 200 and "warnings.js" in page.text
    with session_factory() as session:
        topics = {m.topic for m in session.scalars(select(OutboxMessage).where(OutboxMessage.ticket_id.in_(stored.ticket_ids)))}
    assert {"early_warning", "early_warning_acknowledged", "early_warning_closed"} <= topics


# --- recurring problems (举一反三) -----------------------------------------------------------------------------------

# One basement seeping water over four weeks, in seven wordings (two of them filed as another category), beside a
# broken light at the same basement (another problem) and the same seepage at building 13 (another place).
SEEPAGE = [
    (21, "3号楼地下室渗水，地上湿了一片", "3号楼地下室"),
    (20, "三号楼地下室墙上一直在渗水", "三号楼地下室"),
    (14, "3号楼地下室又渗水了", "3号楼地下室"),
    (7, "3栋地下室往里渗水，地上积水了", "3栋地下室"),
    (7, "3号楼地下室墙面渗水发霉", "3号楼地下室"),
    (0, "3号楼地下室渗水还是没修好", "3号楼地下室"),
    (0, "三号楼地下室漏水，墙根全是水", "三号楼地下室"),
]
OTHERS = [
    (14, "3号楼地下室的灯坏了", "3号楼地下室"),
    (0, "3号楼地下室灯不亮，黑漆漆的", "3号楼地下室"),
    (7, "13号楼地下室渗水", "13号楼地下室"),
]


def _file_back(factory: Factory, area: Area, days: int, text: str, place: str) -> None:
    """A ticket of its own (no duplicate linking), moved `days` back."""
    with unit_of_work(factory) as session:
        ticket = (
            TicketService(session)
            .file_report(
                group_id=None,
                grid_code=area.grid,
                reporter_id=f"r-jy-{uuid.uuid4().hex[:8]}",
                reporter_name="居民",
                description=text,
                location=place,
                duplicate_window=timedelta(0),
            )
            .ticket
        )
        ticket.created_at -= timedelta(days=days)
        ticket.deadline_at -= timedelta(days=days)


def test_the_weekly_report_groups_a_recurring_problem_by_meaning(
    api: str, session_factory: Factory, area: Area, judge: ProblemJudge
) -> None:
    for days, text, place in SEEPAGE + OTHERS:
        _file_back(session_factory, area, days, text, place)
    with session_factory() as session:
        categories = set(session.scalars(select(Ticket.category).where(Ticket.grid_code == area.grid)))
        now = utcnow()
        by_category = ticket_stats(session, start=now - timedelta(days=30), end=now + timedelta(minutes=1), grid_code=area.grid)
    assert len(categories) > 1  # the wordings fell into several categories: (category, place) pairs would split them
    assert [p.count for p in by_category.top_recurring if "渗水" in p.summary] != [7]  # without meaning: split

    with httpx.Client(base_url=api, timeout=60, headers=headers_for(session_factory, "admin")) as admin:
        response = admin.get("/api/v1/reports/weekly", params={"grid": area.grid})
        assert response.status_code == 200
        rows = list(load_workbook(io.BytesIO(response.content))["高发问题"].iter_rows(min_row=2, values_only=True))
        stats = admin.get("/api/v1/stats", params={"grid": area.grid}).json()
    seepage = [row for row in rows if "渗水" in str(row[4])]
    assert len(seepage) == 1, rows
    _grid, _category, location, count, _summary, weeks, per_week, line = seepage[0]
    assert (location, count, weeks) == ("3号楼地下室", 7, 4), seepage
    assert line.startswith("3号楼地下室：") and line.endswith("（4周7次）"), line
    assert per_week.count(":") == 4
    light = [row for row in rows if "灯" in str(row[4])]
    assert [row[3] for row in light] == [2]  # the light is its own problem at that basement
    assert all("13号楼" not in str(row[2]) for row in rows)  # building 13 is another place, reported once

    [api_seepage] = [r for r in stats["recurring_by_grid"] if "渗水" in r["summary"]]
    assert api_seepage["count"] == 7 and len(api_seepage["weeks"]) == 4 and sum(w["count"] for w in api_seepage["weeks"]) == 7
    assert not [r for r in stats["recurring_by_grid"] if "13号楼" in r["location"]]


# --- through the web chat on the real Rasa server ----------------------------------------------------------------


def _file_in_chat(chat: Chat, text: str, place: str, group: str = "demo-grid-1") -> list[dict[str, str]]:
    """A new resident reports in `group` (demo-grid-1: 陈书记's community), answering "where?" if the form asks."""
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    replies = chat.say(text, group=group, sender=sender, name="居民小周", mention=True)
    room = " ".join(r["text"] for r in replies if r["target_type"] == "room")
    if "在哪个位置" in room:  # NLU did not take the place from the sentence: the form asks
        replies += chat.say(place, group=group, sender=sender, name="居民小周", mention=True)
    return replies


@pytest.fixture
def street_community(session_factory: sessionmaker[Session]) -> tuple[str, str]:
    """(group, lead) of a community of its own under demo-street (幸福街道, whose person is 周主任, street-1): a problem
    is counted across the community's places, so other tests' reports of the same hazard in a shared community
    would make this test's reports grow their warning instead of raising one."""
    tag = uuid.uuid4().hex[:8]
    community, grid, group, lead = f"community-st-{tag}", f"grid-st-{tag}", f"group-st-{tag}", f"lead-st-{tag}"
    with unit_of_work(session_factory) as session:
        session.add(Region(code=community, name=f"测试社区{tag}", level="community", parent_code="demo-street"))
        session.flush()
        session.add(Grid(code=grid, name=f"测试网格{tag}", community_code=community))
        session.flush()
        session.add_all(
            [
                Worker(id=f"worker-st-{tag}", name="周网格", grid_code=grid, role="worker"),
                Worker(id=lead, name="陈书记", grid_code=grid, role="lead"),
                ChatGroup(id=group, name=f"测试居民群{tag}", grid_code=grid),
            ]
        )
    return group, lead


@pytest.mark.rasa
def test_three_residents_in_other_words_give_the_lead_one_warning(chat: Chat) -> None:
    building = f"{100 + uuid.uuid4().int % 800}号楼"
    said = [
        (f"{building}北侧的健身器材坏了，铁杆都松了", f"{building}北侧"),
        (f"{building}北边那个健身器材晃得厉害，一直没人修", f"{building}北边"),
        (f"{building}北面的健身器材有根铁管断了，小孩容易受伤", f"{building}北面"),
    ]
    warned: list[tuple[int, str]] = []
    seen = []
    for index, (text, place) in enumerate(said, start=1):
        replies = _file_in_chat(chat, text, place)
        seen.append(replies)  # for the failure message
        to_lead = [r["text"] for r in replies if r["target_type"] == "contact" and r["target_id"] == "lead-1"]
        warned += [(index, message) for message in to_lead if message.startswith("【预警")]
    assert len(warned) == 1, seen
    index, message = warned[0]
    assert index == 3 and "3条反映指向同一问题" in message and building in message, message
    assert "：健身器材坏了" in message  # the summary: the problem in a resident's words, no place, no filler


@pytest.mark.rasa
def test_a_red_burst_in_the_chat_reaches_the_lead_and_the_street(chat: Chat, street_community: tuple[str, str]) -> None:
    """Three residents report one hazard in a community of 幸福街道 (demo-street, whose person is 周主任, street-1):
    the third report's turn sends the 【预警】 to the lead and to the street's person privately."""
    group, lead = street_community
    building = f"{100 + uuid.uuid4().int % 800}号楼"
    said = [
        (f"{building}有人用飞线给电动车充电，电线从楼上吊下来，太危险了", building),
        (f"{building}又有人从窗户拉电线充电瓶车", building),
        (f"{building}飞线充电的又来了，着火怎么办", building),
    ]
    warned: dict[str, list[tuple[int, str]]] = {lead: [], "street-1": []}
    seen = []
    for index, (text, place) in enumerate(said, start=1):
        replies = _file_in_chat(chat, text, place, group)
        seen.append(replies)  # for the failure message
        for reply in replies:
            if reply["target_type"] == "contact" and reply["target_id"] in warned and building in reply["text"]:
                warned[reply["target_id"]] += [(index, reply["text"])] if "条反映指向同一问题" in reply["text"] else []
    assert [i for i, _ in warned[lead]] == [3] and [i for i, _ in warned["street-1"]] == [3], seen
    assert "已同步告知幸福街道周主任" in warned[lead][0][1]
    assert "社区负责人陈书记已收到此预警" in warned["street-1"][0][1]
