"""Property-based tests (hypothesis) for the pure parts that face arbitrary resident text.

Each property is something that must hold for *any* input, not just the examples elsewhere in the suite:
the normaliser, the worker-command parser, the router's per-group decisions, privacy masking and the
splitting of long texts. Example counts are kept moderate so CI stays quick.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from datetime import time as dtime

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bot.channels.sender import split_text
from bot.commands import BARE_COMMANDS, COMMANDS_WITH_ARGS, TICKET_NUMBER, WorkerCommand, parse_command
from bot.expectations import Awaiting, MemoryExpectations
from bot.group_settings import GroupPolicy
from bot.normalise import NLU_MAX_CHARS, has_words, normalise
from bot.privacy import ID_CARD, MOBILE, mask_for_group, mask_personal, mask_phones, mask_rooms, redact_for_log
from bot.rasa_client import RasaClient
from bot.router import MessageRouter
from bot.settings import Settings
from tests.servers import FakeRasa

# GRIDBOT_PROPERTY_EXAMPLES=5000 for a deeper local run; CI keeps the default.
PROPS = settings(
    max_examples=int(os.environ.get("GRIDBOT_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
BOT_NAME = "网格助手"

# Text the way it arrives in WeChat groups: CJK, traditional characters, full-width forms, emoji,
# WeChat emoticons, quotes, mentions, dashes and odd whitespace, mixed with anything else unicode has.
_WECHAT_BITS = st.sampled_from(
    [
        "@网格助手\u2005",
        "@张三 ",
        "[强]",
        "[图片]",
        "「李四：楼道灯坏了」\n- - - - - - - - - - - - - - -\n",
        "👍",
        "🏠",
        "\u3000",
        "３号楼",
        "ＡＢＣ",
        "樓道燈壞了",
        "，",
        "。",
        "！",
        "？",
        "\n",
        "  ",
        "#助手",
        "小助手",
        "GD20261125-0001",
        "gd20261125-0002",
        "办结",
        "接单",
        "13812345678",
        "138 1234 5678",
        "+86 13912345678",
        "0571-88886666",
        "3号楼2单元301室",
        "5栋1202",
        "2-3-301",
        "１３８１２３４５６７８",
        "\u200d",
        "\ufe0f",
        "～",
    ]
)
wechat_text = st.lists(st.one_of(_WECHAT_BITS, st.text(max_size=12)), max_size=12).map("".join)
long_text = st.lists(st.one_of(_WECHAT_BITS, st.text(min_size=20, max_size=80)), min_size=5, max_size=12).map("".join)
_FULL_WIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u3000]")


# -- normaliser ------------------------------------------------------------------------------------------


@PROPS
@given(st.one_of(wechat_text, long_text))
@example("a" * (NLU_MAX_CHARS - 1) + " b")
def test_normalise_never_raises_and_keeps_its_promises(text: str) -> None:
    out = normalise(text, BOT_NAME)
    assert len(out) <= NLU_MAX_CHARS
    assert not _FULL_WIDTH_ALNUM.search(out), "full-width digits, letters or spaces left"
    assert out == out.strip(), "leading or trailing whitespace left"
    assert not re.search(r"\s\s", out), "whitespace runs not collapsed"
    assert f"@{BOT_NAME}" not in out


@PROPS
@given(st.one_of(wechat_text, long_text))
@example("a" * (NLU_MAX_CHARS - 1) + " b")
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text, BOT_NAME)
    assert normalise(once, BOT_NAME) == once


@PROPS
@given(wechat_text)
def test_normalise_never_invents_words(text: str) -> None:
    """Emoji, emoticons and punctuation only stay word-less: the bot never answers nothing as if it were a question."""
    if not has_words(text):
        assert not has_words(normalise(text, BOT_NAME))


@PROPS
@given(st.integers(0, 9).map(str), st.sampled_from(["号楼", "栋", "单元"]))
def test_full_width_digits_read_as_ascii(digit: str, word: str) -> None:
    full = chr(ord(digit) + 0xFEE0)
    assert normalise(f"{full}{word}", BOT_NAME) == f"{digit}{word}"


# -- worker-command parser -------------------------------------------------------------------------------

ticket_numbers = st.builds(
    lambda date, seq, lower: f"gd{date:08d}-{seq:04d}" if lower else f"GD{date:08d}-{seq:04d}",
    st.integers(20200101, 20991231),
    st.integers(1, 9999),
    st.booleans(),
)
# Free text after the number: anything without another ticket number in it.
command_text = st.text(max_size=40).filter(lambda s: TICKET_NUMBER.search(s) is None)
_TRAILING = " ：:，,。.!！?？"


@PROPS
@given(st.one_of(wechat_text, st.text(), st.sampled_from(list(COMMANDS_WITH_ARGS)).map(lambda w: w + "\n\t ")))
def test_parse_command_never_raises(text: str) -> None:
    command = parse_command(text)
    if command is not None:
        assert command.intent in {*COMMANDS_WITH_ARGS.values(), *BARE_COMMANDS.values()}
        message = command.as_rasa_message()
        assert message.startswith(f"/{command.intent}{{")
        payload = json.loads(message[len(command.intent) + 1 :])
        assert payload["command_text"] == command.text


@PROPS
@given(st.sampled_from(list(COMMANDS_WITH_ARGS)), ticket_numbers, command_text, st.sampled_from(["", " ", "  ", "：", "\u3000"]))
def test_a_command_with_a_ticket_number_round_trips(word: str, number: str, rest: str, gap: str) -> None:
    command = parse_command(f"{word}{gap}{number} {rest}")
    assert command == WorkerCommand(COMMANDS_WITH_ARGS[word], number.upper(), rest.strip(_TRAILING + " "))
    payload = json.loads(command.as_rasa_message()[len(command.intent) + 1 :])
    assert payload == {"command_text": command.text, "ticket_number": number.upper()}


@PROPS
@given(
    st.sampled_from(list(BARE_COMMANDS)),
    st.text(alphabet=_TRAILING + "\n\u3000", max_size=4),
    st.text(alphabet=" \n\u3000", max_size=3),
)
def test_bare_commands_are_whole_messages(word: str, trailing: str, leading: str) -> None:
    """As the router parses them: after normalisation (line breaks and full-width spaces folded)."""
    command = parse_command(normalise(f"{leading}{word}{trailing}", BOT_NAME))
    assert command == WorkerCommand(BARE_COMMANDS[word], None, "")


@PROPS
@given(
    st.sampled_from(list(BARE_COMMANDS)),
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=10),
)
def test_bare_command_words_inside_a_sentence_are_not_commands(word: str, more: str) -> None:
    """帮助我一下 / 我的工单怎么还没人管 are residents talking, not commands."""
    assert parse_command(f"{word}{more}") is None


@PROPS
@given(wechat_text)
def test_only_text_starting_with_a_command_word_is_a_command(text: str) -> None:
    command = parse_command(text)
    if command is not None:
        assert text.strip().startswith((*COMMANDS_WITH_ARGS, *BARE_COMMANDS))


# -- router decisions: per-group policy ------------------------------------------------------------------

prefixes = st.lists(st.text(min_size=1, max_size=5).filter(lambda p: p.strip() == p and p), min_size=1, max_size=4)
times = st.times().map(lambda t: t.replace(microsecond=0))


@PROPS
@given(prefixes, st.data())
def test_strip_prefix_finds_a_prefix_or_says_none(group_prefixes: list[str], data: st.DataObject) -> None:
    policy = GroupPolicy(tuple(group_prefixes), 0.85)
    text = data.draw(
        st.one_of(
            st.text(max_size=20), st.sampled_from(group_prefixes).flatmap(lambda p: st.text(max_size=20).map(lambda r: p + r))
        )
    )
    stripped = policy.strip_prefix(text)
    starts = [p for p in group_prefixes if text.startswith(p)]
    if not starts:
        assert stripped is None
    else:
        assert stripped == text[len(starts[0]) :].strip()
        assert stripped == stripped.strip()


@PROPS
@given(times, times, times)
def test_quiet_windows_and_their_complements_split_the_day(start: dtime, end: dtime, now: dtime) -> None:
    """22:00–07:00 and 07:00–22:00 cover every minute exactly once; an empty window is never quiet."""
    at = datetime.combine(datetime(2026, 11, 25).date(), now)
    window, complement = GroupPolicy((), 0.85, start, end), GroupPolicy((), 0.85, end, start)
    if start == end:
        assert not window.is_quiet(at)
    else:
        assert window.is_quiet(at) != complement.is_quiet(at)
    assert not GroupPolicy((), 0.85, None, end).is_quiet(at)


@PROPS
@given(st.one_of(wechat_text, st.text(max_size=30)))
def test_default_prefix_after_normalisation(text: str) -> None:
    """What the router does with "小助手 …": the prefix is found on the normalised text and stripped."""
    policy = GroupPolicy(Settings().command_prefixes, 0.85)
    normalised = normalise("小助手" + text, BOT_NAME)
    stripped = policy.strip_prefix(normalised)
    assert stripped is not None
    assert stripped == normalised[len("小助手") :].strip()


# -- router decisions: whether an unaddressed group message is worth answering ---------------------------


def _parse_answer(intent: str, confidence: float) -> dict[str, object]:
    return {"intent": {"name": intent, "confidence": confidence}, "entities": []}


@pytest.fixture(scope="module")
def fake_rasa() -> Iterator[FakeRasa]:
    """Stands in for Rasa's HTTP `/model/parse` (an external server): answers the intent set on it, counts calls."""
    fake = FakeRasa(_parse_answer("chitchat", 0.0))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def router(fake_rasa: FakeRasa) -> MessageRouter:
    """The real router and RasaClient, talking to the fake parse endpoint."""
    # unaddressed_parse uses only the settings, Rasa and the clock; the stores are not reached.
    return MessageRouter(Settings(), RasaClient(fake_rasa.url), MemoryExpectations(), deferred=None, policies=None)  # type: ignore[arg-type]


