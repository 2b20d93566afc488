"""The real wechaty peer for the adapter tests: Node's puppet-service gRPC server with PuppetMock behind it.

`WechatyPeer` runs tests/peers/wechaty/mock-server.mjs on two free loopback ports, keeps reading its output
(a full pipe would block it), and drives it through its control API: members speak (with the platform's
@-mention list), send pictures and voice notes, add the bot to rooms; what the bot sent is read back with its
mention ids. `kill()` and `start()` on the same ports play a puppet service that restarts.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.embedded import free_port
from tests.support.channel_hosts import AppHost

PEER_DIR = Path(__file__).resolve().parent / "peers" / "wechaty"
TOKEN = "gridbot-test-token"


class WechatyPeer:
    def __init__(self, world: dict[str, Any], folder: Path) -> None:
        if shutil.which("node") is None:
            pytest.skip("node is not installed: the wechaty peer needs Node 18+")
        if not (PEER_DIR / "node_modules" / "wechaty-puppet-service").is_dir():
            pytest.fail("the wechaty peer is not installed: run `npm ci` in tests/peers/wechaty (scripts/setup.sh does)")
        self.grpc_port, self.ctrl_port = free_port(), free_port()
        self.world_file = folder / "wechaty-world.json"
        self.world_file.write_text(json.dumps(world, ensure_ascii=False), encoding="utf-8")
        self.output: deque[str] = deque(maxlen=400)
        self.process: subprocess.Popen[str] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.ctrl_port}", timeout=10)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        env = {**os.environ, "PORT": str(self.grpc_port), "CTRL_PORT": str(self.ctrl_port), "TOKEN": TOKEN,
               "WORLD": str(self.world_file)}
        self.process = subprocess.Popen(
            ["node", "mock-server.mjs"], cwd=PEER_DIR, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1,
        )
        ready = threading.Event()
        threading.Thread(target=self._drain, args=(self.process, ready), daemon=True).start()
        if not ready.wait(30):
            self.kill()
            raise RuntimeError("wechaty peer did not start:\n" + "\n".join(self.output))

    def _drain(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line.rstrip())
            if line.startswith("READY"):
                ready.set()

    def kill(self) -> None:
        """The puppet service dies at once (no goodbye to the client): SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
        self.http.close()

    # --- the control API -------------------------------------------------------------------------------

    def _post(self, path: str, **payload: Any) -> dict[str, Any]:
        response = self.http.post(path, json=payload)
        assert response.status_code == 200, response.text
        return response.json()

    def add_contact(self, contact_id: str, name: str) -> None:
        self._post("/contact", id=contact_id, name=name)

    def add_room(self, room_id: str, topic: str, members: list[str]) -> None:
        self._post("/room", id=room_id, topic=topic, members=members)

    def say(self, talker: str, text: str, *, room: str | None = None, mentions: tuple[str, ...] = ()) -> str:
        """A member speaks in a room (with the platform's mention list) or, without `room`, privately to the bot."""
        return str(self._post("/say", talker=talker, room=room, text=text, mentions=list(mentions))["id"])

    def send_file(self, talker: str, name: str, data: bytes, *, room: str | None = None) -> str:
        """A picture (.png/.jpg), voice note (.sil) or video (.mp4), typed by the peer from the name."""
        file = {"name": name, "base64": base64.b64encode(data).decode()}
        return str(self._post("/say", talker=talker, room=room, file=file)["id"])

    def redeliver(self, message_id: str) -> None:
        self._post("/redeliver", id=message_id)

    def join(self, room: str, invitees: list[str], inviter: str) -> None:
        self._post("/join", room=room, invitees=invitees, inviter=inviter)

    def state(self) -> dict[str, Any]:
        return self.http.get("/state").json()

    def sent(self, *, room: str | None = None, contact: str | None = None) -> list[dict[str, Any]]:
        """What the bot sent, oldest first: {id, roomId, listenerId, text, mentionIdList, type, file}."""
        messages = self.http.get("/sent").json()
        if room is not None:
            messages = [m for m in messages if m["roomId"] == room]
        if contact is not None:
            messages = [m for m in messages if m["listenerId"] == contact]
        return messages

    def wait_sent(
        self, *, room: str | None = None, contact: str | None = None, count: int = 1, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """Wait until the bot has sent at least `count` messages there; all of them."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.sent(room=room, contact=contact)
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} message(s) to {room or contact}, got {messages}\npeer output:\n"
                    + "\n".join(list(self.output)[-30:])
                )
            time.sleep(0.1)


class ChannelHost(AppHost):
    """The app with the wechaty channel, served from a thread with an event loop the test can reach."""

    channel_name = "wechaty"
