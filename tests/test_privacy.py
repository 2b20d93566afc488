"""Phones and room numbers masked for groups, phones and secrets redacted in logs; ID card numbers
masked everywhere and the one policy of who sees residents' details on which surface (docs/security.md)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.logging_setup import LOG_FORMAT, QUIET_LIBRARIES, RedactingFilter, configure_logging, install_redaction
from bot.privacy import (
    Surface,
    mask_for_group,
    mask_id_numbers,
    mask_name,
    mask_person_id,
    mask_personal,
    mask_phones,
    mask_rooms,
    redact_for_log,
    redact_secrets,
    reporter_as_seen,
    sees_personal_data,
    text_as_seen,
)

# -- phones in groups ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我电话13812341234", "我电话138****1234"),
        ("电话是15012345678，白天都能打通", "电话是150****5678，白天都能打通"),
        ("13600001111 这是我电话", "136****1111 这是我电话"),
        ("微信同号：18698765432", "微信同号：186****5432"),
        ("号码 138 1234 5678 有事打我", "号码 138****5678 有事打我"),
        ("号码138-1234-5678", "号码138****5678"),
        ("联系+86 13812345678", "联系+86 138****5678"),
        ("联系+8613812345678", "联系+86138****5678"),
        ("联系0086-13812345678", "联系0086-138****5678"),
        ("手机：１３８１２３４５６７８", "手机：138****5678"),
        ("手机：１３８　１２３４　５６７８。", "手机：138****5678。"),
        ("两个号码13812345678、13987654321都行", "两个号码138****5678、139****4321都行"),
        ("我家座机010-12345678", "我家座机010-****5678"),
        ("家里电话0571-8888888", "家里电话0571-***8888"),
        ("打（0571）88886666找我", "打（0571）****6666找我"),
        ("座机057188886666", "座机0571****6666"),
        ("我家电话：88886666", "我家电话：****6666"),
    ],
)
def test_resident_phones_are_masked(text: str, masked: str) -> None:
    assert mask_for_group(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "已为您登记工单 GD20261125-0001",
        "办结 GD20261125-0123 已更换灯泡",
        "订单号202611251381234567890",
        "快递单号SF13812345678",
        "编号 A13812345678",
        "138123456789 是十二位，不是手机号",
        "拨打12345市民热线，或者110、119、95598",
        "全国客服400-123-4567",
        "2026年11月25日 8:30–11:30 每份15元",
        "高龄津贴80–89周岁每人每月100元",
        "咨询电话：0571-87654321",
        "24小时抢修电话0571-87654321",
        "物业电话 0571-88886666 有事找物业",
        "社保卡丢失请先拨打010-62345610挂失",
        "咨询电话：0000-12345601。",
    ],
)
def test_ids_hotlines_and_public_numbers_are_kept(text: str) -> None:
    assert mask_for_group(text) == text


def test_a_public_label_does_not_protect_a_mobile_or_a_later_clause() -> None:
    assert mask_for_group("咨询电话：13812345678") == "咨询电话：138****5678"
    assert mask_for_group("咨询电话是0571-87654321，我家是0571-88886666") == "咨询电话是0571-87654321，我家是0571-****6666"


def test_logs_mask_public_landlines_too() -> None:
    assert mask_phones("咨询电话：0571-87654321", keep_public=False) == "咨询电话：0571-****4321"


# -- rooms in groups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("3号楼2单元301室楼道灯坏了", "3号楼2单元***室楼道灯坏了"),
        ("3号楼2单元301", "3号楼2单元***"),
        ("３号楼２单元３０１室", "３号楼２单元***室"),
        ("三号楼二单元1202", "三号楼二单元****"),
        ("5栋1202漏水", "5栋****漏水"),
        ("5 栋 1202 漏水", "5 栋 **** 漏水"),
        ("B座1501门口", "B座****门口"),
        ("12幢3单元502室", "12幢3单元***室"),
        ("3栋2-301", "3栋2-***"),
        ("2单元301的住户", "2单元***的住户"),
        ("我家2-3-301", "我家2-3-***"),
        ("楼上1202室一直漏水", "楼上****室一直漏水"),
        ("楼下502房在装修", "楼下***房在装修"),
        ("3楼301门口堆满杂物", "3楼***门口堆满杂物"),
        ("幸福路88号1202", "幸福路88号****"),
        ("我是3号楼2单元301室的，电话13812345678", "我是3号楼2单元***室的，电话138****5678"),
    ],
)
def test_room_numbers_are_masked_building_and_unit_kept(text: str, masked: str) -> None:
    assert mask_for_group(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "3号楼2单元楼道灯坏了",
        "5栋门口垃圾没人清",
        "3楼楼道堆满杂物",
        "12层电梯坏了",
        "幸福路88号二楼",
        "3号楼1000元押金",
        "交了1200房租",
        "请到阳光社区居委会301室办理",
        "便民服务中心102室",
        "2026-11-25 下午",
        "GD20261125-0001",
        "3号楼2单元***室",
        "每份15元，80周岁以上补贴5元",
    ],
)
def test_places_without_a_room_are_kept(text: str) -> None:
    assert mask_rooms(text) == text


@pytest.mark.parametrize(
    "text",
    ["我是3号楼2单元301室的，电话 +86 138 1234 5678", "5栋1202漏水 座机010-12345678", "楼上1202室"],
)
def test_masking_is_idempotent(text: str) -> None:
    once = mask_for_group(text)
    assert mask_for_group(once) == once


# -- ID card numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("身份证号110101199003071234要带原件", "身份证号110***********1234要带原件"),
        ("身份证11010519491231002X", "身份证110***********002X"),
        ("身份证11010519491231002x。", "身份证110***********002x。"),
        ("证件号：１１０１０５１９４９１２３１００２Ｘ", "证件号：110***********002X"),
        ("身份证 110105 19491231 002X 复印件", "身份证 110*** ******** 002X 复印件"),
        ("身份证110105-19491231-0021", "身份证110***-********-0021"),
        ("老身份证号110105491231002", "老身份证号110********1002"),
        ("两位老人：110101193001011234、310104192812310016", "两位老人：110***********1234、310***********0016"),
        ("ID 110101199003071234.", "ID 110***********1234."),
    ],
)
def test_id_card_numbers_are_masked(text: str, masked: str) -> None:
    assert mask_id_numbers(text) == masked
    assert mask_for_group(text) == mask_personal(text) == redact_for_log(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "GD20261125-0001",
        "订单号202611251381234567890",  # 21 digits
        "银行卡6222021001115678901",  # 19 digits
        "流水号A110101199003071234",  # a letter before: part of a longer code
        "编号110101199013071234",  # month 13: not a birth date
        "编号110101199002321234",  # day 32
        "编号011010199003071234",  # a region code does not start with 0
        "110101199003071234567",
        "时间戳1733558400123",
        "110***********1234",
    ],
)
def test_numbers_that_are_not_id_cards_are_kept(text: str) -> None:
    assert mask_id_numbers(text) == text


# -- the one policy: who sees what, where ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "console", "report", "public"),
    [
        ("admin", True, True, False),
        ("worker", True, False, False),  # leads are worker accounts too
        ("viewer", False, False, False),
        (None, False, False, False),
    ],
)
def test_who_sees_personal_data_where(role: str | None, console: bool, report: bool, public: bool) -> None:
    seen = {surface: sees_personal_data(role, surface) for surface in Surface}
    assert seen == {Surface.CONSOLE: console, Surface.REPORT: report, Surface.PUBLIC: public}


def test_mask_personal_masks_what_a_group_may_keep() -> None:
    """A ticket's text is about one household: a landline labelled as public is masked too; a hotline never is."""
    text = "3号楼2单元301室漏水，物业电话0571-88886666打不通，电话13812345678，身份证110101199003071234，已打12345"
    assert mask_personal(text) == (
        "3号楼2单元***室漏水，物业电话0571-****6666打不通，电话138****5678，身份证110***********1234，已打12345"
    )
    assert "0571-88886666" in mask_for_group(text)
    assert text_as_seen(text, "admin", Surface.REPORT) == text
    assert text_as_seen(text, "admin", Surface.PUBLIC) == text_as_seen(text, "worker", Surface.REPORT) == mask_personal(text)
    done = "办结 GD20261125-0123 已更换灯泡，楼道灯在5号楼东侧"
    assert mask_personal(done) == done


