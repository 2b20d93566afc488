"""A free local TCP port for a server this process starts (tests, benchmarks, throwaway Rasa servers)."""

from __future__ import annotations

import socket

# The OS may offer a port it just offered again (nothing is bound to it until the server starts, which for
# Rasa is after its model loads): two servers asked for ports in a row could both get the same one.
_given: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
