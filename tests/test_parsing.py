"""Pure text handling: worker commands, ratings, categories, normalisation."""

from __future__ import annotations

import json

import pytest

from bot.commands import parse_command
from bot.normalise import NLU_MAX_CHARS, has_words, normalise
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


@pytest.mark.parametrize(
    "text", ["你好", "高龄补贴怎么申请", "帮助我一下 楼道灯坏了", "我的工单呢", "上报一下 路灯坏了", "查询一下低保"]
)
def test_non_commands(text: str) -> None:
    assert parse_command(text) is None


@pytest.mark.parametrize(
    ("text", "intent", "number"),
    [
        ("接单 GD20261125-0002", "worker_accept", "GD20261125-0002"),
        ("我的工单", "worker_list", None),
        ("帮助！", "worker_help", None),
        ("办结", "worker_resolve", None),
        ("转派 GD20261125-0003 李强 不在我片区", "worker_transfer", "GD20261125-0003"),
        ("上报 GD20261125-0003 城管执法局", "worker_escalate", "GD20261125-0003"),
        ("退回 GD20261125-0003 不归我管", "worker_return", "GD20261125-0003"),
        ("查询 GD20261125-0003", "worker_query", "GD20261125-0003"),
    ],
)
def test_other_commands(text: str, intent: str, number: str | None) -> None:
    command = parse_command(text)
    assert command is not None and (command.intent, command.ticket_number) == (intent, number)


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


def test_safety_words_outrank_the_nlu_hint() -> None:
    found = classify("8号楼楼下的井盖丢了 很危险", "市政设施")
    assert (found.name, found.colour) == ("安全隐患", "red")
    assert classify("8号楼楼下的井盖丢了", "市政设施").name == "市政设施"


def test_category_hint_must_be_known() -> None:
    assert classify("路灯坏了", "噪音扰民").name == "噪音扰民"
    assert classify("路灯坏了", "火星").name == "市政设施"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("@网格助手\u2005 ３号楼　楼道灯坏了", "3号楼 楼道灯坏了"),
        ("ＡＢＣ１２，你好！", "ABC12，你好！"),
        ("樓道燈壞了 請儘快處理", "楼道灯坏了 请尽快处理"),
        ("「张三：明天停水吗」\n- - - - - - - - - - - - - - -\n@网格助手 真的停水吗", "真的停水吗"),
        ('"王阿姨：好的"\n- - - - - - - - - - - - - - -\n楼下有人摆摊', "楼下有人摆摊"),
        ("@李四\u2005@网格助手\u2005路灯坏了😭[捂脸]", "路灯坏了"),
        ("👨\u200d👩\u200d👧 好可爱", "好可爱"),
        ("[强][玫瑰]", ""),
    ],
)
def test_normalise(raw: str, normalised: str) -> None:
    assert normalise(raw, "网格助手") == normalised


def test_normalise_caps_forwarded_walls_of_text() -> None:
    assert normalise("转发" * 1000, "网格助手") == "转发" * (NLU_MAX_CHARS // 2)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("😀👍🎉", False),
        ("。。。！！", False),
        ("👍好的", True),
        ("ok", True),
        ("[强][玫瑰]", False),
        ("👨‍👩‍👧", False),
        ("[强][玫瑰]", False),
    ],
)
def test_has_words(text: str, words: bool) -> None:
    assert has_words(text) is words