intents = st.sampled_from(
    [*Settings().request_intents, *Settings().chatter_intents, "rate_service", "answer_unhelpful", "nlu_fallback"]
)
awaitings = st.sampled_from([None, *Awaiting])


def _decide(
    router: MessageRouter,
    fake: FakeRasa,
    intent: str,
    confidence: float,
    awaiting: Awaiting | None,
    policy: GroupPolicy,
    now: datetime,
    parse: dict[str, object] | None = None,
) -> bool:
    fake.parse = parse or _parse_answer(intent, confidence)
    router.clock = lambda: now

    async def decide() -> bool:
        try:
            return await router.unaddressed_parse("楼道灯坏了", awaiting, policy) is not None
        finally:
            await router.rasa.aclose()  # each example runs on a loop of its own

    return asyncio.run(decide())


@PROPS
@given(intents, st.floats(0, 1), st.floats(0, 1), awaitings, st.booleans())
def test_more_confidence_never_silences_and_a_higher_threshold_never_speaks_more(
    router: MessageRouter, fake_rasa: FakeRasa, intent: str, c1: float, c2: float, awaiting: Awaiting | None, quiet: bool
) -> None:
    low, high = sorted((c1, c2))
    window = (dtime(22), dtime(7)) if quiet else (None, None)
    now = datetime(2026, 11, 25, 23, 30)
    lenient, strict = GroupPolicy((), low, *window), GroupPolicy((), high, *window)
    assert _decide(router, fake_rasa, intent, high, awaiting, lenient, now) >= _decide(
        router, fake_rasa, intent, low, awaiting, lenient, now
    )
    assert _decide(router, fake_rasa, intent, high, awaiting, strict, now) <= _decide(
        router, fake_rasa, intent, high, awaiting, lenient, now
    )


