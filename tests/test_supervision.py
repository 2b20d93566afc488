"""`gridbot run` supervises its Rasa server (bot/rasa_supervisor.py): a killed Rasa comes back, the message held while it
was down is answered after, /healthz says degraded meanwhile, /metrics counts the restart, and stopping
`gridbot run` stops Rasa within seconds.

The real command in a process of its own (its database, run folder and ports), with the real trained Rasa server
it starts itself: only the process under test can show how signals and children behave.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import rasa_process
from bot.ports import free_port
from bot.rasa_supervisor import RasaSupervisor, SupervisedServer
from bot.settings import PROJECT_ROOT, Settings
from bot.texts import text as t

pytestmark = pytest.mark.rasa
GROUP = "demo-grid-1"


@dataclass
class Run:
    url: str
    process: subprocess.Popen[bytes]
    log_file: Path
    run_dir: Path

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/healthz", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def rasa_pid(self) -> int | None:
        [server] = self.health()["rasa"]["servers"]
        return server["pid"] if server["state"] == "up" else None

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")


def _wait_for(condition: Callable[[], object], timeout: float, what: str, run: Run | None = None) -> Any:
    """Poll until `condition()` is truthy (its value is returned); fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            tail = run.log()[-4000:] if run is not None else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{tail}")
        time.sleep(0.5)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    rasa_process.ensure_model()  # trained (or waited for) here, not within the start-up deadline below
    folder = tmp_path_factory.mktemp("supervised")
    app_port, rasa_port = free_port(), free_port()
    env = {
        key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "RASA_AUTH_TOKEN", "ACTION_TOKEN")
    }  # fmt: skip
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'gridbot.db'}",
            "RASA_URL": f"http://127.0.0.1:{rasa_port}",
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(app_port),
            "RUN_DIR": str(folder / "run"),
            # The periodic replay would come too late for the deadlines below: the supervisor's own replay is tested.
            "DEFERRED_RETRY_SECONDS": "3600",
            "RASA_TIMEOUT_SECONDS": "10",
            "RASA_RESTART_FIRST_SECONDS": "0.5",
            "RASA_START_TIMEOUT_SECONDS": "900",  # a loaded shared machine: a model load took 2 min+ here
        }
    )
    log_file = folder / "gridbot-run.log"
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--demo"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    run = Run(f"http://127.0.0.1:{app_port}", process, log_file, folder / "run")
    try:
        _wait_for(lambda: process.poll() is None and run.rasa_pid(), 600, "gridbot run with its Rasa up", run)
        yield run
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        _kill_leftover(run)  # a Rasa left behind by a failed test must not outlive it


def _kill_leftover(run: Run) -> None:
    """The Rasa servers this run started, should a failing test leave them: the processes whose command line names
    the run folder's endpoints file."""
    endpoints = str(run.run_dir / "endpoints.yml")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if endpoints.encode() in command:
            os.kill(int(entry.name), signal.SIGKILL)


