"""Which regions may answer an asker (grid.geography.asker_regions), on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from grid.geography import MAX_REGION_DEPTH, ChatGroup, Grid, Region, asker_regions


def _walk(session: Session, group_id: str) -> list[str]:
    """The chain the slow way, one row at a time: what the one-query version must agree with."""
    group = session.get(ChatGroup, group_id)
    assert group is not None
    grid = session.get(Grid, group.grid_code)
    assert grid is not None
    chain, code = [], grid.community_code
    while code is not None:
        chain.append(code)
        region = session.get(Region, code)
        code = region.parent_code if region else None
    return chain


def test_a_group_gets_its_community_street_and_district_nearest_first(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        groups = session.scalars(select(ChatGroup.id).order_by(ChatGroup.id)).all()
        assert len(groups) >= 4
        for group_id in groups:
            assert asker_regions(session, group_id) == _walk(session, group_id)
        assert asker_regions(session, "demo-grid-3") == ["demo-community-2", "demo-street", "demo-district"]


def test_the_chain_is_one_statement(session_factory: sessionmaker[Session]) -> None:
    """Every knowledge-base answer asks for it: one round trip, not one per level of the tree."""
    statements: list[str] = []
    with session_factory() as session:
        engine = session.get_bind()
        listener = event.listens_for(engine, "before_cursor_execute")(lambda _c, _cur, sql, *_: statements.append(sql))
        try:
            assert asker_regions(session, "demo-grid-1") == ["demo-community-1", "demo-street", "demo-district"]
        finally:
            event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 1


def test_no_group_or_an_unknown_one_gets_district_wide_answers_only(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        districts = sorted(session.scalars(select(Region.code).where(Region.level == "district")))
        assert districts == ["demo-district"]
        assert sorted(asker_regions(session, None)) == districts
        assert sorted(asker_regions(session, "no-such-group")) == districts


def test_odd_trees_end_without_looping(session_factory: sessionmaker[Session]) -> None:
    """A loop in parent codes and a chain deeper than any real one: both end, the loop without repeats."""
    with session_factory() as session:
        session.add_all([Region(code="loop-a", name="甲", level="community"), Region(code="loop-b", name="乙", level="street")])
        session.flush()
        session.get(Region, "loop-a").parent_code = "loop-b"  # type: ignore[union-attr]
        session.get(Region, "loop-b").parent_code = "loop-a"  # type: ignore[union-attr]
        deep = [f"deep-{i}" for i in range(MAX_REGION_DEPTH + 5)]
        session.add_all(Region(code=code, name=code, level="street") for code in deep)
        session.flush()
        for child, parent in itertools.pairwise(deep):
            session.get(Region, child).parent_code = parent  # type: ignore[union-attr]
        session.add_all(
            [
                Grid(code="grid-loop", name="环", community_code="loop-a"),
                Grid(code="grid-deep", name="深", community_code="deep-0"),
                ChatGroup(id="group-loop", name="环群", grid_code="grid-loop"),
                ChatGroup(id="group-deep", name="深群", grid_code="grid-deep"),
            ]
        )
        session.flush()
        assert asker_regions(session, "group-loop") == ["loop-a", "loop-b"]
        assert asker_regions(session, "group-deep") == deep[: MAX_REGION_DEPTH + 1]
        session.rollback()  # the session-wide database keeps only the demo data