@PROPS
@given(intents, st.floats(0, 1), times)
def test_quiet_hours_silence_unasked_messages_without_asking_rasa(
    router: MessageRouter, fake_rasa: FakeRasa, intent: str, confidence: float, now: dtime
) -> None:
    policy = GroupPolicy((), 0.0, dtime(0), dtime(23, 59, 59))
    at = datetime.combine(datetime(2026, 11, 25).date(), now)
    assume(policy.is_quiet(at))
    before = fake_rasa.hits
    assert not _decide(router, fake_rasa, intent, confidence, None, policy, at)
    assert fake_rasa.hits == before


@PROPS
@given(intents, st.floats(0, 1), st.booleans())
def test_an_awaited_reply_is_judged_by_what_it_is(
    router: MessageRouter, fake_rasa: FakeRasa, intent: str, confidence: float, quiet: bool
) -> None:
    """Waiting for a rating, only a rating gets through; waiting for a location, anything but chatter does."""
    policy = GroupPolicy((), 0.85, dtime(22), dtime(7)) if quiet else GroupPolicy((), 0.85)
    now = datetime(2026, 11, 25, 23, 30)
    settings_ = Settings()
    assert _decide(router, fake_rasa, intent, confidence, Awaiting.RATING, policy, now) == (intent == "rate_service")
    assert _decide(router, fake_rasa, intent, confidence, Awaiting.FORM, policy, now) == (intent not in settings_.chatter_intents)


