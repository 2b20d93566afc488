"""The prepared REST channel: Rasa takes the router's parse instead of running NLU a second time."""

from __future__ import annotations

import uuid

import httpx
import pytest
import yaml

from bot.rasa_tokens import rasa_token
from bot.settings import PROJECT_ROOT
from bot.texts import text as t

pytestmark = pytest.mark.rasa
RESPONSES = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))["responses"]


def _token() -> dict[str, str]:
    """Rasa's API token, which the channel asks for as the app's client sends it (bot/rasa_client.py)."""
    return {"token": rasa_token()}


def _texts(messages: list[dict[str, object]]) -> list[object]:
    return [m.get("text") for m in messages if m.get("text")]


def _turn(rasa_url: str, text: str, parse_data: object = None, group: str | None = None) -> list[dict[str, object]]:
    sender = f"channel-{uuid.uuid4().hex[:8]}"
    metadata = {"channel": "web", "group_id": group, "sender_id": sender, "sender_name": "居民小周"}
    body: dict[str, object] = {"sender": sender, "message": text, "metadata": metadata}
    if parse_data is not None:
        body["parse_data"] = parse_data
    response = httpx.post(f"{rasa_url}/webhooks/gridbot/webhook", json=body, params=_token(), timeout=60)
    response.raise_for_status()
    return response.json()


def test_a_parse_for_the_same_text_is_used_as_is(rasa_url: str, app_url: str) -> None:
    text = "今天太阳真好 晒被子去"
    parsed = httpx.post(f"{rasa_url}/model/parse", json={"text": text}, params=_token(), timeout=30).json()
    assert parsed["intent"]["name"] != "worker_help"  # so the answer below can only come from the given parse
    given = {**parsed, "intent": {"name": "worker_help", "confidence": 1.0}}
    assert _texts(_turn(rasa_url, text, given)) == [t("help.resident")]  # what 帮助 tells a resident, whatever the words


def test_a_parse_of_another_text_or_malformed_is_ignored(rasa_url: str) -> None:
    text = "你是机器人吗"
    own = _texts(_turn(rasa_url, text))
    assert own == [RESPONSES["utter_iamabot"][0]["text"]]
    other = {"text": "你好", "intent": {"name": "greet", "confidence": 1.0}, "entities": []}
    assert _texts(_turn(rasa_url, text, other)) == own
    assert _texts(_turn(rasa_url, text, {"text": text, "intent": "greet"})) == own
    assert _texts(_turn(rasa_url, text, ["not", "a", "parse"])) == own


def test_a_form_question_carries_the_expectation_marker(rasa_url: str, app_url: str) -> None:
    # The form (validated by our actions, hence the app) asks where; the router then listens for the answer.
    messages = _turn(rasa_url, "楼道灯坏了 好几天了", group="demo-grid-1")
    assert RESPONSES["utter_ask_location"][0]["text"] in _texts(messages)
    assert {"expect": "form"} in [m.get("custom") for m in messages]


def test_requests_without_sender_or_text_are_refused(rasa_url: str) -> None:
    for body in ({"message": "你好"}, {"sender": "x"}, {"sender": "", "message": "你好"}, {"sender": "x", "message": 3}):
        assert httpx.post(f"{rasa_url}/webhooks/gridbot/webhook", json=body, params=_token(), timeout=30).status_code == 400
