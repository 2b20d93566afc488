"""`gridbot group add`, `gridbot group worker` and `gridbot group street`: put a platform's room on the map, and reach
a worker or a street's contact (街道, told of red early warnings) there.

A room on WeChat (wechaty) or WeCom is known to the bot by the platform's room id; until an admin maps it to a
grid the bot stays quiet in it (and logs its id and topic: that is where the id comes from). A worker is
known by their account id on the platform their private messages should go to.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bot.settings import get_settings
from grid.geography import ChatGroup, Grid, Region, StreetContact, Worker
from storage.engine import make_engine, make_session_factory, unit_of_work

console = Console()

CHANNELS = ("webchat", "wechaty", "wecom", "wecom_aibot", "ilink")
# Platforms without groups the bot can post into (iLink: one-to-one chats only): workers yes, groups never.
NO_GROUPS = ("ilink",)
ROLES = ("worker", "lead")

Channel = Annotated[str, typer.Option("--channel", help=f"The platform: {', '.join(CHANNELS)}.")]


def _check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise typer.BadParameter(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}", param_hint="--channel")
    return channel


def group_add(
    room_id: Annotated[str, typer.Argument(help="The room's id on its platform (a wechaty room id ends in @chatroom).")],
    grid: Annotated[str, typer.Option("--grid", help="Code of the grid the room belongs to.")],
    name: Annotated[str, typer.Option("--name", help="The room's name as admins know it.")],
    channel: Channel = "webchat",
) -> None:
    """Map a chat room to a grid (or re-map it): from then on the bot answers there and files its reports."""
    _check_channel(channel)
    if channel in NO_GROUPS:
        raise typer.BadParameter(f"{channel} has no groups (one-to-one chats only): map its workers with `group worker`",
                                 param_hint="--channel")  # fmt: skip
    if not name.strip() or len(name) > 128 or len(room_id) > 128:
        raise typer.BadParameter("the room id and name have 1 to 128 characters")
    if channel == "wechaty" and "@" not in room_id:
        console.print(f"[yellow]warning: {room_id!r} does not look like a wechaty room id (…@chatroom)[/yellow]")
    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if session.get(Grid, grid) is None:
                raise typer.BadParameter(f"unknown grid {grid!r}", param_hint="--grid")
            group = session.get(ChatGroup, room_id)
            created = group is None
            if group is None:
                group = ChatGroup(id=room_id, name=name.strip(), grid_code=grid, channel=channel)
                session.add(group)
            else:
                group.name, group.grid_code, group.channel = name.strip(), grid, channel
    finally:
        engine.dispose()
    console.print(f"[green]{'added' if created else 'updated'}[/green] {room_id} ({name.strip()}) → grid {grid} on {channel}")


def group_worker(
    worker_id: Annotated[str, typer.Argument(help="The worker's account id on the platform (a wechaty contact id).")],
    channel: Channel,
    name: Annotated[str | None, typer.Option("--name", help="Needed when the worker is new.")] = None,
    grid: Annotated[str | None, typer.Option("--grid", help="Code of the worker's grid; needed when the worker is new.")] = None,
    role: Annotated[str | None, typer.Option("--role", help=f"One of {', '.join(ROLES)}; new workers: worker.")] = None,
) -> None:
    """Set the platform a worker's private messages go out on; adds the worker when --name and --grid are given."""
    _check_channel(channel)
    if role is not None and role not in ROLES:
        raise typer.BadParameter(f"role is one of {', '.join(ROLES)}", param_hint="--role")
    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if grid is not None and session.get(Grid, grid) is None:
                raise typer.BadParameter(f"unknown grid {grid!r}", param_hint="--grid")
            worker = session.get(Worker, worker_id)
            created = worker is None
            if worker is None:
                if not name or not grid:
                    raise typer.BadParameter(f"no worker {worker_id!r}: give --name and --grid to add one")
                worker = Worker(id=worker_id, name=name, grid_code=grid, role=role or "worker", channel=channel)
                session.add(worker)
            else:
                worker.channel = channel
                worker.name = name or worker.name
                worker.grid_code = grid or worker.grid_code
                worker.role = role or worker.role
            summary = f"{worker.id} ({worker.name}, {worker.role} of {worker.grid_code}) on {channel}"
    finally:
        engine.dispose()
    console.print(f"[green]{'added' if created else 'updated'}[/green] {summary}")


def group_street(
    person_id: Annotated[str, typer.Argument(help="The person's account id on the platform (a wechaty contact id).")],
    channel: Channel,
    name: Annotated[str | None, typer.Option("--name", help="Needed when the person is new.")] = None,
    street: Annotated[str | None, typer.Option("--street", help="Code of the street (街道) region; needed when new.")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="No longer a contact of the street.")] = False,
) -> None:
    """Add, change or remove a street's contact (街道): the person told of the street's red early warnings, on the
    platform named by --channel."""
    _check_channel(channel)
    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if street is not None:
                region = session.get(Region, street)
                if region is None or region.level != "street":
                    raise typer.BadParameter(f"no street region {street!r}", param_hint="--street")
            person = session.get(StreetContact, person_id)
            if remove:
                if person is None:
                    raise typer.BadParameter(f"no street contact {person_id!r}")
                session.delete(person)
                summary, verb = person_id, "removed"
            else:
                verb = "updated" if person is not None else "added"
                if person is None:
                    if not name or not street:
                        raise typer.BadParameter(f"no street contact {person_id!r}: give --name and --street to add one")
                    person = StreetContact(id=person_id, name=name, street_code=street, channel=channel)
                    session.add(person)
                else:
                    person.channel = channel
                    person.name = name or person.name
                    person.street_code = street or person.street_code
                summary = f"{person.id} ({person.name}, street {person.street_code}) on {channel}"
    finally:
        engine.dispose()
    console.print(f"[green]{verb}[/green] {summary}")
