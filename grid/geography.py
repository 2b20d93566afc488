"""Where things happen: regions, grids, the workers who serve them, the streets' contacts and the chat groups that
belong to them."""

from __future__ import annotations

from sqlalchemy import JSON, ForeignKey, Select, String, bindparam, false, literal_column, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from storage.base import Base

REGION_LEVELS = ("district", "street", "community")


class Region(Base):
    """A district, street (街道) or community (社区); `parent_code` links them into a tree."""

    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    level: Mapped[str] = mapped_column(String(16))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"), default=None)


class Grid(Base):
    __tablename__ = "grids"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    community_code: Mapped[str] = mapped_column(ForeignKey("regions.code"))

    workers: Mapped[list[Worker]] = relationship(back_populates="grid", order_by="Worker.id")


class Worker(Base):
    """A grid worker (网格员) or community lead; `id` is the worker's chat account id."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    grid_code: Mapped[str] = mapped_column(ForeignKey("grids.code"))
    role: Mapped[str] = mapped_column(String(16), default="worker")
    on_duty: Mapped[bool] = mapped_column(default=True)
    # The channel the worker's private messages go out on (webchat, wechaty, wecom): `id` is an account there.
    channel: Mapped[str] = mapped_column(String(32), default="webchat", server_default="webchat")
    # The morning digest (a lead: the briefing) is optional: off until the worker turns it on (bot/worker_day.py).
    morning_digest: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The local day (YYYY-MM-DD) it last went out: claimed by one UPDATE, so two app processes send it once.
    digest_sent_on: Mapped[str | None] = mapped_column(String(10), default=None)

    grid: Mapped[Grid] = relationship(back_populates="workers")


class StreetContact(Base):
    """A person responsible at a street (街道), above the communities' leads: told of red early warnings
    (grid/warnings.py) on their own channel; `id` is their chat account id there, as a worker's is."""

    __tablename__ = "street_contacts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    street_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    channel: Mapped[str] = mapped_column(String(32), default="webchat", server_default="webchat")


class Department(Base):
    """A department tickets are escalated to (乡呼县应): 城管, 住建, 水务…; it answers through the API or a connector."""

    __tablename__ = "departments"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)


class ChatGroup(Base):
    """A resident group (便民群) on some channel; it belongs to exactly one grid."""

    __tablename__ = "chat_groups"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    grid_code: Mapped[str] = mapped_column(ForeignKey("grids.code"))
    # Labels notices can target across the map (老年人多, 学校周边…); set with `gridbot group tags`.
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    # The platform the group lives on; `id` is the room's id there (a wechaty room id, a WeCom chat id).
    channel: Mapped[str] = mapped_column(String(32), default="webchat", server_default="webchat")

    grid: Mapped[Grid] = relationship()


# Deeper than district → street → community by a wide margin: a loop in parent codes stops here.
MAX_REGION_DEPTH = 8


def _region_chain_query() -> Select[tuple[str]]:
    """A group's community and every region above it, nearest first: one recursive query.

    Every knowledge-base answer needs the chain; walking the tree one `session.get` at a time cost five
    queries per question. Built once (`:group_id` bound per call): building the statement costs more CPU
    than running it.
    """
    chain = (
        select(Grid.community_code.label("code"), literal_column("0").label("depth"))
        .join(ChatGroup, ChatGroup.grid_code == Grid.code)
        .where(ChatGroup.id == bindparam("group_id"))
        .cte("region_chain", recursive=True)
    )
    chain = chain.union_all(
        select(Region.parent_code, chain.c.depth + 1)
        .join(chain, Region.code == chain.c.code)
        .where(Region.parent_code.is_not(None), chain.c.depth < MAX_REGION_DEPTH)
    )
    return select(chain.c.code).order_by(chain.c.depth)


_REGION_CHAIN = _region_chain_query()


def on_duty_worker(session: Session, grid_code: str) -> Worker | None:
    """The worker a new ticket goes to: the grid's first on-duty worker."""
    grid = session.get(Grid, grid_code)
    if grid is None:
        return None
    for worker in grid.workers:
        if worker.on_duty and worker.role == "worker":
            return worker
    return None


def community_lead(session: Session, grid_code: str) -> Worker | None:
    """The lead of the grid's community (社区负责人): who hears complaints and red-level tickets."""
    grid = session.get(Grid, grid_code)
    if grid is None:
        return None
    query = (
        select(Worker)
        .join(Grid, Worker.grid_code == Grid.code)
        .where(Grid.community_code == grid.community_code, Worker.role == "lead")
        .order_by(Worker.id)
    )
    return session.scalars(query).first()


def street_contacts(session: Session, street_code: str) -> list[StreetContact]:
    """The people of a street, in a stable order."""
    query = select(StreetContact).where(StreetContact.street_code == street_code).order_by(StreetContact.id)
    return list(session.scalars(query))


def asker_regions(session: Session, group_id: str | None) -> list[str]:
    """The regions whose entries may answer someone: a group's community, street and district; a private
    asker (no group, so no grid) only gets district-wide answers."""
    if group_id:
        chain = list(dict.fromkeys(session.scalars(_REGION_CHAIN, {"group_id": group_id})))
        if chain or session.get(ChatGroup, group_id) is not None:
            return chain
    return list(session.scalars(select(Region.code).where(Region.level == "district")))
