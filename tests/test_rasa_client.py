"""Several Rasa servers in RASA_URL: requests take turns, a server that refuses connections is skipped, and a
request a server accepted and then failed is not sent to another (it may have acted on the message)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bot.ports import free_port
from bot.rasa_client import RasaClient, RasaRequestRejected, RasaUnavailable, server_urls
from tests.servers import FakeRasa


def _server(name: str, status: int = 200, raw: bytes | None = None) -> FakeRasa:
    """A stand-in Rasa whose parses name it, so a test sees which server answered."""
    return FakeRasa({"text": name, "intent": {"name": "greet"}, "entities": []}, status=status, raw=raw)


@pytest.fixture
def servers() -> Iterator[list[FakeRasa]]:
    made = [_server("a"), _server("b"), _server("broken", status=500)]
    yield made
    for server in made:
        server.close()


async def _ready(client: RasaClient) -> bool:
    try:
        return await client.ready()
    finally:
        await client.aclose()


async def _parses(client: RasaClient, count: int) -> list[str]:
    try:
        return [(await client.parse("你好"))["text"] for _ in range(count)]
    finally:
        await client.aclose()


def test_requests_take_turns_among_the_servers(servers: list[FakeRasa]) -> None:
    a, b, _ = servers
    assert asyncio.run(_parses(RasaClient(f"{a.url}, {b.url}/"), 4)) == ["a", "b", "a", "b"]


def test_a_server_refusing_connections_is_skipped(servers: list[FakeRasa]) -> None:
    a, _, _ = servers
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused, nothing was sent
    assert asyncio.run(_parses(RasaClient(f"{dead},{a.url}"), 3)) == ["a", "a", "a"]
    assert asyncio.run(_ready(RasaClient(f"{dead},{a.url}")))
    with pytest.raises(RasaUnavailable, match="cannot connect"):
        asyncio.run(_parses(RasaClient(f"{dead},http://127.0.0.1:{free_port()}"), 1))
    assert not asyncio.run(_ready(RasaClient(dead)))


def test_a_server_that_failed_a_request_is_not_retried_elsewhere(servers: list[FakeRasa]) -> None:
    a, _, broken = servers
    client = RasaClient(f"{broken.url},{a.url}")
    with pytest.raises(RasaUnavailable, match="HTTP 500"):
        asyncio.run(_parses(client, 1))
    assert (broken.hits, a.hits) == (1, 0)


def test_a_rejected_request_is_not_taken_for_an_outage() -> None:
    """A 400 means our request was wrong: holding the message for a retry would block the queue behind it."""
    rejecting = _server("rejecting", status=400)
    try:
        with pytest.raises(RasaRequestRejected, match="HTTP 400"):
            asyncio.run(_parses(RasaClient(rejecting.url), 1))
    finally:
        rejecting.close()


def test_an_answer_that_is_not_json_is_an_outage() -> None:
    garbled = _server("garbled", raw=b"<html>502 Bad Gateway</html>")
    try:
        with pytest.raises(RasaUnavailable, match="not JSON"):
            asyncio.run(_parses(RasaClient(garbled.url), 1))
    finally:
        garbled.close()


def test_one_client_serves_event_loops_one_after_another(servers: list[FakeRasa]) -> None:
    """Tests and CLIs call the same client from successive asyncio.run loops: each gets a working session."""
    a, _, _ = servers
    client = RasaClient(a.url)

    async def once() -> str:
        return (await client.parse("你好"))["text"]

    assert [asyncio.run(once()) for _ in range(3)] == ["a", "a", "a"]
    asyncio.run(client.aclose())
    assert a.hits == 3


def test_rasa_url_must_name_a_server() -> None:
    assert server_urls(" http://x:5005/ , http://y:5005") == ["http://x:5005", "http://y:5005"]
    with pytest.raises(ValueError, match="names no Rasa server"):
        server_urls(" , ")


def test_every_request_carries_rasas_api_token() -> None:
    """Rasa runs with --auth-token: the parse, the turn and the readiness check all send it as ?token=."""
    rasa = FakeRasa({"text": "你好", "intent": {"name": "greet"}, "entities": []}, reply=[{"text": "您好"}])
    client = RasaClient(rasa.url, token="api-secret")

    async def calls() -> None:
        try:
            await client.parse("你好")
            await client.send("webchat:private:r1", "你好", {"channel": "webchat"})
            assert await client.ready()
        finally:
            await client.aclose()

    try:
        asyncio.run(calls())
    finally:
        rasa.close()
    assert rasa.tokens == ["api-secret"] * 3
