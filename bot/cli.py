"""`gridbot` command line: database, demo data, knowledge import, and the app server."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
import uvicorn
from rich.console import Console

from bot.settings import get_settings
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade

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
console = Console()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to DATABASE_URL (SQLite under var/ by default)."""
    upgrade(get_settings().database_url)
    console.print("[green]database is up to date[/green]")


def _import_entries(path: Path, updated_by: str) -> tuple[int, int]:
    from knowledge.loader import read_yaml, upsert_entries

    entries = read_yaml(path)
    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return upsert_entries(session, entries, updated_by)
    finally:
        engine.dispose()


@demo_app.command("load")
def demo_load() -> None:
    """Load the demo street, communities, grids, groups, workers and knowledge entries (idempotent)."""
    from bot.demo import load_demo

    console.print(f"demo loaded: {load_demo(get_settings().database_url)}")


@kb_app.command("import")
def kb_import(path: Path, updated_by: str = typer.Option("cli", help="Recorded as the editor.")) -> None:
    """Import knowledge entries from a YAML file (upsert by external_id)."""
    created, updated = _import_entries(path, updated_by)
    console.print(f"created {created}, updated {updated}")


@kb_app.command("search")
def kb_search(
    query: str,
    group: str | None = typer.Option(None, help="Ask as in this group (its community and street entries too)."),
    top_k: int = typer.Option(5, min=1, max=20),
) -> None:
    """Hit test: what the bot would answer, and the ranked candidates with their scores."""
    from rich.table import Table

    from grid.clock import LOCAL_TZ
    from grid.geography import asker_regions
    from knowledge.base import KnowledgeBase
    from knowledge.hit_test import hit_test
    from storage.base import utcnow

    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            today = utcnow().astimezone(LOCAL_TZ).date()
            result = hit_test(KnowledgeBase(), session, query, asker_regions(session, group), today, top_k)
    finally:
        engine.dispose()
    table = Table(title=f"{query} → {'answered' if result.answered else 'handed to the grid worker'}")
    for column in ("score", "entry", "title", "source"):
        table.add_column(column)
    for hit in result.hits:
        table.add_row(f"{hit.score:.3f}", hit.external_id, hit.title, hit.source["office"] or hit.source["document"] or "")
    console.print(table)


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


@app.command("serve")
def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the app (web chat, action endpoint) on APP_HOST:APP_PORT."""
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run("bot.app:create_app", factory=True, host=host or settings.app_host, port=port or settings.app_port)


@app.command("run")
def run(demo: bool = typer.Option(True, help="Load the demo grids, groups, workers and knowledge first.")) -> None:
    """The embedded default in one command: migrate, demo data, Rasa model and server, then the app."""
    import threading

    import httpx

    from bot import rasa_process

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if demo:
        demo_load()
    else:
        db_upgrade()
    model = rasa_process.ensure_model(console.print)
    app_url = f"http://{settings.app_host}:{settings.app_port}"
    endpoints = rasa_process.write_endpoints(VAR_DIR / "endpoints.yml", f"{app_url}/webhook", settings.redis_url)
    rasa_port = httpx.URL(settings.rasa_url).port or 5005
    rasa = rasa_process.start_rasa(model, rasa_port, endpoints, VAR_DIR / "log" / "rasa.log")
    console.print(f"starting Rasa on port {rasa_port} (log: var/log/rasa.log), about 30 s…")

    def announce() -> None:
        try:
            rasa_process.wait_ready(settings.rasa_url, rasa)
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[red]Rasa did not start: {exc}; see var/log/rasa.log[/red]")
            return
        console.print(f"[bold green]GridBot is ready. Chat as a resident or a worker at {app_url}/chat[/bold green]")

    threading.Thread(target=announce, daemon=True).start()
    try:
        uvicorn.run("bot.app:create_app", factory=True, host=settings.app_host, port=settings.app_port)
    finally:
        rasa.terminate()
        try:
            rasa.wait(timeout=20)
        except Exception:
            rasa.kill()


VAR_DIR = Path(__file__).resolve().parent.parent / "var"

if __name__ == "__main__":
    app()