@PROPS
@given(intents, st.floats(0, 1), st.floats(0, 1), st.one_of(st.none(), st.floats(0, 1)))
def test_the_open_set_gate_only_ever_silences_an_unasked_message(
    router: MessageRouter, fake_rasa: FakeRasa, intent: str, confidence: float, threshold: float, score: float | None
) -> None:
    """Nothing awaited, outside quiet hours: the bot speaks exactly when the intent is a confident request AND the
    gate scores it a grid matter (no score, from a model without the gate: the intent alone decides). Awaited
    replies never consult the gate: a resident answering the bot's question is always heard."""
    policy, now = GroupPolicy((), 0.85), datetime(2026, 11, 25, 10, 0)
    gated = MessageRouter(Settings(grid_matter_threshold=threshold), router.rasa, MemoryExpectations(), None, None)  # type: ignore[arg-type]
    fake_rasa.parse = {**_parse_answer(intent, confidence), **({"grid_matter": {"score": score}} if score is not None else {})}
    gated.clock = lambda: now

    async def decide(awaiting: Awaiting | None) -> bool:
        try:
            return await gated.unaddressed_parse("楼道灯坏了", awaiting, policy) is not None
        finally:
            await gated.rasa.aclose()

    # Unasked, nothing that notifies a person, and no report without a place (this parse has no entities).
    helps = intent not in ("ask_human", "complain_service", "report_issue")
    confident_request = intent in Settings().request_intents and confidence >= 0.85 and helps
    assert asyncio.run(decide(None)) == (confident_request and (score is None or score >= threshold))
    assert asyncio.run(decide(Awaiting.FORM)) == (intent not in Settings().chatter_intents)