def _say(run: Run, sender: str, text: str) -> list[str]:
    payload = {"group_id": GROUP, "sender_id": sender, "sender_name": "居民", "text": text, "mentions_bot": True}
    response = httpx.post(f"{run.url}/api/v1/local/messages", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return [reply["text"] for reply in response.json()["replies"]]


def _bot_lines_after(run: Run, after: int) -> list[str]:
    response = httpx.get(
        f"{run.url}/api/v1/local/transcript", params={"target_type": "room", "target_id": GROUP, "after": after}, timeout=10
    )
    return [line["text"] for line in response.json()["messages"] if line["direction"] == "out"]


def _last_line_id(run: Run) -> int:
    response = httpx.get(f"{run.url}/api/v1/local/transcript", params={"target_type": "room", "target_id": GROUP}, timeout=10)
    messages = response.json()["messages"]
    return messages[-1]["id"] if messages else 0


def _restarts(run: Run) -> float:
    body = httpx.get(f"{run.url}/metrics", timeout=10).text
    lines = [line for line in body.splitlines() if line.startswith('gridbot_rasa_restarts_total{reason="exited"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_killed_rasa_is_restarted_and_the_message_held_meanwhile_is_answered(run: Run) -> None:
    first = run.rasa_pid()
    assert first is not None and _running(first)
    assert run.health()["status"] == "ok"
    restarts_before = _restarts(run)

    os.kill(first, signal.SIGKILL)
    # Degraded while down (the restart takes a model load, tens of seconds).
    _wait_for(lambda: run.health()["status"] == "degraded", 30, "/healthz degraded after the kill", run)
    sender = f"sup-{uuid.uuid4().hex[:6]}"
    before = _last_line_id(run)
    assert _say(run, sender, "楼道里的灯坏了好几天了") == [f"@居民 {t('router.rasa_down')}"]

    # A new pid: until the watcher (polling every half second, later on a loaded machine) notices the exit, the
    # supervisor still names the killed server as up.
    _wait_for(lambda: (pid := run.rasa_pid()) != first and pid, 600, "Rasa restarted and ready", run)
    assert not _running(first)
    assert run.health()["status"] == "ok" and run.health()["rasa"]["servers"][0]["restarts"] == 1
    assert _restarts(run) == restarts_before + 1
    # The held message is replayed once Rasa is back (the periodic replay is an hour away here): its answer shows.
    rasa_down = f"@居民 {t('router.rasa_down')}"
    answers = _wait_for(
        lambda: [line for line in _bot_lines_after(run, before) if line != rasa_down], 60, "the held message answered", run
    )
    assert all(line.startswith("@居民") for line in answers), answers
    assert "restart 1" in run.log() and "is back after restart 1" in run.log()


def test_sigterm_stops_gridbot_run_and_its_rasa_within_seconds(run: Run) -> None:
    rasa = _wait_for(run.rasa_pid, 300, "Rasa up", run)
    run.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _wait_for(lambda: not _running(rasa), 10, "Rasa gone after gridbot run's SIGTERM", run)
    run.process.wait(timeout=20)
    assert time.monotonic() - started < 10
    assert "restart 2" not in run.log()  # stopping is not a crash to restart


# --- the supervisor on a stand-in server process (fast): a hang and a crash loop, without a model to load -----------

# A real process answering /status as a loaded Rasa does; it exits at once when started with a non-empty argument.
_STAND_IN = """
import http.server, json, sys
if sys.argv[2]:
    sys.exit(int(sys.argv[2]))
class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"model_file": "stand-in.tar.gz"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Status).serve_forever()
"""


def _stand_in(port: int, exit_code: Callable[[], str]) -> Callable[[], subprocess.Popen[bytes]]:
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", _STAND_IN, str(port), exit_code()], start_new_session=True)

    return start


def _settings(**overrides: float) -> Settings:
    values = {"rasa_probe_seconds": 0.3, "rasa_probe_timeout_seconds": 0.5, "rasa_probe_failures": 2,
              "rasa_restart_first_seconds": 0.2, "rasa_restart_max_seconds": 1.0, "rasa_stop_seconds": 1.0,
              "rasa_start_timeout_seconds": 20.0} | overrides  # fmt: skip
    return Settings(**values)  # type: ignore[arg-type]


def test_a_hung_server_is_killed_and_restarted_and_listeners_told() -> None:
    port = free_port()
    server = SupervisedServer(f"http://127.0.0.1:{port}", _stand_in(port, lambda: ""))
    supervisor = RasaSupervisor([server], _settings())
    recovered: list[int] = []
    supervisor.add_listener(lambda: recovered.append(1))
    supervisor.start()
    try:
        assert supervisor.wait_ready(20)
        hung = server.process
        assert hung is not None
        os.kill(hung.pid, signal.SIGSTOP)  # alive, but answering nothing: only the status probes can tell
        _wait_for(lambda: recovered, 30, "the hung stand-in replaced and the listener told")
        assert server.process is not hung and hung.poll() is not None  # SIGTERM cannot end a stopped process: SIGKILL did
        assert server.restarts == 1 and server.last_reason == "unresponsive"
        assert supervisor.status()["all_up"]
    finally:
        supervisor.stop()
    assert server.process is not None and server.process.poll() is not None


def test_a_server_that_keeps_dying_is_restarted_ever_later_up_to_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = SupervisedServer(f"http://127.0.0.1:{port}", _stand_in(port, lambda: "3"))  # dies while "loading"
    supervisor = RasaSupervisor([server], _settings(rasa_restart_first_seconds=0.2, rasa_restart_max_seconds=0.8))
    caplog.set_level(logging.WARNING, logger="bot.rasa_supervisor")

    def restarts() -> list[tuple[int, float]]:
        found = (RESTART_LINE.search(record.getMessage()) for record in caplog.records)
        return [(int(match[1]), float(match[2])) for match in found if match]

    supervisor.start()
    try:
        _wait_for(lambda: len(restarts()) >= 5, 30, "five restarts")
    finally:
        supervisor.stop()
    attempts, delays = zip(*restarts()[:5], strict=True)
    assert attempts == (1, 2, 3, 4, 5)
    # Doubling from 0.2 s to the 0.8 s cap, each ±20 % (logged to one decimal).
    for delay, expected in zip(delays, (0.2, 0.4, 0.8, 0.8, 0.8), strict=True):
        assert expected * 0.8 - 0.05 <= delay <= expected * 1.2 + 0.05, delays
    assert server.last_reason == "start_failed" and not supervisor.status()["all_up"]
    assert "exited with code 3 while loading its model" in caplog.text


RESTART_LINE = re.compile(r": restart (\d+) in ([\d.]+) s")


# A parent that starts a stand-in child as start_rasa starts Rasa (own session, die_with_parent), prints its pid and
# waits: killed with SIGKILL, it runs no clean-up of its own.
_PARENT = """
import subprocess, sys, time
from bot.rasa_process import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
                         preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_server_started_as_rasa_is_ends_when_its_starter_is_killed_outright() -> None:
    """`kill -9` of `gridbot run` leaves no Rasa serving: the kernel ends the child with its parent."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], cwd=PROJECT_ROOT, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _running(child)
        parent.kill()
        parent.wait(timeout=10)
        _wait_for(lambda: not _running(child), 10, "the child gone with its parent")
    finally:
        parent.kill()
