"""The deliver payload actions hand the router (bot/action_payloads.py): built on one side, checked on the other."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from actions.context import deliver, deliver_message
from bot.action_payloads import InvalidActionPayload, deliveries
from bot.deferred import DeferredStore
from bot.expectations import MemoryExpectations
from bot.group_settings import GroupPolicies
from bot.messages import IncomingMessage, Mention, OutgoingMessage, TargetType
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import Settings


def test_what_an_action_builds_the_router_reads_back_unchanged() -> None:
    rating = OutgoingMessage(
        TargetType.ROOM, "room-1", "请评价", (Mention("res-1", "王阿姨"),), awaits_rating_from="res-1", channel="wecom"
    )
    plain = OutgoingMessage(TargetType.CONTACT, "worker-1", "【派单】GD20261207-0001")
    for message in (rating, plain):
        assert deliveries(deliver_message(message)) == [message]
    built = deliver("contact", "worker-2", "转派", mention=("res-2", "李叔"), await_rating_from="res-2", channel="ilink")
    assert deliveries(built) == [
        OutgoingMessage(TargetType.CONTACT, "worker-2", "转派", (Mention("res-2", "李叔"),), "res-2", "ilink")
    ]


def test_the_json_keeps_its_shape_fields_at_their_defaults_left_out() -> None:
    assert deliver("contact", "worker-1", "hi") == {
        "deliver": [{"target_type": "contact", "target_id": "worker-1", "text": "hi"}]
    }
    assert deliver("room", "room-1", "hi", mention=("res-1", "王阿姨"))["deliver"][0]["mentions"] == [
        {"id": "res-1", "name": "王阿姨"}
    ]


def test_a_response_without_deliveries_delivers_nothing() -> None:
    assert deliveries({}) == [] and deliveries({"expect": "feedback"}) == []


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ({"target_type": "group", "target_id": "room-1", "text": "hi"}, "deliver.0.target_type"),
        ({"target_type": "room", "target_id": "room-1"}, "deliver.0.text"),
        ({"target_type": "room", "target_id": "room-1", "text": "hi", "awaits_rating_from": "x"}, "awaits_rating_from"),
        ({"target_type": "room", "target_id": "room-1", "text": "hi", "mentions": [{"id": "a"}]}, "deliver.0.mentions.0.name"),
        ({"target_type": "contact", "target_id": 7, "text": "hi"}, "deliver.0.target_id"),
    ],
)
def test_a_payload_that_does_not_fit_is_refused_naming_the_field(item: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidActionPayload, match=named.replace(".", r"\.")):
        deliveries({"deliver": [item]})


def test_a_deliver_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(InvalidActionPayload, match="deliver"):
        deliveries({"deliver": {"target_type": "room"}})


def test_the_router_drops_only_a_bad_item_and_keeps_the_turns_replies(caplog: pytest.LogCaptureFixture) -> None:
    """An action's bug must not cost the resident the reply of a ticket already filed: the bad item is dropped and
    logged as an error, the text and a good item still go out."""
    settings = Settings()
    factory = sessionmaker(create_engine("sqlite://"))
    router = MessageRouter(
        settings, RasaClient("http://127.0.0.1:9"), MemoryExpectations(), DeferredStore(factory), GroupPolicies(factory, settings)
    )
    message = IncomingMessage("web", "res-1", "王阿姨", "@网格助手 楼道灯坏了", group_id="room-1", message_id="m-1")
    responses = [
        {"text": "已登记，工单号 GD20261207-0001"},
        {"custom": {"deliver": [{"target_type": "group", "target_id": "room-1", "text": "bad"}]}},
        {"custom": deliver("contact", "worker-1", "【新工单】GD20261207-0001")},
    ]
    with caplog.at_level(logging.ERROR, logger="bot.router"):
        sent = asyncio.run(router._collect(message, responses))
    assert [(m.target_id, m.text) for m in sent] == [
        ("room-1", "已登记，工单号 GD20261207-0001"),
        ("worker-1", "【新工单】GD20261207-0001"),
    ]
    assert any("deliver.0.target_type" in record.getMessage() for record in caplog.records)