@pytest.mark.parametrize(
    ("intent", "entities", "speaks"),
    [
        ("report_issue", [{"entity": "location", "value": "3号楼"}], True),
        ("report_issue", [], False),  # the form would ask 请问具体在哪个位置 of someone who asked the bot nothing
        ("ask_human", [], False),  # would tell the worker on a guess
        ("complain_service", [], False),  # would tell the community lead on a guess
        ("ask_policy", [], True),  # the action stays silent itself when the knowledge base has no answer
    ],
)
def test_unasked_the_bot_speaks_only_where_it_surely_helps(
    router: MessageRouter, fake_rasa: FakeRasa, intent: str, entities: list[dict[str, str]], speaks: bool
) -> None:
    parse = {**_parse_answer(intent, 0.99), "entities": entities, "grid_matter": {"score": 0.99}}
    policy, now = GroupPolicy((), 0.85), datetime(2026, 11, 25, 10, 0)
    assert _decide(router, fake_rasa, intent, 0.99, None, policy, now, parse) is speaks
    assert _decide(router, fake_rasa, intent, 0.99, Awaiting.FORM, policy, now, parse)  # the reply it waited for: heard


# -- privacy masking -------------------------------------------------------------------------------------

_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
# Text without separators or full-width forms: masking may then only turn digits into stars, in place.
plain_text = st.lists(
    st.one_of(
        st.text(alphabet=st.one_of(_CJK, st.sampled_from("0123456789室房栋号楼单元座幢层#ABGD，。：:()（）+*")), max_size=15),
        st.sampled_from(
            ["13812345678", "8613912345678", "0571", "88886666", "3号楼2单元301室", "5栋1202", "GD20261125-0001", "咨询电话："]
        ),
        st.sampled_from(["110101199003071234", "11010519491231002X", "110105491231002"]),  # ID card numbers
    ),
    max_size=10,
).map("".join)


@PROPS
@given(plain_text)
def test_masking_only_turns_digits_into_stars(text: str) -> None:
    masked = mask_for_group(text)
    assert len(masked) == len(text)
    for before, after in zip(text, masked, strict=True):
        assert after == before or (before.isdigit() and after == "*"), (text, masked)


@PROPS
@given(st.one_of(plain_text, wechat_text))
def test_masking_is_idempotent(text: str) -> None:
    once = mask_for_group(text)
    assert mask_for_group(once) == once
    assert mask_phones(mask_phones(text, keep_public=False), keep_public=False) == mask_phones(text, keep_public=False)


@PROPS
@given(st.one_of(plain_text, wechat_text))
def test_no_mobile_is_left(text: str) -> None:
    masked = mask_for_group(text).translate({code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20})
    assert MOBILE.search(masked) is None


mobiles = st.builds(
    lambda head, body, prefix, sep, full: (
        _widen(f"{prefix}{head}{sep}{body[:4]}{sep}{body[4:]}") if full else f"{prefix}{head}{sep}{body[:4]}{sep}{body[4:]}"
    ),
    st.sampled_from(["13", "14", "15", "16", "17", "18", "19"]).flatmap(lambda p: st.integers(0, 9).map(lambda d: f"{p}{d}")),
    st.text(alphabet="0123456789", min_size=8, max_size=8),
    st.sampled_from(["", "+86", "+86 ", "86", "0086-"]),
    st.sampled_from(["", " ", "-"]),
    st.booleans(),
)
_boundary_text = st.text(alphabet=st.one_of(_CJK, st.sampled_from("，。：！ ")), max_size=10)


def _widen(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() or c == "+" else c for c in text)


@PROPS
@given(_boundary_text, mobiles, _boundary_text)
def test_every_mobile_between_words_is_masked(before: str, mobile: str, after: str) -> None:
    digits = re.sub(r"\D", "", mobile.translate({code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)}))[-11:]
    masked = mask_for_group(f"{before}{mobile}{after}")
    assert digits not in re.sub(r"\D", "", masked)
    assert f"{digits[:3]}****{digits[-4:]}" in masked


@PROPS
@given(st.lists(st.tuples(ticket_numbers.map(str.upper), _boundary_text), min_size=1, max_size=4), _boundary_text)
def test_ticket_numbers_are_never_touched(tickets: list[tuple[str, str]], start: str) -> None:
    text = start + "".join(f" {number} {words}" for number, words in tickets)
    masked = mask_for_group(text)
    for number, _ in tickets:
        assert number in masked


