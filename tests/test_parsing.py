"""Pure text handling: worker commands, ratings, categories, normalisation."""

from __future__ import annotations

import json

import pytest

from bot.commands import parse_command
from bot.normalise import has_words, normalise
from grid.categories import classify
from grid.ratings import Rating, parse_rating


def test_resolve_command_with_number_and_result() -> None:
    command = parse_command("办结 gd20261125-0007 已更换灯泡，恢复照明")
    assert command is not None
    assert (command.intent, command.ticket_number, command.text) == ("worker_resolve", "GD20261125-0007", "已更换灯泡，恢复照明")
    payload = command.as_rasa_message()
    assert payload.startswith("/worker_resolve{")
    assert json.loads(payload.removeprefix("/worker_resolve")) == {
        "ticket_number": "GD20261125-0007",
        "command_text": "已更换灯泡，恢复照明",
    }


def test_command_text_with_quotes_stays_valid_json() -> None:
    command = parse_command('办结 GD20261125-0001 居民说"好了"}')
    assert command is not None
    assert json.loads(command.as_rasa_message().removeprefix("/worker_resolve"))["command_text"] == '居民说"好了"}'


@pytest.mark.parametrize("text", ["你好", "我想办结婚证", "高龄补贴怎么申请"])
def test_non_commands(text: str) -> None:
    command = parse_command(text)
    assert command is None or command.ticket_number is None


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("满意", Rating.SATISFIED),
        ("非常满意 谢谢", Rating.SATISFIED),
        ("基本满意吧", Rating.MOSTLY_SATISFIED),
        ("不满意 灯还是不亮", Rating.UNSATISFIED),
        ("不太满意", Rating.UNSATISFIED),
        ("1", Rating.SATISFIED),
        ("评3分", Rating.UNSATISFIED),
        ("2", Rating.MOSTLY_SATISFIED),
        ("好的", None),
        ("12号楼", None),
    ],
)
def test_ratings(text: str, rating: Rating | None) -> None:
    assert parse_rating(text) == rating


def test_rating_entity_hint_wins_and_bad_hint_is_ignored() -> None:
    assert parse_rating("还行吧", "基本满意") is Rating.MOSTLY_SATISFIED
    assert parse_rating("满意", "nonsense") is Rating.SATISFIED


@pytest.mark.parametrize(
    ("text", "category", "colour"),
    [
        ("3号楼楼道灯坏了", "物业管理", "yellow"),
        ("幸福路的路灯不亮了", "市政设施", "yellow"),
        ("楼下闻到很重的燃气味", "安全隐患", "red"),
        ("楼上半夜装修太吵了", "噪音扰民", "yellow"),
        ("有人在楼顶私搭乱建", "违章搭建", "blue"),
        ("我家猫丢了", "其他", "yellow"),
    ],
)
def test_categories(text: str, category: str, colour: str) -> None:
    found = classify(text)
    assert (found.name, found.colour) == (category, colour)


def test_category_hint_must_be_known() -> None:
    assert classify("路灯坏了", "噪音扰民").name == "噪音扰民"
    assert classify("路灯坏了", "火星").name == "市政设施"


def test_normalise() -> None:
    assert normalise("@网格助手\u2005 ３号楼　楼道灯坏了", "网格助手") == "3号楼 楼道灯坏了"
    assert normalise("ＡＢＣ１２，你好！", "网格助手") == "ABC12，你好！"


@pytest.mark.parametrize(
    ("text", "words"), [("😀👍🎉", False), ("。。。！！", False), ("👍好的", True), ("ok", True), ("👨‍👩‍👧", False)]
)
def test_has_words(text: str, words: bool) -> None:
    assert has_words(text) is words
