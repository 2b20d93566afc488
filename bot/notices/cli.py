"""`gridbot notice …`, `gridbot worker` and `gridbot group tags`: notices from the command line.

Kept apart from bot/cli.py, which only registers these. Times without a zone are the city's local time.
With REDIS_URL a created notice's planning is queued at once; without it the running app's sweep plans
it within NOTICE_SWEEP_SECONDS.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from arq import ArqRedis
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bot.logging_setup import configure_logging
from bot.notices.render import error_sentence
from bot.notices.runtime import PLAN_JOB, plan_job_id
from bot.settings import Settings, get_settings, namespace_for
from grid.clock import LOCAL_TZ
from grid.geography import ChatGroup
from grid.notices import (
    Notice,
    NoticeDelivery,
    NoticeDraft,
    NoticeError,
    NoticeTarget,
    cancel_notice,
    create_notice,
    delivery_counts,
    get_notice,
)
from storage.engine import make_engine, make_session_factory, unit_of_work

notice_app = typer.Typer(help="Benefit notices (惠民信息): create, list, status per group, cancel.", no_args_is_help=True)
console = Console()

Repeated = Annotated[list[str] | None, typer.Option(show_default=False)]


def _when(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{option} must look like 2026-12-01T09:00 or 2026-12-01 09:00, not {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_TZ)


def _refused(err: NoticeError) -> typer.Exit:
    console.print(f"[red]{error_sentence(err)}[/red] ({err.code})")
    return typer.Exit(code=2)


def _factory(settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database_url)
    return engine, make_session_factory(engine)


async def _queue_plan(settings: Settings, notice_id: int, publish_at: datetime) -> None:
    from bot.notices.queue import ArqQueue
    from bot.notices.worker import queue_name

    assert settings.redis_url
    namespace = namespace_for(settings)
    pool = ArqRedis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        queue = ArqQueue(pool, queue_name(namespace))
        await queue.enqueue(PLAN_JOB, notice_id, job_id=plan_job_id(namespace, notice_id), run_at=publish_at)
    finally:
        await pool.aclose()


@notice_app.command("create")
def create(
    title: Annotated[str, typer.Option(help="Shown in bold at the top: 【惠民信息】title.")],
    author: Annotated[str, typer.Option(help="Who publishes it (recorded).")],
    body: Annotated[str | None, typer.Option(help="The text; or --body-file.")] = None,
    body_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Read the text from a UTF-8 file.")] = None,
    link: Annotated[str | None, typer.Option(help="http(s) link with the details.")] = None,
    image: Annotated[str | None, typer.Option(help="http(s) address of an image.")] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every group (tags may narrow it).")] = False,
    street: Repeated = None,
    community: Repeated = None,
    grid: Repeated = None,
    tag: Repeated = None,
    publish_at: Annotated[str | None, typer.Option(help="Local time; default now.")] = None,
    expires_at: Annotated[str | None, typer.Option(help="Local time; default: current until cancelled.")] = None,
) -> None:
    """Create a notice for the chosen groups (repeat --street/--community/--grid/--tag for several)."""
    settings = get_settings()
    text = body_file.read_text(encoding="utf-8") if body_file else body
    if text is None:
        raise typer.BadParameter("give --body or --body-file")
    draft = NoticeDraft(
        title=title,
        body=text,
        author=author,
        target=NoticeTarget(everyone, tuple(street or ()), tuple(community or ()), tuple(grid or ()), tuple(tag or ())),
        publish_at=_when(publish_at, "--publish-at"),
        expires_at=_when(expires_at, "--expires-at"),
        link=link,
        image_url=image,
    )
    engine, factory = _factory(settings)
    try:
        with unit_of_work(factory) as session:
            notice = create_notice(session, draft)
            notice_id, when = notice.id, notice.publish_at
    except NoticeError as err:
        raise _refused(err) from None
    finally:
        engine.dispose()
    console.print(f"[green]notice {notice_id} created[/green], publishing {when.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}")
    if settings.redis_url:
        try:
            asyncio.run(_queue_plan(settings, notice_id, when))
            console.print("queued: the workers plan and send it at its publish time")
        except Exception as exc:  # Redis down: nothing is lost, the sweep plans it later
            console.print(f"[yellow]not queued ({exc}); the running app or worker plans it once Redis answers[/yellow]")
    else:
        console.print(f"the running app plans and sends it within {settings.notice_sweep_seconds:.0f} s of its publish time")


@notice_app.command("list")
def list_notices(status: Annotated[str | None, typer.Option(help="scheduled, sending, done or cancelled.")] = None) -> None:
    """Notices, newest first, with how many groups each has reached."""
    engine, factory = _factory(get_settings())
    try:
        with unit_of_work(factory) as session:
            query = select(Notice).order_by(Notice.id.desc()).limit(100)
            if status:
                query = query.where(Notice.status == status)
            notices = list(session.scalars(query))
            counts = delivery_counts(session, [n.id for n in notices])
    finally:
        engine.dispose()
    table = Table(title="notices")
    for column in ("id", "status", "publish", "expires", "title", "sent", "failed", "to go", "groups"):
        table.add_column(column)
    for n in notices:
        c = counts[n.id]
        table.add_row(
            str(n.id),
            n.status,
            f"{n.publish_at.astimezone(LOCAL_TZ):%m-%d %H:%M}",
            f"{n.expires_at.astimezone(LOCAL_TZ):%m-%d %H:%M}" if n.expires_at else "",
            n.title,
            str(c["sent"]),
            str(c["failed"]),
            str(c["pending"] + c["sending"]),
            str(sum(c.values())),
        )
    console.print(table)


@notice_app.command("status")
def status(
    notice_id: int,
    only: Annotated[str | None, typer.Option("--only", help="Only groups in this delivery status (failed, pending…).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """One notice: counts per delivery status and each group's delivery."""
    engine, factory = _factory(get_settings())
    try:
        with unit_of_work(factory) as session:
            try:
                notice = get_notice(session, notice_id)
            except NoticeError as err:
                raise _refused(err) from None
            counts = delivery_counts(session, [notice_id])[notice_id]
            query = (
                select(NoticeDelivery, ChatGroup.name)
                .join(ChatGroup, ChatGroup.id == NoticeDelivery.group_id)
                .where(NoticeDelivery.notice_id == notice_id)
                .order_by(NoticeDelivery.group_id)
                .limit(limit)
            )
            if only:
                query = query.where(NoticeDelivery.status == only)
            rows = list(session.execute(query))
            header = f"notice {notice.id} 「{notice.title}」 {notice.status}: " + ", ".join(
                f"{k} {v}" for k, v in counts.items() if v
            )
    finally:
        engine.dispose()
    table = Table(title=header)
    for column in ("group", "name", "status", "attempts", "parts", "sent at", "last error"):
        table.add_column(column)
    for delivery, name in rows:
        sent = f"{delivery.sent_at.astimezone(LOCAL_TZ):%m-%d %H:%M:%S}" if delivery.sent_at else ""
        table.add_row(
            delivery.group_id,
            name,
            delivery.status,
            str(delivery.attempts),
            str(delivery.parts_sent),
            sent,
            (delivery.last_error or "")[:60],
        )
    console.print(table)


