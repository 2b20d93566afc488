"""The place of a report kept whole (#22): NLU tags 3号楼 and 4号楼, the resident meant the road between them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import yaml

from actions.places import whole_place
from bot.settings import PROJECT_ROOT
from tests.servers import action_call

DOMAIN = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))


def tagged(text: str, *pieces: str) -> list[dict[str, Any]]:
    """Location entities as NLU gives them: the piece's offsets in the parsed text."""
    found = []
    for piece in pieces:
        start = text.index(piece)
        found.append({"entity": "location", "start": start, "end": start + len(piece), "value": piece})
    return found


@pytest.mark.parametrize(
    ("text", "pieces", "place"),
    [
        ("在3号楼和4号楼中间那条路上有个大坑", ("3号楼", "4号楼"), "3号楼和4号楼中间那条路上"),
        ("幸福路菜市场门口堆满了垃圾", ("幸福路菜市场",), "幸福路菜市场门口"),
        ("5号楼2单元楼道灯坏了", ("5号楼",), "5号楼2单元楼道"),
        ("3号楼东侧的下水井盖丢了", ("3号楼",), "3号楼东侧"),
        ("3号楼的楼顶漏水", ("3号楼",), "3号楼的楼顶"),
        # what follows the place is the problem, not part of it
        ("3号楼路灯坏了", ("3号楼",), "3号楼"),
        ("3号楼的人天天在楼下烧纸", ("3号楼",), "3号楼"),
        # two separate places: the first one named is the report's
        ("3号楼有人跑到13号楼门口吵架", ("3号楼", "13号楼"), "3号楼"),
    ],
)
def test_the_place_runs_over_joined_pieces_and_the_spot_words(text: str, pieces: tuple[str, ...], place: str) -> None:
    assert whole_place(text, tagged(text, *pieces)) == place


def test_no_usable_location_tag_gives_nothing() -> None:
    assert whole_place("楼道灯坏了", []) is None
    assert whole_place("楼道灯坏了", [{"entity": "location", "value": "楼道"}]) is None  # no offsets
    assert whole_place("楼道灯", [{"entity": "location", "start": 2, "end": 40}]) is None  # offsets outside the text
    assert whole_place("3号楼", [{"entity": "time", "start": 0, "end": 3}]) is None



def validated_location(client: httpx.Client, text: str, slot_value: object, entities: list[dict[str, Any]]) -> object:
    """The location the report form keeps, validated over /webhook as Rasa asks for it."""
    conversation = f"webchat:demo-grid-1:resident-{uuid.uuid4().hex[:8]}"
    metadata = {"channel": "webchat", "group_id": "demo-grid-1", "sender_id": "r", "sender_name": "居民", "addressed": True}
    latest = {"text": text, "intent": {"name": "report_issue", "confidence": 0.9}, "entities": entities, "metadata": metadata}
    body = action_call("validate_report_form", conversation, latest)
    body["domain"] = DOMAIN
    body["tracker"]["slots"] = {"location": slot_value, "issue_description": text, "requested_slot": None}
    body["tracker"]["active_loop"] = {"name": "report_form"}
    body["tracker"]["events"] = [{"event": "slot", "name": "location", "value": slot_value}]
    response = client.post("/webhook", json=body)
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    return next(e["value"] for e in events if e.get("event") == "slot" and e.get("name") == "location")


def test_the_report_form_keeps_the_whole_place(webhook: httpx.Client) -> None:
    text = "在3号楼和4号楼中间那条路上有个大坑"
    assert validated_location(webhook, text, ["3号楼", "4号楼"], tagged(text, "3号楼", "4号楼")) == "3号楼和4号楼中间那条路上"
    assert validated_location(webhook, text, "4号楼", tagged(text, "3号楼", "4号楼")) == "3号楼和4号楼中间那条路上"


def test_a_free_answer_to_where_is_kept_as_said(webhook: httpx.Client) -> None:
    text = "就在3号楼和4号楼中间那条路上靠近垃圾站"
    assert validated_location(webhook, text, text, tagged(text, "3号楼")) == "3号楼和4号楼中间那条路上靠近垃圾站"
