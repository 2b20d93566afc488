"""Waiting for a resident's reply, in real Redis; a dead Redis degrades instead of failing."""

from __future__ import annotations

import asyncio
import uuid

import redis
import redis.asyncio as aioredis

from bot.expectations import Awaiting, MemoryExpectations, RedisExpectations
from tests.conftest import REDIS_URL
from tests.servers import free_port


def test_redis_expectations_keep_their_kind_and_expire(redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(REDIS_URL)
        store = RedisExpectations(client)
        conv = f"webchat:g:{uuid.uuid4().hex}"
        assert await store.awaiting(conv) is None
        await store.expect(conv, Awaiting.RATING, ttl_seconds=1)
        assert await store.awaiting(conv) is Awaiting.RATING
        assert 0 < await client.ttl(RedisExpectations.PREFIX + conv) <= 1
        await store.expect(conv, Awaiting.FORM, ttl_seconds=1)
        assert await store.awaiting(conv) is Awaiting.FORM
        await store.clear(conv)
        assert await store.awaiting(conv) is None
        await store.expect(conv, Awaiting.FORM, ttl_seconds=1)
        await asyncio.sleep(1.2)
        assert await store.awaiting(conv) is None
        await client.set(RedisExpectations.PREFIX + conv, "garbage")
        assert await store.awaiting(conv) is None
        await client.delete(RedisExpectations.PREFIX + conv)
        await client.aclose()

    asyncio.run(scenario())


def test_dead_redis_degrades_to_not_expected() -> None:
    async def scenario() -> None:
        client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
        store = RedisExpectations(client)
        await store.expect("c", Awaiting.FORM, 60)  # logged, not raised
        assert await store.awaiting("c") is None
        await store.clear("c")
        await client.aclose()

    asyncio.run(scenario())


def test_memory_expectations() -> None:
    async def scenario() -> None:
        store = MemoryExpectations()
        await store.expect("c", Awaiting.RATING, 60)
        assert await store.awaiting("c") is Awaiting.RATING
        await store.clear("c")
        assert await store.awaiting("c") is None
        await store.expect("c", Awaiting.FORM, -1)
        assert await store.awaiting("c") is None

    asyncio.run(scenario())
