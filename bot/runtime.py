"""Builds the app's long-lived services from settings, once, and hands them to the actions and API."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.webchat import WebChatChannel
from bot.deferred import DeferredStore
from bot.expectations import Expectations, MemoryExpectations, RedisExpectations
from bot.group_settings import GroupPolicies
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import Settings
from knowledge.base import KnowledgeBase
from knowledge.embeddings import load_embedder
from storage.engine import make_engine, make_session_factory


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    rasa: RasaClient
    redis: aioredis.Redis | None
    knowledge: KnowledgeBase
    webchat: WebChatChannel
    router: MessageRouter

    async def aclose(self) -> None:
        await self.rasa.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.engine.dispose()


def build_knowledge_base(settings: Settings) -> KnowledgeBase:
    """Hybrid when the configured embedding model loads, lexical-only (and logged) when it does not."""
    return KnowledgeBase(load_embedder(settings.kb_embedding_model, settings.kb_embedding_prefix))


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    rasa = RasaClient(settings.rasa_url, settings.rasa_timeout_seconds)
    redis_client = (
        aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2) if settings.redis_url else None
    )
    expectations: Expectations = RedisExpectations(redis_client) if redis_client else MemoryExpectations()
    router = MessageRouter(settings, rasa, expectations, DeferredStore(factory), GroupPolicies(factory, settings))
    return Services(
        settings=settings,
        engine=engine,
        session_factory=factory,
        rasa=rasa,
        redis=redis_client,
        knowledge=build_knowledge_base(settings),
        webchat=WebChatChannel(factory, settings.bot_name),
        router=router,
    )
