"""A free local TCP port for a server this process starts (tests, benchmarks, throwaway Rasa servers)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
