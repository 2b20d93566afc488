"""Builds the app's long-lived services from settings, once, and hands them to the actions and API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.base import Channel
from bot.channels.dedup import Deduplicator
from bot.channels.dispatch import Dispatcher
from bot.channels.ilink import build_ilink_channel
from bot.channels.intake import MessageIntake
from bot.channels.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from bot.channels.registry import ChannelRegistry
from bot.channels.webchat import WebChatChannel
from bot.channels.wechaty import build_channel as build_wechaty_channel
from bot.channels.wecom import build_wecom_channel
from bot.channels.wecom_aibot import build_channel as build_wecom_aibot_channel
from bot.deferred import DeferredStore
from bot.expectations import Expectations, MemoryExpectations, RedisExpectations
from bot.group_settings import GroupPolicies
from bot.privacy import mask_for_group
from bot.rasa_client import RasaClient
from bot.rasa_process import cache_dir
from bot.router import MessageRouter
from bot.settings import Settings, namespace_for
from bot.worker_day import morning_time
from bot.worker_desk import MemoryPendingChoices, RedisPendingChoices, WorkerDesk
from grid.duplicates import CALIBRATED, DuplicateJudge, Thresholds, load_judge
from grid.emergencies import EmergencyTriage, MeaningRecogniser, load_recogniser
from grid.problems import ProblemJudge
from grid.warnings import WarningWatch, load_rules
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
    channels: ChannelRegistry
    dispatcher: Dispatcher
    intake: MessageIntake
    emergencies: EmergencyTriage | None = None  # life-safety reports: red, due at once, the number to call
    duplicates: DuplicateJudge | None = None  # which open ticket a report repeats (grid/duplicates.py)
    # Which reports are one problem (early warnings, recurring statistics): by meaning with the embedding model.
    problems: ProblemJudge | None = None
    warnings: WarningWatch | None = None  # early warnings after each filing (预警)

    async def aclose(self) -> None:
        await self.rasa.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.engine.dispose()


def build_knowledge_base(settings: Settings) -> KnowledgeBase:
    """Hybrid when the configured embedding model loads, lexical-only (and logged) when it does not."""
    return KnowledgeBase(load_embedder(settings.kb_embedding_model, settings.kb_embedding_prefix))


def build_emergency_triage(settings: Settings) -> EmergencyTriage:
    """Emergencies by meaning with the knowledge base's embedding model (loaded once per process, so shared), by
    each kind's keywords when there is none (logged); the trained recogniser is cached beside the offline models."""
    embedder = load_embedder(settings.kb_embedding_model, settings.kb_embedding_prefix)
    recogniser = load_recogniser(embedder, cache_dir() / "emergencies")
    return EmergencyTriage(recogniser, deadline=timedelta(minutes=settings.emergency_deadline_minutes))


def build_duplicate_judge(settings: Settings, emergencies: EmergencyTriage | None) -> DuplicateJudge:
    """Duplicates by place and meaning with the knowledge base's embedding model (loaded once per process, so
    shared), centred where the emergency recogniser already centred it; the safe rule when there is no model."""
    embedder = load_embedder(settings.kb_embedding_model, settings.kb_embedding_prefix)
    recogniser = emergencies.recogniser if emergencies else None
    centre = recogniser.model.mean if isinstance(recogniser, MeaningRecogniser) else None
    link = CALIBRATED.link if settings.duplicate_link_score is None else settings.duplicate_link_score
    flag = CALIBRATED.flag if settings.duplicate_flag_score is None else settings.duplicate_flag_score
    return load_judge(embedder, Thresholds(link=link, flag=flag), centre)


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    rasa = RasaClient(settings.rasa_url, settings.rasa_timeout_seconds)
    redis_client = (
        aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2) if settings.redis_url else None
    )
    namespace = namespace_for(settings)
    expectations: Expectations = RedisExpectations(redis_client, namespace) if redis_client else MemoryExpectations()
    emergencies = build_emergency_triage(settings)
    router = MessageRouter(
        settings,
        rasa,
        expectations,
        DeferredStore(factory, settings.received_stale_seconds),
        GroupPolicies(factory, settings),
        state_store_up=redis_pinger(redis_client) if redis_client else None,
        workers=WorkerDesk(
            factory,
            RedisPendingChoices(redis_client, namespace) if redis_client else MemoryPendingChoices(),
            settings.bot_name,
            settings.expect_reply_seconds,
            evidence_window=timedelta(minutes=settings.worker_evidence_minutes),
            morning_at=morning_time(settings),
        ),
        emergencies=emergencies,  # an unasked emergency report is answered at any hour (bot/router.py)
    )
    webchat = WebChatChannel(factory, settings.bot_name)
    channels = ChannelRegistry([webchat, *build_platform_channels(settings, factory)])
    limiter: RateLimiter = RedisRateLimiter(redis_client) if redis_client else MemoryRateLimiter()
    dispatcher = Dispatcher(channels, factory, limiter, namespace, mask_for_group=mask_for_group)
    accounts = {channel.name: channel.account for channel in channels}
    intake = MessageIntake(router, dispatcher, Deduplicator(redis_client, namespace), factory, accounts.get)
    return Services(
        settings=settings,
        engine=engine,
        session_factory=factory,
        rasa=rasa,
        redis=redis_client,
        knowledge=build_knowledge_base(settings),
        emergencies=emergencies,
        duplicates=(duplicates := build_duplicate_judge(settings, emergencies)),
        # Early warnings and recurring statistics group reports on the duplicate judge's scale and thresholds.
        problems=(problems := ProblemJudge.for_duplicates(duplicates)),
        warnings=WarningWatch(load_rules(settings.warnings_file), problems),
        webchat=webchat,
        router=router,
        channels=channels,
        dispatcher=dispatcher,
        intake=intake,
    )


def redis_pinger(client: aioredis.Redis) -> Callable[[], Awaitable[bool]]:
    async def up() -> bool:
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False

    return up


def build_platform_channels(settings: Settings, factory: sessionmaker[Session]) -> list[Channel]:
    """The adapters whose settings are present (wechaty: a puppet-service token; WeCom: a corp id)."""
    channels: list[Channel] = []
    wecom = build_wecom_channel(settings, factory)
    if wecom is not None:
        channels.append(wecom)
    wechaty = build_wechaty_channel(settings, factory)
    if wechaty is not None:
        channels.append(wechaty)
    wecom_aibot = build_wecom_aibot_channel(settings, factory)  # WeCom smart robot: its id and secret
    if wecom_aibot is not None:
        channels.append(wecom_aibot)
    ilink = build_ilink_channel(settings, factory)  # personal WeChat, official iLink route: ILINK_ENABLED
    if ilink is not None:
        channels.append(ilink)
    return channels