@pytest.mark.parametrize(
    ("reporter_id", "name", "masked_id", "masked_name"),
    [
        ("open311:13812345678", "张三", "open311:13*******78", "张*"),
        ("wxid_xiaowang123", "居民小王", "wx************23", "居***"),
        ("resident-a1", "王", "re*******a1", "王"),
        ("abc", "", "***", ""),
        ("open311:hot", "12345热线", "open311:***", "1******"),
    ],
)
def test_reporters_are_masked_for_readers_who_do_not_handle_the_ticket(
    reporter_id: str, name: str, masked_id: str, masked_name: str
) -> None:
    assert (mask_person_id(reporter_id), mask_name(name)) == (masked_id, masked_name)
    assert (mask_person_id(masked_id), mask_name(masked_name)) == (masked_id, masked_name)  # idempotent
    assert reporter_as_seen(reporter_id, name, "viewer", Surface.CONSOLE) == (masked_id, masked_name)
    assert reporter_as_seen(reporter_id, name, "worker", Surface.CONSOLE) == (reporter_id, name)
    assert reporter_as_seen(reporter_id, name, "worker", Surface.REPORT) == (masked_id, masked_name)


# -- bot templates as they reach a group -----------------------------------------------------------------


def test_ticket_confirmation_keeps_number_category_and_building() -> None:
    from bot.texts import text as t

    reply = t("tickets.filed").format(
        number="GD20261125-0001",
        category="公共照明",
        location="3号楼2单元301室门口",
        worker_name="张敏",
        deadline="11月26日 18:00",
    )
    masked = mask_for_group(reply)
    assert "GD20261125-0001" in masked
    assert "3号楼2单元***室门口" in masked
    assert "11月26日 18:00" in masked


