"""Waiting for a resident's reply, in real Redis; a dead Redis degrades instead of failing."""

from __future__ import annotations

import asyncio
import uuid

import redis
import redis.asyncio as aioredis

from bot.expectations import MemoryExpectations, RedisExpectations
from tests.conftest import REDIS_URL
from tests.servers import free_port


def test_redis_expectations_expire(redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(REDIS_URL)
        store = RedisExpectations(client)
        conv = f"webchat:g:{uuid.uuid4().hex}"
        assert not await store.is_expected(conv)
        await store.expect(conv, ttl_seconds=1)
        assert await store.is_expected(conv)
        assert 0 < await client.ttl(RedisExpectations.PREFIX + conv) <= 1
        await store.clear(conv)
        assert not await store.is_expected(conv)
        await store.expect(conv, ttl_seconds=1)
        await asyncio.sleep(1.2)
        assert not await store.is_expected(conv)
        await client.aclose()

    asyncio.run(scenario())


def test_dead_redis_degrades_to_not_expected() -> None:
    async def scenario() -> None:
        client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
        store = RedisExpectations(client)
        await store.expect("c", 60)  # logged, not raised
        assert not await store.is_expected("c")
        await client.aclose()

    asyncio.run(scenario())


def test_memory_expectations() -> None:
    async def scenario() -> None:
        store = MemoryExpectations()
        await store.expect("c", 60)
        assert await store.is_expected("c")
        await store.clear("c")
        assert not await store.is_expected("c")

    asyncio.run(scenario())
