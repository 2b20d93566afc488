"""Keeps the Rasa servers `gridbot run` starts running, and stops them with it.

Without it a Rasa server killed under `gridbot run` stayed dead: residents were told to wait, their messages held
(bot/deferred.py), and nothing brought Rasa back. Here one watcher thread per server notices an exit (the process
ended) or a hang (its /status failed several probes in a row), restarts it after a pause doubling to a cap
(bot/backoff.py), logs each restart with its reason and attempt, counts it for /metrics, and once the server has
its model loaded again tells the listeners (the app replays the held messages then instead of at its next retry
round). Threads, not the app's event loop: a busy or blocked loop must not delay noticing a dead Rasa, and the
first start happens before the app is up.

Stopping: the servers run in process groups of their own (rasa_process.start_rasa's own_group), get SIGTERM as
soon as `gridbot run` is asked to stop, and SIGKILL if still there after RASA_STOP_SECONDS.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from bot.backoff import backoff
from bot.metrics import RASA_RESTARTS, RASA_SERVERS_UP
from bot.settings import Settings

log = logging.getLogger(__name__)

# A server that stayed up this long before it died starts its backoff afresh; one dying sooner keeps doubling.
STABLE_SECONDS = 120.0
# How often a watcher looks at its process between status probes (an exit is noticed within this).
_POLL_SECONDS = 0.2

STARTING, UP, DOWN, STOPPED = "starting", "up", "down", "stopped"


@dataclass
class SupervisedServer:
    """One Rasa server: its URL and how to start it (a new process each time)."""

    url: str
    start: Callable[[], subprocess.Popen[bytes]]
    process: subprocess.Popen[bytes] | None = None
    state: str = STARTING
    restarts: int = 0
    last_reason: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)


class RasaSupervisor:
    def __init__(self, servers: Sequence[SupervisedServer], settings: Settings, token: str | None = None) -> None:
        self.servers = list(servers)
        self._settings = settings
        self._params = {"token": token} if token else None
        self._stopping = threading.Event()
        # A process being started is assigned before a stop can miss it; reentrant: a second signal may arrive while
        # stop() holds it in the same (main) thread.
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stop_deadline = 0.0
        self._listeners: list[Callable[[], None]] = []

    # --- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every server and its watcher; returns at once (see wait_ready)."""
        for server in self.servers:
            thread = threading.Thread(target=self._watch, args=(server,), name=f"rasa-supervisor-{server.url}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """True once every server has loaded its model (first start), False after `timeout`."""
        deadline = time.monotonic() + timeout
        return all(server.ready.wait(max(deadline - time.monotonic(), 0)) for server in self.servers)

    def begin_stop(self) -> None:
        """No more restarts, SIGTERM to every server's group, SIGKILL to what is left RASA_STOP_SECONDS later (a
        timer: the app's own graceful shutdown may take longer); returns at once (safe in a signal handler)."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            self._stop_deadline = time.monotonic() + self._settings.rasa_stop_seconds
            for server in self.servers:
                _signal_group(server.process, signal.SIGTERM)
        timer = threading.Timer(self._settings.rasa_stop_seconds, self._kill_left)
        timer.daemon = True
        timer.start()

    def stop(self) -> None:
        """Stop every server (begin_stop) and wait for them: gone within RASA_STOP_SECONDS of the SIGTERM."""
        self.begin_stop()
        with self._lock:
            processes = [server.process for server in self.servers if server.process is not None]
        for process in processes:
            try:
                process.wait(timeout=max(self._stop_deadline - time.monotonic(), 0) + 1.0)  # the timer kills first
            except subprocess.TimeoutExpired:
                pass
            self._kill_left()
            process.wait()
        for server in self.servers:
            server.state = STOPPED
        RASA_SERVERS_UP.set(0)
        for thread in self._threads:
            thread.join(timeout=2)

    def _kill_left(self) -> None:
        with self._lock:
            for server in self.servers:
                process = server.process
                if process is not None and process.poll() is None:
                    log.warning("rasa (pid %d) still running %.0f s after SIGTERM: killing it", process.pid,
                                self._settings.rasa_stop_seconds)  # fmt: skip
                    _signal_group(process, signal.SIGKILL)

    # --- what the app asks --------------------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback()` (from a watcher thread) each time a restarted server has its model loaded again."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def status(self) -> dict[str, object]:
        """For /healthz: each server's state, pid, restarts and the reason of the last one; all_up."""
        servers = [
            {
                "url": server.url,
                "state": server.state,
                "pid": server.process.pid if server.process is not None else None,
                "restarts": server.restarts,
                "last_restart_reason": server.last_reason,
            }
            for server in self.servers
        ]
        return {"all_up": all(server.state == UP for server in self.servers), "servers": servers}

    # --- the watcher ----------------------------------------------------------------------------------------------

    def _watch(self, server: SupervisedServer) -> None:
        failures = 0  # restarts in a row without a stable run between them: the backoff's exponent
        reason: tuple[str, str] | None = None  # (metric label, what the log says) of the restart to do
        while not self._stopping.is_set():
            try:
                if reason is not None:
                    failures += 1
                    delay = backoff(failures, self._settings.rasa_restart_first_seconds,
                                    self._settings.rasa_restart_max_seconds)  # fmt: skip
                    log.warning("rasa at %s %s: restart %d in %.1f s", server.url, reason[1], failures, delay)
                    if self._stopping.wait(delay):
                        return
                    server.restarts += 1
                    server.last_reason = reason[0]
                    RASA_RESTARTS.labels(reason[0]).inc()
                if not self._launch(server):
                    return
                if not self._await_model(server):
                    if self._stopping.is_set():
                        return
                    reason = ("start_failed", self._start_failure(server))
                    self._kill(server)
                    continue
                if reason is not None:
                    log.warning("rasa at %s is back after restart %d (pid %d): replaying held messages", server.url,
                                failures, server.process.pid if server.process else -1)  # fmt: skip
                    self._notify()
                up_since = time.monotonic()
                ended = self._watch_up(server)
                if ended is None:
                    return
                reason = ended
                if time.monotonic() - up_since >= STABLE_SECONDS:
                    failures = 0
                self._kill(server)
            except Exception:  # the watcher must outlive anything one round hits, or the server stays dead
                log.exception("rasa supervisor for %s failed; trying again", server.url)
                reason = reason or ("exited", "supervisor error")
                self._kill(server)

    def _launch(self, server: SupervisedServer) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            server.process = server.start()
            server.state = STARTING
        return True

    def _await_model(self, server: SupervisedServer) -> bool:
        """True once the server's /status names a model; False if it exits, stops or runs out of time first."""
        deadline = time.monotonic() + self._settings.rasa_start_timeout_seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            if server.process is None or server.process.poll() is not None:
                return False
            if self._probe(server, timeout=2.0):
                server.state = UP
                server.ready.set()
                self._count_up()
                return True
            self._stopping.wait(_POLL_SECONDS)
        return False

    def _start_failure(self, server: SupervisedServer) -> str:
        code = server.process.poll() if server.process is not None else None
        if code is not None:
            return f"exited with code {code} while loading its model"
        return f"did not load its model within {self._settings.rasa_start_timeout_seconds:.0f} s"

    def _watch_up(self, server: SupervisedServer) -> tuple[str, str] | None:
        """Watch a ready server until it dies or hangs (the restart's reason) or the supervisor stops (None)."""
        assert server.process is not None
        misses, next_probe = 0, time.monotonic() + self._settings.rasa_probe_seconds
        while not self._stopping.wait(_POLL_SECONDS):
            code = server.process.poll()
            if code is not None:
                self._mark_down(server)
                return ("exited", f"exited with code {code}")
            if time.monotonic() < next_probe:
                continue
            misses = 0 if self._probe(server, self._settings.rasa_probe_timeout_seconds) else misses + 1
            next_probe = time.monotonic() + self._settings.rasa_probe_seconds
            if misses >= self._settings.rasa_probe_failures:
                self._mark_down(server)
                return ("unresponsive", f"failed {misses} status probes in a row")
        return None

    def _probe(self, server: SupervisedServer, timeout: float) -> bool:
        try:
            response = httpx.get(f"{server.url}/status", params=self._params, timeout=timeout)
            return response.status_code == 200 and bool(response.json().get("model_file"))
        except (httpx.HTTPError, ValueError):
            return False

    def _mark_down(self, server: SupervisedServer) -> None:
        server.state = DOWN
        self._count_up()

    def _count_up(self) -> None:
        RASA_SERVERS_UP.set(sum(server.state == UP for server in self.servers))

    def _kill(self, server: SupervisedServer) -> None:
        """Make sure the old process is gone before its port is wanted again (a hung one is still bound to it)."""
        with self._lock:
            process = server.process
        if process is None or process.poll() is not None:
            if process is not None:
                _signal_group(process, signal.SIGKILL)  # anything it left in its group
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=self._settings.rasa_stop_seconds)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                log.exception("rasa supervisor listener failed")


def _signal_group(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    """`sig` to the process's group (it leads one: own_group); to the process alone if it leads none."""
    if process is None:
        return
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, sig)
        elif process.poll() is None:
            process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone (and reaped)


# The supervisor of this process's `gridbot run`, for the app served in the same process (/healthz, replays).
_installed: RasaSupervisor | None = None


def install(supervisor: RasaSupervisor | None) -> None:
    global _installed
    _installed = supervisor


def installed() -> RasaSupervisor | None:
    return _installed