# -- secrets and logs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("WECHATY_PUPPET_SERVICE_TOKEN=puppet_workpro_0123456789abcdef", "WECHATY_PUPPET_SERVICE_TOKEN=***"),
        (
            "GET /cgi-bin/gettoken?corpid=ww01&corpsecret=AbC123xyz HTTP/1.1",
            "GET /cgi-bin/gettoken?corpid=ww01&corpsecret=*** HTTP/1.1",
        ),
        (
            "url=https://qyapi.weixin.qq.com/x?access_token=tok_abc.123&debug=1",
            "url=https://qyapi.weixin.qq.com/x?access_token=***&debug=1",
        ),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "Authorization: ***"),
        ("headers={'authorization': 'Basic dXNlcjpwYXNz', 'accept': '*/*'}", "headers={'authorization': '***', 'accept': '*/*'}"),
        (
            'targets=[{"name": "city", "url": "https://x", "secret": "s3cr3t!"}]',
            'targets=[{"name": "city", "url": "https://x", "secret": "***"}]',
        ),
        ("login password: hunter2 ok", "login password: *** ok"),
        ("OPEN311_API_KEYS=k1-abc,k2-def", "OPEN311_API_KEYS=***"),
        ("db postgresql+psycopg://gridbot:pa55w0rd@db:5432/gridbot", "db postgresql+psycopg://gridbot:***@db:5432/gridbot"),
        ("redis://:topsecret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("using token Bearer abcdefgh12345678", "using token Bearer ***"),
        ("X-GridBot-Signature: sha256=9f86d081884c7d65", "X-GridBot-Signature: ***"),
    ],
)
def test_secrets_are_redacted(text: str, masked: str) -> None:
    assert redact_secrets(text) == masked


@pytest.mark.parametrize(
    "text",
    ["postgresql://127.0.0.1:5432/test", "basic information 基本信息", "the tokens were 5", "sqlite:///var/gridbot.db"],
)
def test_text_without_secrets_is_kept(text: str) -> None:
    assert redact_secrets(text) == text


