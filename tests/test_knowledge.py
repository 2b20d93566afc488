"""Knowledge retrieval over the sample entries, lexical-only and hybrid: the answer policy's promises.

Paraphrases are answered with their entry, unrelated questions are not, an expired or not-yet-effective
entry is never answered, and community entries answer only their community. Both retrievers run with the
thresholds calibrated when the demo data was loaded.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from bot.demo import DEMO_ENTRIES
from bot.runtime import build_knowledge_base
from bot.settings import Settings
from knowledge.admin import read_yaml, upsert_entries
from knowledge.answer_policy import LEXICAL_ONLY, StoredPolicy
from knowledge.base import KnowledgeBase
from knowledge.embeddings import load_embedder
from knowledge.models import KnowledgeEntry
from knowledge.vector_cache import CachedVector
from storage.engine import make_engine, make_session_factory, unit_of_work

TODAY = date(2026, 11, 25)
GRID1_REGIONS = ["demo-community-1", "demo-street", "demo-district"]
GRID3_REGIONS = ["demo-community-2", "demo-street", "demo-district"]


@pytest.fixture(scope="module", params=["lexical", "hybrid"])
def kb(request: pytest.FixtureRequest) -> KnowledgeBase:
    if request.param == "lexical":
        return KnowledgeBase()
    knowledge = build_knowledge_base(Settings())
    assert knowledge.embedder is not None, "make setup builds the offline embedding model"
    return knowledge


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
def test_paraphrases_find_their_entry(
    session_factory: sessionmaker[Session], kb: KnowledgeBase, question: str, external_id: str
) -> None:
    with session_factory() as session:
        answer = kb.answer(session, question, GRID1_REGIONS, TODAY)
        assert answer is not None, question
        assert answer.entry.external_id == external_id
        assert answer.score >= 1.0 and answer.entry.citation()


@pytest.mark.parametrize("question", ["火星上能种土豆吗", "帮我订个外卖", "今天股票能涨吗", "护照快过期了 去哪换本新的"])
def test_unrelated_question_is_not_answered(session_factory: sessionmaker[Session], kb: KnowledgeBase, question: str) -> None:
    with session_factory() as session:
        assert kb.answer(session, question, GRID1_REGIONS, TODAY) is None


def test_entries_outside_their_dates_are_never_answered(session_factory: sessionmaker[Session], kb: KnowledgeBase) -> None:
    with session_factory() as session:
        outside = session.scalars(
            select(KnowledgeEntry).where((KnowledgeEntry.expires_on < TODAY) | (KnowledgeEntry.effective_from > TODAY))
        ).all()
        assert len(outside) >= 3, "the sample keeps expired and not-yet-effective entries"
        for entry in outside:
            for question in [entry.title, *entry.questions]:
                found = kb.answer(session, question, GRID1_REGIONS + GRID3_REGIONS, TODAY)
                assert found is None or found.entry.id != entry.id, question
                ranked = [hit.entry_id for hit in kb.search(session, question, GRID1_REGIONS + GRID3_REGIONS, TODAY, 10)]
                assert entry.id not in ranked


def test_community_entry_only_for_its_community(session_factory: sessionmaker[Session], kb: KnowledgeBase) -> None:
    with session_factory() as session:
        entry = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.scope_code == "demo-community-1")).first()
        assert entry is not None
        inside = kb.answer(session, entry.title, GRID1_REGIONS, TODAY)
        assert inside is not None and inside.entry.id == entry.id
        outside = kb.search(session, entry.title, GRID3_REGIONS, TODAY, top_k=10)
        assert entry.id not in [hit.entry_id for hit in outside]


def test_thresholds_are_calibrated_per_model_and_stored(session_factory: sessionmaker[Session], kb: KnowledgeBase) -> None:
    with session_factory() as session:
        stored = {row.model: row for row in session.scalars(select(StoredPolicy))}
        assert {LEXICAL_ONLY, kb.model_name} <= stored.keys()
        policy = kb.state(session).policy
        assert policy.calibrated and policy.model == kb.model_name
        row = stored[kb.model_name]
        assert row.questions >= 100 and row.wrong_rate <= 0.02 and row.correct_rate > 0
        if kb.embedder is not None:
            assert policy.dense_threshold is not None and policy.dense_floor < policy.dense_threshold < 1
            # Cosines of this model live on their own scale: its thresholds differ from lexical-only's.
            assert (row.lexical_threshold, row.margin) != (stored[LEXICAL_ONLY].lexical_threshold, None)


def test_phrasing_vectors_are_cached_in_the_database(session_factory: sessionmaker[Session]) -> None:
    kb = build_knowledge_base(Settings())
    assert kb.embedder is not None
    with session_factory() as session:
        kb.state(session)
        phrasings = {text for e in session.scalars(select(KnowledgeEntry)) for text in [e.title, *e.questions]}
        cached = session.scalar(select(CachedVector.model).where(CachedVector.model == kb.embedder.name).limit(1))
        count = len(session.scalars(select(CachedVector.text_sha1).where(CachedVector.model == kb.embedder.name)).all())
    assert cached == kb.embedder.name and count >= len(phrasings)


def test_an_edit_in_another_process_is_searchable_at_once(database_url: str) -> None:
    """Two app processes each keep an index; each checks the entries' signature before searching."""
    first, second = make_engine(database_url), make_engine(database_url)
    reader, writer = KnowledgeBase(), make_session_factory(second)
    try:
        with make_session_factory(first)() as session:
            assert reader.answer(session, "小区里的流浪猫谁来管", GRID1_REGIONS, TODAY) is None
        entry = read_yaml(DEMO_ENTRIES)[0].model_copy(
            update={"external_id": "kb-stray-cats", "title": "小区流浪猫谁来管", "questions": ["流浪猫太多了找谁"]}
        )
        with unit_of_work(writer) as session:
            upsert_entries(session, [entry], "admin")
        with make_session_factory(first)() as session:
            found = reader.answer(session, "小区里的流浪猫谁来管", GRID1_REGIONS, TODAY)
            assert found is not None and found.entry.external_id == "kb-stray-cats"
    finally:
        with unit_of_work(writer) as session:
            session.delete(session.scalar(select(KnowledgeEntry).where(KnowledgeEntry.external_id == "kb-stray-cats")))
        first.dispose()
        second.dispose()


