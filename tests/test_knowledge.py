"""Knowledge retrieval over the demo entries: paraphrases answered, expired and out-of-region never answered."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.demo import DEMO_ENTRIES
from knowledge.base import KnowledgeBase
from knowledge.loader import read_yaml, upsert_entries
from knowledge.models import KnowledgeEntry
from storage.engine import unit_of_work

TODAY = date(2026, 11, 25)
GRID1_REGIONS = ["demo-community-1", "demo-street", "demo-district"]
GRID3_REGIONS = ["demo-community-2", "demo-street", "demo-district"]
DEMO = DEMO_ENTRIES


@pytest.mark.parametrize(
    ("question", "external_id"),
    [
        ("社区的高龄补贴怎么申请", "kb-elderly-allowance"),
        ("暂住的人办居住证要啥材料", "kb-residence-permit"),
        ("新生的宝宝怎么上户口", "kb-newborn-hukou"),
        ("门禁卡丢了怎么办", "kb-access-card"),
        ("电动车能不能在楼道充电", "kb-ebike-charging"),
    ],
)
def test_paraphrases_find_their_entry(session_factory: sessionmaker[Session], question: str, external_id: str) -> None:
    with session_factory() as session:
        answer = KnowledgeBase().answer(session, question, GRID1_REGIONS, TODAY)
        assert answer is not None, question
        assert answer.entry.external_id == external_id
        assert answer.entry.citation()


@pytest.mark.parametrize("question", ["火星上能种土豆吗", "帮我订个外卖", "今天股票能涨吗"])
def test_unrelated_question_is_not_answered(session_factory: sessionmaker[Session], question: str) -> None:
    with session_factory() as session:
        assert KnowledgeBase().answer(session, question, GRID1_REGIONS, TODAY) is None


def test_expired_entry_is_never_answered(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        expired = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.expires_on < TODAY)).all()
        assert expired, "demo data keeps one expired entry"
        kb = KnowledgeBase()
        for entry in expired:
            for question in [entry.title, *entry.questions]:
                found = kb.answer(session, question, GRID1_REGIONS + GRID3_REGIONS, TODAY)
                assert found is None or found.entry.id != entry.id, question


def test_community_entry_only_for_its_community(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        entry = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.scope_code == "demo-community-1")).first()
        assert entry is not None
        kb = KnowledgeBase()
        inside = kb.answer(session, entry.title, GRID1_REGIONS, TODAY)
        assert inside is not None and inside.entry.id == entry.id
        outside = kb.answer(session, entry.title, GRID3_REGIONS, TODAY)
        assert outside is None or outside.entry.id != entry.id


def test_reimport_changes_nothing_and_edit_bumps_version(session_factory: sessionmaker[Session]) -> None:
    entries = read_yaml(DEMO)
    with unit_of_work(session_factory) as session:
        assert upsert_entries(session, entries, "again") == (0, 0)
    edited = entries[0].model_copy(update={"answer": entries[0].answer + "（已更新）"})
    with unit_of_work(session_factory) as session:
        assert upsert_entries(session, [edited], "admin") == (0, 1)
        stored = session.scalar(select(KnowledgeEntry).where(KnowledgeEntry.external_id == edited.external_id))
        assert stored is not None and stored.version == 2 and stored.updated_by == "admin"
    with unit_of_work(session_factory) as session:  # put it back for the other tests
        upsert_entries(session, [entries[0]], "test")