@PROPS
@given(
    st.sampled_from(["3号楼2单元", "三号楼二单元", "5栋", "12幢3单元", "B座", "3栋2-", "2-3-"]),
    st.integers(101, 3999),
    st.sampled_from(["", "室", "的住户", "门口"]),
)
def test_rooms_lose_their_digits_buildings_keep_theirs(place: str, room: int, tail: str) -> None:
    masked = mask_rooms(f"我家{place}{room}{tail}，灯坏了")
    assert masked == f"我家{place}{'*' * len(str(room))}{tail}，灯坏了"


# The one policy for public surfaces (docs/security.md): mask_personal keeps the same promises as mask_for_group.


@PROPS
@given(plain_text)
def test_personal_masking_only_turns_digits_into_stars(text: str) -> None:
    masked = mask_personal(text)
    assert len(masked) == len(text)
    for before, after in zip(text, masked, strict=True):
        assert after == before or (before.isdigit() and after == "*"), (text, masked)


@PROPS
@given(st.one_of(plain_text, wechat_text))
def test_personal_masking_is_idempotent_and_leaves_no_mobile_or_id(text: str) -> None:
    once = mask_personal(text)
    assert mask_personal(once) == once
    assert redact_for_log(redact_for_log(text)) == redact_for_log(text)
    folded = once.translate({code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20})
    assert MOBILE.search(folded) is None and ID_CARD.search(folded) is None


@PROPS
@given(st.lists(st.tuples(ticket_numbers.map(str.upper), _boundary_text), min_size=1, max_size=4), _boundary_text)
def test_personal_masking_never_touches_ticket_numbers(tickets: list[tuple[str, str]], start: str) -> None:
    masked = mask_personal(start + "".join(f" {number} {words}" for number, words in tickets))
    assert all(number in masked for number, _ in tickets)


id_cards = st.builds(
    lambda region, day, seq, check: f"{region}{day:%Y%m%d}{seq:03d}{check}",
    st.integers(110000, 659999).map(str),
    st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2025, 12, 31).date()),
    st.integers(0, 999),
    st.sampled_from("0123456789X"),
)


@PROPS
@given(_boundary_text, id_cards, _boundary_text)
def test_every_id_card_between_words_is_masked(before: str, number: str, after: str) -> None:
    shown = f"{number[:3]}{'*' * 11}{number[-4:]}"
    for mask in (mask_personal, mask_for_group, redact_for_log):
        masked = mask(f"{before}{number}{after}")
        assert number not in masked and shown in masked, mask


# -- splitting long texts for a channel ------------------------------------------------------------------

_MARKER = re.compile(r"（(\d+)/(\d+)）$")


@PROPS
@given(
    st.one_of(
        long_text,
        st.text(max_size=600),
        st.lists(st.sampled_from(["楼道灯坏了。", "\n", "，", " ", "好" * 50]), max_size=40).map("".join),
    ),
    st.integers(29, 400),
)
def test_split_parts_fit_and_keep_every_character(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(len(part) <= limit for part in parts)
    if len(text) <= limit:
        assert parts == [text]
        bodies = parts
    else:
        numbers = [_MARKER.search(part) for part in parts]
        assert [(int(m[1]), int(m[2])) for m in numbers if m] == [(i, len(parts)) for i in range(1, len(parts) + 1)]
        bodies = [_MARKER.sub("", part) for part in parts]
    assert re.sub(r"\s", "", "".join(bodies)) == re.sub(r"\s", "", text)


@PROPS
@given(st.text(min_size=1, max_size=60), st.integers(1, 28))
def test_split_refuses_limits_too_small_for_markers(text: str, limit: int) -> None:
    if len(text) <= limit:
        assert split_text(text, limit) == [text]
    else:
        with pytest.raises(ValueError):
            split_text(text, limit)