def test_the_freshness_check_is_one_statement_and_sees_a_new_calibration(database_url: str) -> None:
    """Every search checks the entries and the calibration first: one round trip, and a recalibration in any
    process (`gridbot kb calibrate`) still makes the next search use the new thresholds."""
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    kb, statements = KnowledgeBase(), []
    event.listen(engine, "before_cursor_execute", lambda _conn, _cur, statement, *_: statements.append(statement))
    with unit_of_work(factory) as session:
        stored = session.get(StoredPolicy, kb.model_name)
        assert stored is not None and stored.calibrated_at is not None
        calibrated_at = stored.calibrated_at
    try:
        with factory() as session:
            first = kb.state(session)
            statements.clear()
            assert kb.state(session) is first  # nothing changed: the index is kept
            assert len(statements) == 1
        with unit_of_work(factory) as session:
            session.get(StoredPolicy, kb.model_name).calibrated_at = calibrated_at + timedelta(seconds=1)  # type: ignore[union-attr]
        with factory() as session:
            assert kb.state(session) is not first
    finally:
        with unit_of_work(factory) as session:
            session.get(StoredPolicy, kb.model_name).calibrated_at = calibrated_at  # type: ignore[union-attr]
        engine.dispose()


def test_no_model_means_lexical_only_and_says_so(caplog: pytest.LogCaptureFixture, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO, logger="knowledge.embeddings"):
        assert load_embedder("none") is None
        assert load_embedder(str(tmp_path / "no-such-model")) is None
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "lexical only" in messages and "no-such-model" in messages
    assert KnowledgeBase(None).mode == "lexical only"
