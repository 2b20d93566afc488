"""`gridbot` command line: database, demo data, knowledge import, and the app server."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.console import Console

from bot import setup_times
from bot.auth.cli import user_app
from bot.channel_cli import group_add, group_street, group_worker
from bot.env_file import load_env_file
from bot.logging_setup import configure_logging
from bot.notices.cli import group_tags, notice_app
from bot.notices.cli import worker as notice_worker
from bot.settings import Settings, SettingsInvalid, get_settings, load_settings
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade

if TYPE_CHECKING:
    from bot.rasa_supervisor import RasaSupervisor

app = typer.Typer(help="GridBot 网格助手", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data for trying the bot.", no_args_is_help=True)
kb_app = typer.Typer(help="Knowledge base.", no_args_is_help=True)
nlu_app = typer.Typer(help="NLU evaluation.", no_args_is_help=True)
group_app = typer.Typer(help="Per-group bot settings.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(kb_app, name="kb")
app.add_typer(nlu_app, name="nlu")
app.add_typer(group_app, name="group")
app.add_typer(notice_app, name="notice")
app.add_typer(user_app, name="user")
app.command("worker")(notice_worker)
group_app.command("tags")(group_tags)
group_app.command("add")(group_add)
group_app.command("worker")(group_worker)
group_app.command("street")(group_street)
console = Console()


@app.callback()
def main() -> None:
    """GridBot 网格助手 (settings: environment variables, then the project's .env file; see .env.example)."""
    load_env_file()
    try:
        load_settings()  # every command checks every setting first: a bad one stops it here, named, not mid-way
    except SettingsInvalid as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to DATABASE_URL (SQLite under var/ by default)."""
    upgrade(get_settings().database_url)
    console.print("[green]database is up to date[/green]")


@demo_app.command("load")
def demo_load() -> None:
    """Load the demo street, communities, grids, groups, workers and knowledge entries (idempotent)."""
    from bot.demo import load_demo

    console.print(f"demo loaded: {load_demo(get_settings().database_url)}")


@kb_app.command("import")
def kb_import(
    path: Path,
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and count, write nothing."),
    updated_by: str = typer.Option("cli", help="Recorded as the editor."),
) -> None:
    """Import entries from .yml/.yaml, .csv or .xlsx (upsert by external_id): every row is validated first, then
    all are written or none; exits 1 listing each bad row."""
    from collections.abc import Sequence
    from typing import NoReturn

    from knowledge.admin import AdminError, KnowledgeAdmin
    from knowledge.entries import RowError
    from knowledge.formats import MAX_FILE_BYTES, FileRejected, format_for

    def refuse(message: str, errors: Sequence[RowError] = ()) -> NoReturn:
        for error in errors:
            where = f"row {error.row}" if error.row is not None else "file"
            console.print(f"{where}{f', {error.field}' if error.field else ''}: {error.reason}", style="red", markup=False)
        console.print(message, style="red", markup=False)
        raise typer.Exit(1)

    try:
        fmt = format_for(path)
        if not path.is_file():
            refuse(f"no such file: {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            refuse(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        content = path.read_bytes()
        engine = make_engine(get_settings().database_url)
        try:
            with unit_of_work(make_session_factory(engine)) as session:
                report = KnowledgeAdmin(session).import_file(content, fmt, updated_by, dry_run=dry_run)
        finally:
            engine.dispose()
    except FileRejected as err:
        refuse(f"{path}: {err.message}")
    except AdminError as err:
        refuse(err.message, err.errors)
    console.print(f"{path.name}: {report.summary()}{' (dry run: nothing written)' if dry_run else ''}")


@kb_app.command("export")
def kb_export(
    path: Path,
    format: str | None = typer.Option(None, "--format", help="yaml, csv or xlsx; default: from the file name."),
) -> None:
    """Write every entry to a file that `kb import` reads back without changing anything."""
    from knowledge.admin import KnowledgeAdmin
    from knowledge.formats import FileRejected, format_for

    try:
        fmt = format_for(path, format)
    except FileRejected as err:
        console.print(err.message, style="red", markup=False)
        raise typer.Exit(1) from None
    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            content = KnowledgeAdmin(session).export(fmt)
    finally:
        engine.dispose()
    path.write_bytes(content)
    console.print(f"exported to {path} ({fmt.value}, {len(content)} bytes)")


@kb_app.command("search")
def kb_search(
    query: str,
    group: str | None = typer.Option(None, help="Ask as in this group (its community and street entries too)."),
    top_k: int = typer.Option(5, min=1, max=20),
) -> None:
    """Hit test: what the bot would answer, and the ranked candidates with their scores."""
    from rich.table import Table

    from bot.runtime import build_knowledge_base
    from grid.clock import LOCAL_TZ
    from grid.geography import asker_regions
    from knowledge.hit_test import hit_test
    from storage.base import utcnow

    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            today = utcnow().astimezone(LOCAL_TZ).date()
            kb = build_knowledge_base(get_settings())
            result = hit_test(kb, session, query, asker_regions(session, group), today, top_k)
    finally:
        engine.dispose()
    verdict = "answered" if result.answered else "handed to the grid worker"
    table = Table(title=f"{query} → {verdict} [{result.mode}]")
    for column in ("score", "lexical", "dense", "entry", "matched phrasing", "source"):
        table.add_column(column)
    for hit in result.hits:
        dense = f"{hit.dense:.3f}" if hit.dense is not None else "-"
        source = hit.source["office"] or hit.source["document"] or ""
        table.add_row(f"{hit.score:.3f}", f"{hit.lexical:.3f}", dense, hit.external_id, hit.matched, source)
    console.print(table)


@kb_app.command("calibrate")
def kb_calibrate(
    questions: Annotated[Path | None, typer.Option(help="Labelled questions (YAML); default: the sample set.")] = None,
    max_wrong: float = typer.Option(0.02, min=0.0, max=1.0, help="Highest wrong-answer rate the thresholds may give."),
) -> None:
    """Calibrate and store the answer thresholds of the configured embedding model (and of lexical-only)."""
    from bot.runtime import build_knowledge_base
    from grid.clock import LOCAL_TZ
    from knowledge.answer_policy import store_policy
    from knowledge.base import KnowledgeBase
    from knowledge.calibration import CALIBRATION_QUESTIONS, calibrate, read_questions
    from storage.base import utcnow

    labelled = read_questions(questions or CALIBRATION_QUESTIONS)
    engine = make_engine(get_settings().database_url)
    try:
        for kb in (KnowledgeBase(), build_knowledge_base(get_settings())):
            if kb.embedder is None and kb.model_name != "lexical":
                continue
            with unit_of_work(make_session_factory(engine)) as session:
                policy, outcome = calibrate(kb, session, labelled, utcnow().astimezone(LOCAL_TZ).date(), max_wrong)
                store_policy(session, policy, outcome.total, outcome.correct_rate, outcome.wrong_rate)
            dense = f", dense ≥ {policy.dense_threshold} (floor {policy.dense_floor})" if policy.dense_threshold else ""
            console.print(
                f"[bold]{kb.mode}[/bold]: lexical ≥ {policy.lexical_threshold}{dense}, margin {policy.margin}, "
                f"{policy.combine}; on {outcome.total} questions: {outcome.correct_rate:.1%} answered correctly, "
                f"{outcome.wrong_rate:.1%} wrongly, top-1 {outcome.top1_accuracy:.3f}; 您想问的是… offered from "
                f"{policy.suggest_floor}: {outcome.right_with_suggestions:.1%} of answerable questions right with a pick, "
                f"{outcome.offered_unanswerable}/{outcome.unanswerable} unanswerable offered"
            )
    finally:
        engine.dispose()


@kb_app.command("questions")
def kb_questions(
    kind: str = typer.Argument("unanswered", help="unanswered | unhelpful"),
    limit: int = typer.Option(50, min=1),
) -> None:
    """Questions to turn into entries: those handed to workers, or answers residents said did not help."""
    from rich.table import Table

    from grid.clock import LOCAL_TZ
    from knowledge.questions import needing_entries

    if kind not in ("unanswered", "unhelpful"):
        raise typer.BadParameter("kind is unanswered or unhelpful")
    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            rows = needing_entries(session, kind, limit)  # type: ignore[arg-type]
            table = Table(title=f"{len(rows)} {kind} question(s)")
            for column in ("id", "asked", "group", "question", "entry", "ticket"):
                table.add_column(column)
            for row in rows:
                asked = f"{row.asked_at.astimezone(LOCAL_TZ):%m-%d %H:%M}"
                table.add_row(str(row.id), asked, row.group_id or "-", row.question, row.entry_external_id or "-",
                              row.ticket_number or "-")  # fmt: skip
    finally:
        engine.dispose()
    console.print(table)


@nlu_app.command("calibrate")
def nlu_calibrate(
    rasa_url: str = typer.Option("", help="A running Rasa server to ask; default: start one with the current model."),
) -> None:
    """Sweep the unaddressed-request threshold on tests/data/nlu_calibration.yml and recommend one."""
    import tempfile

    from rich.table import Table

    from bot import nlu_calibration, rasa_process

    settings = Settings()
    if rasa_url:
        rows, chosen, scored = nlu_calibration.calibrate(rasa_url, settings)
    else:
        model = rasa_process.ensure_model(console.print)
        with rasa_process.serving(model, Path(tempfile.mkdtemp(prefix="gridbot-calibrate-"))) as url:
            rows, chosen, scored = nlu_calibration.calibrate(url, settings)
    nlu_calibration.write_report(rows, chosen, scored, settings)
    table = Table(title=f"unaddressed messages answered, by threshold ({len(scored)} calibration lines)")
    for column in ("threshold", "chatter answered", "requests answered"):
        table.add_column(column, justify="right")
    for row in rows[::5] + ([chosen] if chosen not in rows[::5] else []):
        mark = " ←" if row == chosen else ""
        table.add_row(f"{row.threshold:.2f}{mark}", f"{row.false_triggers:.1%}", f"{row.requests_answered:.1%}")
    console.print(table)
    budget = nlu_calibration.MAX_FALSE_TRIGGERS
    if chosen.false_triggers <= budget:
        console.print(f"recommended request_confidence {chosen.threshold:.2f} (lowest with ≤ {budget:.0%} of chatter answered)")
    else:  # a threshold cannot fix confidently wrong answers: say so instead of recommending the strictest
        console.print(
            f"[yellow]no threshold keeps chatter answered ≤ {budget:.0%}[/yellow]: even {chosen.threshold:.2f} answers "
            f"{chosen.false_triggers:.1%} of it (and {chosen.requests_answered:.1%} of requests). NLU is confidently wrong "
            "on that chatter: more varied chatter in the training data helps, a threshold does not."
        )
    console.print(f"configured request_confidence {settings.request_confidence:.2f}; report {nlu_calibration.REPORT}")


@nlu_app.command("test")
def nlu_test(
    cross_validation: bool = typer.Option(False, "--cross-validation", help="Also run k-fold cross-validation."),
    folds: int = typer.Option(3, min=2, help="Folds for cross-validation."),
) -> None:
    """Score the trained model on the held-out split (and optionally cross-validate); reports under reports/nlu/."""
    from rich.table import Table

    from bot import nlu_eval, rasa_process

    model = rasa_process.ensure_model(console.print)
    runs = [("held-out", nlu_eval.evaluate_heldout(model))]
    if cross_validation:
        console.print(f"cross-validation, {folds} folds: {folds} trainings…")
        runs.append((f"{folds}-fold CV", nlu_eval.cross_validate(folds)))
    for title, scores in runs:
        table = Table(title=f"{title}: intent macro-F1 {scores.intent_macro_f1:.3f}, accuracy {scores.intent_accuracy:.3f}")
        table.add_column("intent / entity")
        table.add_column("F1", justify="right")
        for name, f1 in sorted(scores.per_intent_f1.items(), key=lambda kv: kv[1]):
            table.add_row(name, f"{f1:.3f}")
        for name, f1 in sorted(scores.entity_f1.items()):
            table.add_row(f"[cyan]{name}[/cyan]", f"{f1:.3f}")
        console.print(table)
        console.print(f"reports and confusion matrix: {scores.report_dir}")


@group_app.command("set")
def group_set(
    group_id: str,
    prefixes: str | None = typer.Option(None, help="Extra trigger prefixes, separated by |, e.g. '小网格|#问'."),
    confidence: float | None = typer.Option(None, min=0.0, max=1.0, help="NLU confidence to answer unaddressed requests."),
    quiet: str | None = typer.Option(None, help="Quiet hours, local time, e.g. 22:00-07:00; 'off' clears them."),
) -> None:
    """Change one group's bot settings (only the options given)."""
    from datetime import time as dtime

    from bot.group_settings import GroupBotSettings
    from grid.geography import ChatGroup

    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if session.get(ChatGroup, group_id) is None:
                raise typer.BadParameter(f"unknown group {group_id!r}")
            row = session.get(GroupBotSettings, group_id) or GroupBotSettings(group_id=group_id)
            session.add(row)
            if prefixes is not None:
                row.trigger_prefixes = prefixes or None
            if confidence is not None:
                row.request_confidence = confidence
            if quiet is not None:
                if quiet == "off":
                    row.quiet_start = row.quiet_end = None
                else:
                    start, _, end = quiet.partition("-")
                    try:
                        row.quiet_start, row.quiet_end = dtime.fromisoformat(start.strip()), dtime.fromisoformat(end.strip())
                    except ValueError as exc:
                        raise typer.BadParameter(f"quiet hours must look like 22:00-07:00, not {quiet!r}") from exc
    finally:
        engine.dispose()
    console.print(f"[green]{group_id} updated[/green]")


def _serve_app(settings: Settings, host: str, port: int, supervisor: RasaSupervisor | None = None) -> None:
    """The app under uvicorn, as `serve` and `run` start it (request lines only with APP_ACCESS_LOG).

    With `run`'s Rasa supervisor, a SIGTERM or Ctrl+C stops the Rasa servers at once (not after the app's graceful
    shutdown) and the app waits for them before it exits: uvicorn raises the signal again once it has shut down,
    which ends the process at that point, so code after it never runs (that is how Rasa was left serving).
    """
    # proxy_headers off: uvicorn would believe X-Forwarded-For from any local peer; TRUSTED_PROXIES decides (bot/api/guards.py)
    # log_config None: uvicorn's records go through configure_logging's handler (LOG_LEVEL, LOG_FORMAT=json) too.
    config = uvicorn.Config(
        "bot.app:create_app", factory=True, host=host, port=port, access_log=settings.app_access_log, proxy_headers=False,
        log_config=None, log_level=settings.log_level.lower(),
    )  # fmt: skip
    server = uvicorn.Server(config) if supervisor is None else _SupervisingServer(config, supervisor)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        server.run()
    if not server.started:  # the port taken, the lifespan failed: uvicorn.run's exit code for it
        raise SystemExit(3)


class _SupervisingServer(uvicorn.Server):
    """uvicorn's server that stops `gridbot run`'s Rasa servers with itself (see _serve_app)."""

    def __init__(self, config: uvicorn.Config, supervisor: RasaSupervisor) -> None:
        super().__init__(config)
        self._supervisor = supervisor

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._supervisor.begin_stop()  # SIGTERM to Rasa now, no restarts; returns at once
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            try:
                yield
            finally:  # before uvicorn raises the captured signal again
                self._supervisor.stop()


@app.command("serve")
def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the app (action endpoint, API, console; the web chat with LOCAL_CHAT_ENABLED) on APP_HOST:APP_PORT."""
    from bot.rasa_tokens import action_token

    settings = get_settings()
    configure_logging()
    action_token(settings)  # generated now if unset, so the log says so at start rather than at Rasa's first call
    _serve_app(settings, host or settings.app_host, port or settings.app_port)


@app.command("run")
def run(
    demo: bool | None = typer.Option(
        None,
        "--demo/--no-demo",
        help="Load the demo grids, groups, workers, knowledge and demo logins first. Default: only into the embedded "
        "default database (DATABASE_URL unset), never into one you named.",
    ),
) -> None:
    """The embedded default in one command: migrate, demo data, Rasa model and server, then the app."""
    import functools
    import os
    import threading

    import httpx

    from bot import rasa_process, rasa_supervisor
    from bot.rasa_client import server_urls
    from bot.rasa_supervisor import RasaSupervisor, SupervisedServer
    from bot.rasa_tokens import action_token, rasa_token

    # The embedded demo: the web chat is how one tries the bot (LOCAL_CHAT_ENABLED=false still turns it off).
    os.environ.setdefault("LOCAL_CHAT_ENABLED", "true")
    get_settings.cache_clear()
    settings = get_settings()
    urls = server_urls(settings.rasa_url)  # one Rasa server started per URL
    if len(urls) > 1 and not settings.redis_url:
        # Without Redis each server keeps its own conversations in memory: a turn on the other one starts afresh.
        console.print("[red]Several Rasa servers share conversations through Redis: set REDIS_URL too.[/red]")
        raise typer.Exit(2)
    configure_logging()
    from bot.demo import demo_login_text, prepare_database

    if prepare_database(settings.database_url, demo):
        console.print(demo_login_text(settings.database_url), markup=False)
    elif demo is None:
        console.print("DATABASE_URL names a database of your own: demo data and logins not loaded (`--demo` loads them)")
    model = rasa_process.ensure_model(console.print)
    app_url = f"http://{settings.app_host}:{settings.app_port}"
    run_dir = settings.run_dir
    # The secrets between the app and the Rasa servers: configured, or generated for this run (logged).
    endpoints = rasa_process.write_endpoints(
        run_dir / "endpoints.yml", f"{app_url}/webhook", settings.redis_url, token=action_token(settings)
    )
    auth_token = rasa_token(settings)
    # Several servers run single-threaded, one per core (rasa_process.single_threaded); each is supervised:
    # restarted when it dies or hangs, stopped with `gridbot run` (bot/rasa_supervisor.py).
    servers = []
    for number, url in enumerate(urls):
        rasa_port = httpx.URL(url).port or 5005
        log_file = run_dir / "log" / ("rasa.log" if number == 0 else f"rasa-{rasa_port}.log")
        start = functools.partial(
            rasa_process.start_rasa, model, rasa_port, endpoints, log_file, single_thread=len(urls) > 1,
            auth_token=auth_token, own_group=True,
        )  # fmt: skip
        servers.append(SupervisedServer(url, start))
        console.print(f"starting Rasa on port {rasa_port} (log: {log_file}), about 30 s…", markup=False)
    supervisor = RasaSupervisor(servers, settings, token=auth_token)
    rasa_supervisor.install(supervisor)
    supervisor.start()

    def announce() -> None:
        if not supervisor.wait_ready(settings.rasa_start_timeout_seconds):
            console.print(f"[red]Rasa did not start within {settings.rasa_start_timeout_seconds:.0f} s (still trying); "
                          f"see {run_dir / 'log'}/rasa*.log[/red]")  # fmt: skip
            return
        if not settings.local_chat_enabled:
            console.print(f"[bold green]GridBot is ready at {app_url} (web chat off: LOCAL_CHAT_ENABLED=false)[/bold green]")
            return
        console.print(f"[bold green]GridBot is ready. Chat as a resident or a worker at {app_url}/chat[/bold green]")
        if timings := setup_times.summary():  # under `make run`: where its time went (README, "The two commands")
            console.print(timings)

    threading.Thread(target=announce, daemon=True).start()
    try:
        _serve_app(settings, settings.app_host, settings.app_port, supervisor)
    finally:
        supervisor.stop()
        rasa_supervisor.install(None)


if __name__ == "__main__":
    app()