@notice_app.command("cancel")
def cancel(notice_id: int, by: Annotated[str, typer.Option(help="Who cancels it (recorded).")] = "cli") -> None:
    """Stop every group's delivery that has not gone out yet."""
    engine, factory = _factory(get_settings())
    try:
        with unit_of_work(factory) as session:
            _, stopped = cancel_notice(session, notice_id, by)
    except NoticeError as err:
        raise _refused(err) from None
    finally:
        engine.dispose()
    console.print(f"[green]notice {notice_id} cancelled[/green]: {stopped} deliveries stopped before anything went out")


def worker() -> None:
    """Run notice jobs (arq over REDIS_URL) in this process; start as many as the sending needs."""
    import warnings

    from bot.notices.worker import ARQ_CLOSE_WARNING, quiet_arq_job_lines, standalone_worker

    warnings.filterwarnings("ignore", message=ARQ_CLOSE_WARNING, category=DeprecationWarning)

    settings = get_settings()
    if not settings.redis_url:
        console.print("[red]gridbot worker needs REDIS_URL; without Redis the app runs notice jobs itself[/red]")
        raise typer.Exit(code=2)
    configure_logging()
    quiet_arq_job_lines()
    standalone_worker(settings).run()


def group_tags(
    group_id: str,
    tags: Annotated[list[str] | None, typer.Argument(help="The group's tags (replacing its current ones).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every tag.")] = False,
) -> None:
    """Set a group's tags (老年人多, 学校周边…), which notices can target; without tags, show them."""
    engine, factory = _factory(get_settings())
    try:
        with unit_of_work(factory) as session:
            group = session.get(ChatGroup, group_id)
            if group is None:
                raise typer.BadParameter(f"unknown group {group_id!r}")
            if clear:
                group.tags = []
            elif tags:
                cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
                if any(len(t) > 32 for t in cleaned):
                    raise typer.BadParameter("a tag has at most 32 characters")
                group.tags = cleaned
            current = list(group.tags)
    finally:
        engine.dispose()
    console.print(f"{group_id}: {'、'.join(current) or '(no tags)'}")