@pytest.fixture
def stream_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger writing through a real formatter into a buffer, with redaction installed as the app does."""
    previous = logging.getLogRecordFactory()
    install_redaction()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("gridbot.test.privacy")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logging.setLogRecordFactory(previous)


def test_a_log_line_with_a_phone_and_a_secret_comes_out_masked(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream_logger
    logger.info("resident %s called from %s with token=%s", "居民小王", "13812345678", "tok_0123456789")
    logger.info("connecting to %s", "postgresql://gridbot:pa55w0rd@db/gridbot")
    logger.warning("webhook %(name)s secret=%(secret)s", {"name": "city", "secret": "s3cr3t"})
    line = buffer.getvalue()
    assert "13812345678" not in line and "138****5678" in line
    assert "tok_0123456789" not in line and "token=***" in line
    assert "pa55w0rd" not in line and "gridbot:***@db" in line
    assert "s3cr3t" not in line and "webhook city secret=***" in line


def test_tracebacks_are_redacted(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream_logger
    try:
        raise ConnectionError("could not connect to redis://:topsecret@cache:6379 for 13812345678")
    except ConnectionError:
        logger.exception("failed")
    out = buffer.getvalue()
    assert "Traceback" in out and "ConnectionError" in out
    assert "topsecret" not in out and "13812345678" not in out


def test_non_string_args_keep_their_format(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream_logger
    logger.info("held %d messages, %.1f%% done", 3, 42.0)
    assert "held 3 messages, 42.0% done" in buffer.getvalue()


def test_uvicorn_access_lines_keep_args_for_its_formatter(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    """uvicorn's AccessFormatter unpacks record.args into five values: redaction must keep that shape."""
    from uvicorn.logging import AccessFormatter

    logger, buffer = stream_logger
    handler = logger.handlers[0]
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/x?token=abc123&phone=13812345678", "1.1", 200)
    out = buffer.getvalue()
    assert '"GET /x?token=***&phone=138****5678 HTTP/1.1" 200' in out


def test_caplog_sees_redacted_records(caplog: pytest.LogCaptureFixture) -> None:
    previous = logging.getLogRecordFactory()
    install_redaction()
    try:
        with caplog.at_level(logging.INFO, logger="bot.router"):
            logging.getLogger("bot.router").info("message from 13987654321: %s", "password=letmein")
    finally:
        logging.setLogRecordFactory(previous)
    assert caplog.messages == ["message from 139****4321: password=***"]


def test_the_filter_works_on_a_handler_alone() -> None:
    """Without the factory (a handler someone else configured), the filter on it still redacts."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("gridbot.test.privacy.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("api_key=%s phone %s", "sk-live-123456", "138 1234 5678")
    finally:
        logger.removeHandler(handler)
    assert buffer.getvalue().strip() == "api_key=*** phone 138****5678"


def test_redact_for_log_is_idempotent() -> None:
    line = "token=abc 13812345678 postgresql://u:p@h/db 咨询电话：0571-87654321 身份证11010519491231002X"
    once = redact_for_log(line)
    assert redact_for_log(once) == once
    assert "110***********002X" in once


def test_a_log_line_with_an_id_number_comes_out_masked(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = stream_logger
    logger.warning("filed for %s: %s", "11010519491231002X", "身份证 110105 19491231 002X")
    assert buffer.getvalue().strip().endswith("filed for 110***********002X: 身份证 110*** ******** 002X")


def test_the_app_installs_redaction_however_it_is_served() -> None:
    """create_app (what `gridbot serve`, `uvicorn --factory` and the embedded server all call) installs it."""
    from bot.app import create_app
    from bot.settings import Settings

    previous = logging.getLogRecordFactory()
    try:
        create_app(Settings())
        record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "call %s", ("13812345678",), None)
    finally:
        logging.setLogRecordFactory(previous)
    assert record.getMessage() == "call 138****5678"


def test_logging_set_up_quietens_per_request_library_lines_only() -> None:
    """httpx's INFO line for every call to Rasa is dropped; its warnings, and our own INFO lines, are kept."""
    before = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    try:
        configure_logging(logging.INFO)
        httpx_log = logging.getLogger("httpx")
        assert not httpx_log.isEnabledFor(logging.INFO)
        assert httpx_log.isEnabledFor(logging.WARNING)
        assert logging.getLogger("bot.router").getEffectiveLevel() == logging.getLogger().getEffectiveLevel()
        configure_logging(logging.DEBUG)  # debugging a deployment shows every request again
        assert httpx_log.isEnabledFor(logging.DEBUG)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
