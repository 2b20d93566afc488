"""The app as a separate `gridbot serve` process: what the scale-out test and the benchmarks start.

bot.embedded serves the app from a thread, which is enough for most tests but not for two app processes:
threads share caches (the embedding model, the emergency recogniser) and the GIL, and their memory
cannot be told apart. A subprocess configured only through environment variables is what a deployment
runs, so it also shows that the environment is all a process needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.rasa_tokens import ACTION_TOKEN_ENV, RASA_TOKEN_ENV, action_token, rasa_token
from bot.settings import PROJECT_ROOT


@dataclass(frozen=True)
class AppProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def start_app(port: int, env: Mapping[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """`gridbot serve` on 127.0.0.1:port with the given settings (DATABASE_URL, REDIS_URL, RASA_URL…) on top of ours.

    The tests and benches drive it through the web chat, so that is on unless `env` says otherwise; and it shares
    this process's secrets (bot.rasa_tokens), whichever starts first: it checks Rasa's action calls against the
    action token write_endpoints gives the Rasa servers started from here, and sends them the API token
    start_rasa starts them with.
    """
    defaults = {"LOCAL_CHAT_ENABLED": "true", ACTION_TOKEN_ENV: action_token(), RASA_TOKEN_ENV: rasa_token()}
    full_env = {**os.environ, **defaults, **env, "APP_HOST": "127.0.0.1", "APP_PORT": str(port)}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"],
            cwd=PROJECT_ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(url: str, process: subprocess.Popen[bytes], log_file: Path, timeout: float = 120.0) -> None:
    """Block until /healthz answers (the lifespan has built every service); fail early if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with code {process.returncode}:\n{_tail(log_file)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"app at {url} not healthy after {timeout:.0f} s:\n{_tail(log_file)}")


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it does not go."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@contextmanager
def app_process(port: int, env: Mapping[str, str], log_file: Path) -> Iterator[AppProcess]:
    """A healthy app process for the block, stopped afterwards."""
    process = start_app(port, env, log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_file)
        yield AppProcess(url, process, log_file)
    finally:
        stop(process)


def _tail(log_file: Path, chars: int = 4000) -> str:
    return log_file.read_text(encoding="utf-8", errors="replace")[-chars:] if log_file.exists() else "(no log)"
