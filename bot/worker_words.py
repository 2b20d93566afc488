"""A grid worker's own words in private chat → the command they mean, with the ticket taken from context.

Workers are on their feet and often dictate: `收到`, `好的马上去`, `处理好了 换了阀门`, `0123那个弄好了`,
`这个不归我们网格`. Nobody remembers `办结 GD20261207-0123 结果`, so the exact commands (bot/commands.py) are
only one way in. This module has one job: read what a known worker typed, against what is on their desk
(their open tickets, the one notified last, what they quoted, a question the bot just asked), and say which
command it is and on which ticket — or which question to ask back. No database, no I/O: bot/worker_desk.py
gathers the context and carries the result out; bench/worker_words.py measures it (`make bench-workers`).

What: a compact rule set over normalised text, because the vocabulary is small and closed (acknowledgements,
completion verbs + 了, negations and "almost" that make a completion not one, questions about their work,
transfer/escalate/return words) and a rule's mistake can be read and fixed; the e5 sentence model was tried as a
fallback for what the rules leave and did not pay (docs/tickets.md, "Workers in their own words").

Which ticket, in order: a full number in the words; the number in a quoted bot notice; a short number (the last
4 digits) unique among their open tickets; the ticket's own words (`电梯那个`) naming one of them; then its
state — the one in progress for a completion, the one just notified for an acknowledgement. When two still fit,
the answer is a question with numbered choices: resolving the wrong ticket tells the wrong resident their
problem is fixed, so a completion never guesses.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache

from bot.choices import NONE_OF_THEM, parse_choice
from bot.commands import BARE_COMMANDS, COMMANDS_WITH_ARGS, parse_command
from grid.categories import load_categories


class Act(StrEnum):
    ACCEPT = "accept"
    RESOLVE = "resolve"
    TRANSFER = "transfer"
    ESCALATE = "escalate"
    RETURN = "return"
    QUERY = "query"
    LIST = "list"
    HELP = "help"  # not understood: the worker's commands, never the residents' texts
    ASK = "ask"  # a question back (which ticket, which department…); nothing changes
    NOTED = "noted"  # progress on a ticket already being handled (在路上了, 还没修好): acknowledged, nothing changes
    EVIDENCE = "evidence"  # the pick of which ticket a photo or a voice note belongs to (bot/worker_evidence.py)
    BRIEFING = "briefing"  # 简报, 昨天怎么样: yesterday's numbers of their grid or community (bot/worker_day.py)
    MORNING_ON = "morning_on"  # 开启早报: the morning digest each day
    MORNING_OFF = "morning_off"  # 关闭早报


# The Rasa intent each act is sent as (domain.yml); the other acts (ASK, NOTED, EVIDENCE, BRIEFING, MORNING_…) are
# answered by the app itself (bot/worker_desk.py).
INTENTS: dict[Act, str] = {
    Act.ACCEPT: "worker_accept",
    Act.RESOLVE: "worker_resolve",
    Act.TRANSFER: "worker_transfer",
    Act.ESCALATE: "worker_escalate",
    Act.RETURN: "worker_return",
    Act.QUERY: "worker_query",
    Act.LIST: "worker_list",
    Act.HELP: "worker_help",
}
_ACT_OF_INTENT = {intent: act for act, intent in INTENTS.items()}

# Ticket states (grid/workflow.py values), as far as the words care.
AWAITING = frozenset({"dispatched", "transferred", "reopened"})  # sent to the worker, not taken yet: 接单 applies
IN_PROGRESS = frozenset({"in_progress"})
WITH_WORKER = AWAITING | IN_PROGRESS  # transfer / escalate apply
RESOLVABLE = WITH_WORKER | {"escalated"}


@dataclass(frozen=True)
class DeskTicket:
    """One of the worker's open tickets, as much of it as the words can refer to."""

    number: str
    status: str
    category: str = ""
    location: str = ""
    description: str = ""

    @property
    def short(self) -> str:
        """The last 4 digits, the number workers actually say."""
        return self.number[-4:]


@dataclass(frozen=True)
class Pending:
    """A question the bot asked this worker with numbered choices; the act waits for the pick."""

    act: Act
    text: str
    numbers: tuple[str, ...]
    # Pictures sent while the question was open: they go to the ticket picked, whatever the act.
    photos: tuple[str, ...] = ()


@dataclass(frozen=True)
class Desk:
    """What the worker has in hand when they speak: open tickets, the last one they were told about, names."""

    tickets: tuple[DeskTicket, ...] = ()
    last_notified: str | None = None
    workers: tuple[str, ...] = ()  # names (and ids) a transfer may name
    departments: tuple[str, ...] = ()  # names an escalation may name

    def get(self, number: str | None) -> DeskTicket | None:
        return next((x for x in self.tickets if x.number == number), None)

    def having(self, statuses: frozenset[str]) -> list[DeskTicket]:
        return [x for x in self.tickets if x.status in statuses]


@dataclass(frozen=True)
class Reading:
    """What the words mean: an act, on a ticket, with its text (result, "李强 原因"…); or a question back.

    For ASK, `choices` are the ticket numbers offered (possibly none) and `why` names the question; for NOTED,
    `number` is the ticket acknowledged, if one.
    """

    act: Act
    number: str | None = None
    text: str = ""
    choices: tuple[str, ...] = ()
    why: str = ""

    @property
    def intent(self) -> str | None:
        return INTENTS.get(self.act)

    def pending(self) -> Pending | None:
        """The choice to remember when this reading asks which ticket."""
        if self.act is not Act.ASK or not self.choices or self.why not in _PENDING_ACTS:
            return None
        return Pending(_PENDING_ACTS[self.why], self.text, self.choices)


# An ASK's `why` is "which_<act>" when a pick completes that act.
_PENDING_ACTS = {
    f"which_{act.value}": act
    for act in (Act.ACCEPT, Act.RESOLVE, Act.TRANSFER, Act.ESCALATE, Act.RETURN, Act.QUERY, Act.EVIDENCE)
}


# --- normalisation and ticket references ------------------------------------------------------------------------

_PUNCT = re.compile(r"[\s\W_]+")  # CJK, letters and digits are \w; everything else separates
_CLAUSE = re.compile(r"[\s,，。.;；!！?？、~～…:：]+")
_FULL_NUMBER = re.compile(r"(?:gd)?\s*(?<!\d)(20\d{6})\s*[-－—_ ]\s*(\d{4})(?!\d)|gd\s*(20\d{6})(\d{4})(?!\d)", re.IGNORECASE)
# A 3–4 digit run standing alone; a unit after it makes it a room, a floor, an amount — not a ticket.
_SHORT = re.compile(
    r"(?<![\d.])(\d{3,4})(?![\d.])(?!\s*(?:室|房|户|号楼|栋|幢|单元|元|块|米|平|层|楼|个|人|年|月|日|点|分|斤|度))"
)
# What makes a 3–4 digit run a ticket reference even when no open ticket has it: the word for one before it.
_REF_MARK = re.compile(r"(?:尾号|单号|工单号?|编号|号码|#|办结|接单|转派|上报|退回|查询|查)\s*$")
_MARK_CHARS = "号单"


def clean(text: str) -> str:
    """NFKC (full-width digits and letters) and a typo voice input and hurried typing share: 以 for 已. Case and
    punctuation stay: the result is cut from this text and read by the resident."""
    folded = unicodedata.normalize("NFKC", text).strip()
    folded = re.sub(r"以(?=经|处理|修|弄|办|完成|解决|搞|整|清|更换|换|联系)", "已", folded)
    folded = re.sub(r"处里(?=好|完|了)", "处理", folded)  # 里/理, 号/好: the pinyin input's neighbours
    return re.sub(r"(?<=修|弄|搞|办|整)号(?=了)", "好", folded)


def compact(text: str) -> str:
    """The words without spaces and punctuation, lower case: what the patterns match (dictation punctuates at random)."""
    return _PUNCT.sub("", text).lower()


def full_numbers(text: str) -> list[str]:
    """Ticket numbers written out (GD20261207-0123, gd 20261207 0123, 20261207-0123), as stored."""
    found = []
    for m in _FULL_NUMBER.finditer(unicodedata.normalize("NFKC", text)):
        day, seq = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        found.append(f"GD{day}-{seq}")
    return found


@dataclass(frozen=True)
class _Short:
    digits: str
    marked: bool  # 尾号/单号/a command word before it: meant as a ticket even if none matches
    span: tuple[int, int]


def _shorts(text: str) -> list[_Short]:
    """3–4 digit runs that may be short ticket numbers (a room or an amount is not)."""
    shorts = []
    for m in _SHORT.finditer(text):
        before = text[: m.start()]
        marked = bool(_REF_MARK.search(before)) or text[m.end() : m.end() + 1] in _MARK_CHARS
        if len(m.group(1)) == 3 and not marked:
            continue  # 3 digits alone are rooms (302) more often than tickets
        shorts.append(_Short(m.group(1), marked, m.span()))
    return shorts


def _strip_spans(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + " " + text[end:]
    return text


# --- the words ---------------------------------------------------------------------------------------------------

# Verbs of doing the work. A result on them (好/完/妥/定…) makes a completion: 修好(了), 处理完, 清理干净了, 劝走了.
_WORK = (
    r"(?:维修|修理|修复|检修|修|弄|搞|处理|处置|办理|办|整改|整|做|清理|清运|清扫|打扫|清|疏通|通|解决|更换|换|安装|装|"
    r"收拾|拆除|拆|挪|移|协调|调解|落实|回复|答复|加固|补|填|焊|关|救|劝|恢复|完成|运|拉)"
)
# The verbs whose bare 了 already says it is done (处理了, 换了阀门); 弄了/搞了/拉了/关了 say too little.
_WORK_LE = (
    r"(?:维修|修理|修复|检修|修|处理|处置|办理|办|整改|清理|清运|清扫|打扫|清|疏通|通|解决|更换|换|安装|装|收拾|拆除|拆|"
    r"挪|落实|回复|答复|加固|补|填|焊|恢复|完成)"
)
_RESULT = r"(?:好|完|妥|定|掂|顶|利索|干净|完毕|完成|掉|走|通|亮|出来|出|上|住|平)"
_LE = r"(?:了|啦|咯|喽|嘞|拉|le|la|哒)"
_COMPLETIONS = [
    re.compile(rf"{_WORK}{_RESULT}(?:{_LE}|的)?"),  # 修好(了), 处理完(了), 清理干净了, 拆掉了
    re.compile(rf"{_WORK_LE}{_LE}"),  # 处理了, 换了 (阀门)
    re.compile(rf"已经?(?:{_WORK_LE}|协调|调解)"),  # 已处理, 已经更换, 已修
    re.compile(
        r"搞定|搞掂|完事|完工|收工|完活|弄妥|办结|ok了|okay了|没问题了|恢复正常|正常了|不漏了|不漏水了|不响了|不堵了|不吵了|"
        r"不臭了|不冒烟了|已救出|救出来了|亮了|清走了|拉走了|运走了|挪走了|结束了|已经好了|都好了|全好了|早就好了|"
        r"来水了|有水了|来电了|有电了|通水了|通电了|来气了"
    ),
]
# A completion word after these is not one: 还没修好, 没弄完, 未处理, 不能处理.
_NEGATION = re.compile(r"(?:没|未|不|别|无法|没法|没办法|不能|没能|不了)(?:有)?(?:能|法)?$")
# Nor after these: it is about to be, or will be (快修好了, 明天弄好, 争取今天处理完).
_NOT_YET = re.compile(
    r"(?:快|快要|马上|马上就|就要|差不多|争取|尽快|尽量|明天|后天|下午|上午|晚上|今晚|晚点|一会|一会儿|过会|待会|等会|"
    r"稍后|回头|准备|打算|计划|要|会|能|得|等|在|正在)(?:就|能|会|把|给|再)?$"
)
# Nor before these: a condition (修好了告诉你, 弄好了再说).
_CONDITION_AFTER = re.compile(r"^(?:告诉|跟你说|和你说|再|就|回复你|通知你|给你|发你|我说)")
_QUESTION_END = re.compile(r"(?:吗|么|嘛|没有?|不|呢|了没|好没)$")
# Not finished, but on it: 在路上, 正在修, 已到现场, 联系了物业, 还没修好, 等配件.
_PROGRESS = re.compile(
    r"在路上|路上了|正在|在修|在弄|在处理|在搞|在赶|赶过去|在协调|在联系|在排查|在看|在检查|在现场|到现场|已到|到了|"
    r"联系了|已联系|已经联系|打了电话|打过电话|电话联系|等配件|等材料|等师傅|等物业|等回复|等厂家|等零件|等他们|"
    r"还没|没修|没弄|没处理|没搞|没好|没完|快好|快完|快修|快弄|快处理|差不多|先去|去看了|看过了|看了下|看了一下|排查|"
    r"查看了|了解了|核实|沟通|上门了|已上门|处理中|进行中|(?:修|弄|办|搞|处理)不(?:好|了|完|定)|来不及|"
    r"(?:明天|后天|下午|上午|晚上|晚点|一会|过会|待会|等会|稍后|吃完饭)(?:就|再|一早就?|上午|下午)?"
    r"(?:去|过去|来|到|修|弄|处理|看|继续|接着)"
)
# Taking it on: 收到, 好的, 马上去, 我来, 接了. `中`, `行`, `受到` (voice input's 收到) only as the whole message.
_ACK = re.compile(
    r"收到|收道|首到|好的|好滴|好哒|好嘞|好咧|好哩|得嘞|ok|okay|okk|(?<!不)知道|(?<!不)明白|(?<!不)了解|(?<!不)晓得|要得|"
    r"没问题|木问题|没得问题|遵命|马上|这就|立刻|立即|现在就?去|现在过去|我去|我来|我接|接了|接单|接下|出发|去看看|"
    r"过去看看|过去|这就去|去现场|安排|我处理|交给我|包在我|放心|(?<!不)可以|嗯嗯|好好"
)
_ACK_WHOLE = re.compile(r"^(?:中|行|受到|嗯|恩|哦|噢|1|11|好|好了|好啦|对|是|是的|妥|妥了|嗯呐|收)$")
_LIST = re.compile(
    r"我的工单|待办|还有(?:几|多少|啥|什么|哪些|没有)|有(?:啥|什么|几|多少|哪些|没有)(?:个|件|单|新的?)?(?:工单|单子|活|事|任务)?"
    r"(?:要|需要|待|没|得|该)(?:办|处理|干|做|弄|跑)|今天(?:的)?(?:工单|任务|活)|手(?:上|里|头)(?:还)?(?:有|剩)|还剩|没办的|没处理的|"
    r"未办结|在办的|进行中的|新单子?|新工单|有活|啥活|什么活|工单列表|单子(?:列表|有哪些|还有)|多少单|几单|几个单|"
    r"(?:今天|今日|这周|本周)(?:有|要)(?:啥|什么|哪些)|有(?:啥|什么)要办|我的(?:单子|任务|待办)|"
    r"有(?:几|多少|哪些|啥|什么)(?:个|件|张)?(?:工单|单子|任务)"
)
# The day's overview: yesterday's numbers (a lead's briefing) — asked any time; the morning digest turned on and off.
_BRIEFING = re.compile(
    r"简报|日报|昨天(?:的)?(?:怎么样|咋样|如何|情况|数据|战况|成绩|办了多少|办结了?多少|多少单)|昨日(?:的)?(?:情况|数据|简报)|"
    r"社区(?:的)?(?:情况|数据)(?:怎么样|咋样|如何)?$"
)
_REPORTS = r"(?:早报|晨报|日报|简报|每日提醒|早上(?:的)?(?:提醒|消息|推送))"
_MORNING_OFF = re.compile(
    rf"(?:关闭|关掉|关了|取消|退订|停止|停掉|停发|不要|不用|不需要|别)(?:再)?(?:发|推)?(?:了)?(?:每天|每日)?(?:早上)?(?:的)?{_REPORTS}|"
    rf"{_REPORTS}(?:关闭|关掉|关了|停了|停掉|不要了|不用了|不用发了|别发了|取消)|(?:每天)?早上(?:别|不用|不要)(?:再)?(?:给我)?(?:发|推)"
)
_MORNING_ON = re.compile(
    rf"(?:开启|打开|开通|订阅|开一下)(?:每天|每日)?(?:早上)?(?:的)?{_REPORTS}|{_REPORTS}(?:开启|打开|开一下|订阅)|"
    r"(?:我要|要)(?:每天|每日)(?:早上)?(?:的)?(?:早报|晨报|简报|日报)|(?:我要|要)(?:早报|晨报)|"
    r"(?:每天|每日)(?:早上|早晨|上午)?(?:给我|帮我)?(?:发|推|提醒)(?:一下|我)?(?:今天|当天)?(?:的)?(?:工单|待办|简报|早报|任务)"
)
_HELP = re.compile(
    r"^(?:帮助|帮忙|怎么用|咋用|怎么操作|使用说明|说明|命令|指令|格式|help|菜单|功能|怎么(?:办结|接单|转派|上报|退回|回复))"
)
_RETURN = re.compile(
    r"退回|退单|退了|退掉|退给|不归我|不归我们|不是我(?:的|们)?(?:的)?(?:片区|网格|辖区|负责|管|这边|这里|这片)|不属于(?:我|本|咱)|"
    r"派错|分错|发错|不在我(?:们)?(?:的)?(?:片区|网格|辖区)|不是我们(?:这|这边|这里|小区|社区)的|不是咱(?:们)?(?:这|网格|片区)|"
    r"不该我|不该派给我|管不着|不是本网格|非本网格|重新派"
)
_TRANSFER_VERB = re.compile(r"(?:转派给|转派|转给|转交给|转交|交给|移交给|移交|派给|转一下|转下|转|交|给|让|请|叫)$")
_TRANSFER_AFTER = re.compile(r"^(?:负责|处理|那边|去弄|去处理|去|来|管|的片区|片区|网格|的网格|的)")
_TRANSFER_OPEN = re.compile(r"(?:转派给|转给|转交给|交给|移交给|派给)([\u4e00-\u9fff]{2,3})")
_ESCALATE_VERB = re.compile(r"上报|报给|报到|报送|报|提交给|提交|反映给|转给|转到|交给|移交|需要|得找|要找|找|让|请|归|属于|是")
_ESCALATE_AFTER = re.compile(r"^(?:来|处理|解决|负责|管|出面|执法|介入|的事|的活|的问题)")
_ESCALATE_BARE = re.compile(r"上报|往上报|报上去|报上级|乡呼县应|报部门|需要部门")
_QUERY = re.compile(
    r"什么情况|啥情况|咋回事|怎么回事|详情|详细|查询|查一下|查下|查查|(?<!去)(?<!过去)(?<!我去)看一下|(?<!去)看看|进度|记录|在哪|"
    r"哪里|哪儿|是哪|哪个小区|"
    r"谁报的|谁反映|什么事|啥事|电话多少|联系方式|报告人|具体位置|地址"
)
# On the way: 过去看一下什么情况 is going, not asking.
_GOING = re.compile(r"过去|马上|这就|现在就?去|立刻|立即|出发|我去|去看")
# Department names people shorten: the stem (城管执法局 → 城管执法, 城管), plus a few everyday names.
_DEPT_SUFFIX = re.compile(r"(?:执法局|局|公司|办事处|办|中心|站|所|队|委员会|委|部门)$")
_DEPT_SYNONYMS = {"自来水": "水务", "水司": "水务", "电力": "供电", "电业": "供电", "国网": "供电", "电网": "供电",
                  "煤气": "燃气", "天然气": "燃气", "房管": "住建", "执法": "城管", "街道": "街道办"}
# Words of the trade that say nothing about which ticket (both 楼道灯 tickets "坏了").
_GENERIC = frozenset(
    {"居民", "反映", "问题", "一下", "已经", "处理", "现在", "这个", "那个", "有人", "好几", "几天", "今天", "师傅", "物业",
     "小区", "网格", "工单", "坏了", "不好", "好了", "一直", "总是", "没有", "不能", "麻烦", "希望", "尽快", "请问", "我们",
     "他们", "楼下", "楼上", "附近", "旁边", "门口", "里面", "外面", "那边", "这边", "修好", "弄好", "处理好"}
)
_FILLER = re.compile(
    r"^(?:那个|这个|这单|那单|这件事|那件事|工单|单子|的|了|已经|都|也|就|我|我们|哈|啊|呀|吧|嗯|哦|好的|好|收到)+"
    r"|(?:了|啦|哈|啊|呀|吧|哦)+$"
)


class Said(StrEnum):
    DONE = "done"  # 修好了, 已处理
    ASKED = "asked"  # 修好了吗: a question about it
    NOT_YET = "not_yet"  # 还没修好, 快好了, 修好了告诉你: on it, not done


def _completion(c: str) -> tuple[Said, re.Match[str]] | None:
    """The first completion in the compact text that is neither negated, nor still to come, nor a question; else
    what the completion words said instead (a question, not yet), or None when there are none."""
    other: tuple[Said, re.Match[str]] | None = None
    for pattern in _COMPLETIONS:
        for m in pattern.finditer(c):
            before, after = c[: m.start()][-4:], c[m.end() :]
            if re.fullmatch(rf"{_WORK_LE}{_LE}", m.group(0)) and not after and len(c) <= 3:
                continue  # 换了 alone is no report; 换了阀门 is
            if _NEGATION.search(before) or _NOT_YET.search(before) or _CONDITION_AFTER.match(after):
                other = other or (Said.NOT_YET, m)
            elif _QUESTION_END.match(after) and len(after) <= 2:
                other = other or (Said.ASKED, m)  # 修好了吗
            else:
                return Said.DONE, m
    return other


@cache
def _dept_aliases(departments: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(alias, full name), longest alias first so 城管执法局 beats 城管."""
    pairs: list[tuple[str, str]] = []
    for name in departments:
        stem = _DEPT_SUFFIX.sub("", name) or name
        for alias in {name, stem, stem[:2]}:
            if len(alias) >= 2:
                pairs.append((alias, name))
        for word, short in _DEPT_SYNONYMS.items():
            if short in (stem, stem[:2], name) or name.startswith(short):
                pairs.append((word, name))
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))


def _department(c: str, desk: Desk) -> tuple[str, int, int] | None:
    """A department named in the compact text: (full name, start, end)."""
    for alias, name in _dept_aliases(desk.departments):
        at = c.find(alias)
        if at >= 0:
            return name, at, at + len(alias)
    return None


def _worker_named(c: str, desk: Desk) -> tuple[str, int, int] | None:
    for name in sorted(desk.workers, key=len, reverse=True):
        at = c.find(name.lower())
        if name and at >= 0:
            return name, at, at + len(name)
    return None


# --- which ticket ------------------------------------------------------------------------------------------------


def _tokens(text: str) -> set[str]:
    """Character bigrams of the Chinese runs and numbers with their unit (3号, 12栋): what a ticket is about."""
    tokens: set[str] = set()
    for run in re.findall(r"[\u4e00-\u9fff]+", text):
        tokens.update(run[i : i + 2] for i in range(len(run) - 1))
    tokens.update(m.group(0) for m in re.finditer(r"(?<!\d)\d{1,4}[\u4e00-\u9fff]", text))
    return tokens - _GENERIC


def _by_content(text: str, tickets: list[DeskTicket]) -> list[DeskTicket]:
    """The tickets whose own words (place, description) the message uses, by words no other ticket has."""
    said = _tokens(text)
    own = {x.number: _tokens(f"{x.location} {x.description}") for x in tickets}
    hits = []
    for ticket in tickets:
        others = set().union(*(own[o.number] for o in tickets if o.number != ticket.number))
        if said & (own[ticket.number] - others):
            hits.append(ticket)
    return hits


# "电梯那个", "3号楼的那单", "东门那边的": a ticket named by what it is about.
_POINTING = re.compile(r"([\u4e00-\u9fff\d]{2,8})(?:的)?(?:那个|那单|那件|那户|那家|那边的|那里的|这个单|那个单)")


def _points_at_something(text: str, desk: Desk) -> bool:
    """The words name a ticket by its subject (电梯那个); when that subject is on none of the worker's tickets, state
    alone must not pick one: it would resolve the one in progress for a lift that is someone else's. A colleague's
    or a department's name before 那边 is no subject."""
    for name in (*desk.workers, *desk.departments):
        text = text.replace(name, " ")
    return any(_tokens(m.group(1)[-4:]) for m in _POINTING.finditer(text))


# Category keywords that name who does the work or a circumstance, not what a ticket is about.
_NOT_SUBJECTS = frozenset({"物业", "邻居", "危险", "卫生", "占用"})


@cache
def _subjects() -> tuple[tuple[str, str], ...]:
    """(keyword, category) of the things tickets are about (电梯, 路灯, 水管…): grid/data/categories.yml's words."""
    return tuple(
        (word, category.name)
        for category in load_categories()
        for word in category.keywords
        if len(word) >= 2 and word not in _NOT_SUBJECTS
    )


def _foreign_subject(subject: str, desk: Desk) -> bool:
    """The words name a thing (电梯) that none of the worker's tickets is about, by its words or its category: the
    one in progress is then not the one meant (电梯的已经弄好了, with a water-pressure ticket in hand)."""
    said_about = {x.category for x in desk.tickets}
    texts = " ".join(f"{x.location} {x.description}" for x in desk.tickets)
    return any(word in subject and word not in texts and category not in said_about for word, category in _subjects())


@dataclass
class _Refs:
    """What the message points at: tickets, and the spans of the text that did the pointing."""

    tickets: list[DeskTicket] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)  # numbers not on the desk (someone else's, closed)
    spans: list[tuple[int, int]] = field(default_factory=list)
    unknown_short: str | None = None  # 尾号0999 that no open ticket has
    explicit: bool = False


def _refs(text: str, quoted: str, desk: Desk) -> _Refs:
    refs = _Refs()
    for m in _FULL_NUMBER.finditer(text):
        refs.spans.append(m.span())
    written = full_numbers(text) or full_numbers(quoted)
    if written:
        refs.explicit = True
        for number in dict.fromkeys(written):
            ticket = desk.get(number)
            if ticket is not None:
                refs.tickets.append(ticket)
            else:
                refs.numbers.append(number)
        return refs
    for short in _shorts(text):
        matching = [x for x in desk.tickets if x.short == short.digits.zfill(4)]
        if matching:
            refs.explicit = True
            refs.tickets.extend(x for x in matching if x not in refs.tickets)
            refs.spans.append(short.span)
        elif short.marked:
            refs.unknown_short = short.digits
            refs.spans.append(short.span)
    return refs


# --- reading ------------------------------------------------------------------------------------------------------


def understand(text: str, desk: Desk, quoted: str = "", pending: Pending | None = None) -> Reading:
    """A known worker's private message (normalised as the router does) → what to do.

    `quoted` is the message it quotes (bot/normalise.quoted_text), `pending` the choice the bot asked for last.
    """
    if pending is not None:
        picked = pick(text, pending, desk)
        if picked is not None:
            return picked
    exact = parse_command(text)
    if exact is not None and (exact.ticket_number or exact.intent in BARE_COMMANDS.values()):
        return Reading(_ACT_OF_INTENT[exact.intent], exact.ticket_number, exact.text)
    cleaned = clean(text)
    refs = _refs(cleaned, quoted, desk)
    rest = _strip_spans(cleaned, refs.spans)
    command = re.match(rf"^\s*({'|'.join(COMMANDS_WITH_ARGS)})\s*(.*)$", rest, re.DOTALL)
    if command is not None:  # 办结 电梯修好了, 接单 0123, 退回 不是我们网格的: the word says the act
        act = _ACT_OF_INTENT[COMMANDS_WITH_ARGS[command.group(1)]]
        pointed = refs.explicit or refs.numbers or refs.unknown_short is not None
        if act is not Act.ACCEPT and not pointed and not compact(command.group(2)):
            return Reading(act)  # 转派 alone: its usage, as before; only 接单 is safe to complete from context
        # With a ticket named the act stands as said (the service answers a state that refuses it); 接单 alone on
        # the ticket already in hand is only acknowledged.
        return _on_ticket(act, _args(act, command.group(2), desk), refs, desk, command.group(2), literal=bool(pointed))
    return _free_words(rest, refs, desk)


def _args(act: Act, rest: str, desk: Desk) -> str:
    """A command's text after its word: the result, or "李强 原因" / "城管执法局 原因" with the name made whole."""
    rest = rest.strip(" ：:，,。.!！")
    if act is Act.RESOLVE:
        return _result(rest) if rest else ""
    if act is Act.TRANSFER:
        worker = _worker_named(compact(rest), desk)
        name = worker[0] if worker else re.sub(r"^(?:给|到)", "", rest).split(" ")[0]
        return f"{name} {_reason(_cut(rest, name))}".strip() if name else ""
    if act is Act.ESCALATE:
        found = _department(compact(rest), desk)
        if found is not None:
            name = found[0]
            aliases = "|".join(re.escape(a) for a, n in _dept_aliases(desk.departments) if n == name)
            return f"{name} {_reason(re.sub(aliases, ' ', rest, count=1))}".strip()
    return rest


def _free_words(rest: str, refs: _Refs, desk: Desk) -> Reading:
    """The act the words say, in an order where the more specific wins: a name to hand over to, a department, "not
    ours", a completion, a question about their work, progress, and last a plain acknowledgement."""
    c = compact(rest)
    if not c:  # only a number: what about it?
        return _on_ticket(Act.QUERY, "", refs, desk, rest) if (refs.tickets or refs.numbers) else Reading(Act.HELP)
    if _HELP.match(c):
        return Reading(Act.HELP)
    if _MORNING_OFF.search(c):  # before the completions: 关掉早报 is no 关掉 of a ticket
        return Reading(Act.MORNING_OFF)
    if _MORNING_ON.search(c):
        return Reading(Act.MORNING_ON)
    worker = _worker_named(c, desk)
    if worker is not None and (_TRANSFER_VERB.search(c[: worker[1]]) or _TRANSFER_AFTER.match(c[worker[2] :])):
        return _on_ticket(Act.TRANSFER, f"{worker[0]} {_reason(_cut(rest, worker[0]))}".strip(), refs, desk, rest)
    done = _completion(c)
    dept = _department(c, desk)
    if dept is not None and _escalates(c, dept, done is not None and done[0] is Said.DONE):
        return _on_ticket(Act.ESCALATE, f"{dept[0]} {_reason(_cut_dept(rest, dept[0], desk))}".strip(), refs, desk, rest)
    if _RETURN.search(c):
        return _on_ticket(Act.RETURN, _reason(re.sub(r"退回|退单", " ", rest)), refs, desk, rest)
    opened = _TRANSFER_OPEN.search(c)
    if opened is not None and dept is None and (done is None or done[0] is not Said.DONE):
        # 转给小刘: a name the desk does not know; the service says so
        return _on_ticket(Act.TRANSFER, f"{opened.group(1)} {_reason(_cut(rest, opened.group(1)))}".strip(), refs, desk, rest)
    if _ESCALATE_BARE.search(c) and (done is None or done[0] is not Said.DONE):
        return _on_ticket(Act.ASK, "", refs, desk, rest, why="which_department")
    if done is not None and done[0] is Said.DONE:
        return _on_ticket(Act.RESOLVE, _result(rest), refs, desk, rest, subject=c[: done[1].start()])
    if _BRIEFING.search(c) and not refs.explicit:
        return Reading(Act.BRIEFING)
    if _LIST.search(c) and not refs.explicit:
        return Reading(Act.LIST)
    asked = done is not None and done[0] is Said.ASKED
    if asked or (_QUERY.search(c) and not _GOING.search(c)) or (_QUESTION_END.search(c) and refs.explicit):
        return _on_ticket(Act.QUERY, "", refs, desk, rest)
    if done is not None or _PROGRESS.search(c):
        return _on_ticket(Act.NOTED, "", refs, desk, rest)
    if _ACK.search(c) or _ACK_WHOLE.match(c):
        return _on_ticket(Act.ACCEPT, "", refs, desk, rest)
    return Reading(Act.HELP, text=rest.strip())


_REPORTED_UP = re.compile(r"上报|报给|报到|报送|报|提交")
_CALLED = re.compile(r"联系了|已联系|已经联系|打了电话|打过电话|通知了|叫了|找了")


def _escalates(c: str, dept: tuple[str, int, int], done: bool) -> bool:
    """A department named as who should take it (报给城管, 需要供电公司处理, 城管来管), not as who was called
    (联系了燃气公司 明天来) nor as who did the work (供电公司的师傅修好了)."""
    _, start, end = dept
    before = c[max(0, start - 4) : start]
    if not (_ESCALATE_VERB.search(before) or _ESCALATE_AFTER.match(c[end:])):
        return False
    if _CALLED.search(c[:start]):
        return False
    return not done or bool(_REPORTED_UP.search(before))


def _cut(text: str, word: str) -> str:
    """The text without the name and the words that hand over to it (转给李强 → "")."""
    verbs = r"转派给|转派|转给|转交给|转交|交给|移交给|移交|派给|转一下|转下|转|交|给|让|请|叫"
    return re.sub(rf"(?:{verbs})?\s*{re.escape(word)}", " ", text, count=1)


def _cut_dept(text: str, name: str, desk: Desk) -> str:
    aliases = [re.escape(a) for a, n in _dept_aliases(desk.departments) if n == name]
    verb = r"(?:(?:得|要|需要|必须|只能)?(?:上报给|上报|报给|报到|报|提交给|转给|交给|找)|需要|让|请)?"
    return re.sub(rf"{verb}\s*(?:{'|'.join(aliases)})(?:来处理|处理|来管|负责|解决)?", " ", text, count=1)


def _reason(text: str) -> str:
    """What is left once the pointing and the act are taken out, tidied ("这个 不是我们网格的" stays whole)."""
    parts = [p for p in _CLAUSE.split(text) if _FILLER.sub("", p)]
    return "，".join(parts)


# A clause that is only the completion ("处理好了", "已处理", "ok了") says nothing the resident needs.
_BARE_DONE = re.compile(
    rf"^(?:那个|这个|这单|那单|都|也|我)?(?:已经|已|都)?(?:{_WORK}{_RESULT}?{_LE}?|搞定了?|完事了?|完工了?|ok了?|好了|办结了?|"
    r"已办结|解决了|弄妥了?|结束了)(?:了|啦|哈|啊|呀|吧|哦)*$"
)


def _result(text: str) -> str:
    """The result the resident reads: the clauses besides the bare "处理好了"; the whole sentence when that is all."""
    clauses = [p for p in _CLAUSE.split(text.strip()) if p]
    kept = [p for p in clauses if not _BARE_DONE.match(compact(p)) and _FILLER.sub("", compact(p))]  # nor 好的, 收到
    if not kept:
        return "，".join(clauses) or text.strip()
    first = re.sub(r"^(?:好的|收到|嗯|哦)", "", kept[0])  # "好的 已处理 换了阀门": the acknowledgement is not the result
    return "，".join([first, *kept[1:]] if first else kept[1:]) or "，".join(kept)


def _on_ticket(
    act: Act, text: str, refs: _Refs, desk: Desk, said: str, why: str = "", literal: bool = False, subject: str | None = None
) -> Reading:
    """The act on the ticket the context picks, or a question when none or two fit.

    `literal`: the worker said the command word (接单 0123), so the act stands as said and the service answers if the
    ticket's state refuses it; free words (收到) on a ticket already in hand only acknowledge. `subject`: the words
    that say what the act is about (before 修好了: not the result after it), when not all of `said`.
    """
    if refs.unknown_short is not None and not refs.tickets:
        return Reading(Act.ASK, refs.unknown_short, text, why="no_such_number")
    if act is Act.ASK:  # a question whatever the ticket (上报 with no department)
        return Reading(Act.ASK, text=text, why=why)
    if refs.numbers and not refs.tickets:  # a number not on their desk (closed, someone else's): the service says why
        if act in (Act.ACCEPT, Act.NOTED) and not literal:
            return Reading(Act.NOTED, refs.numbers[0])
        return Reading(act, refs.numbers[0], text)
    candidates = refs.tickets if refs.explicit else _candidates(act, said, desk, compact(said) if subject is None else subject)
    if isinstance(candidates, Reading):
        return replace(candidates, text=text) if candidates.act is Act.ASK else candidates
    if len(candidates) == 1:
        return Reading(act, candidates[0].number, text) if literal else _settle(act, candidates[0], text)
    if not candidates:
        return _nothing_fits(act, desk)
    asked = Act.ACCEPT if act is Act.NOTED else act
    return Reading(Act.ASK, text=text, choices=tuple(x.number for x in candidates), why=f"which_{asked.value}")


def _settle(act: Act, ticket: DeskTicket, text: str) -> Reading:
    """Acknowledgement and progress accept a ticket still waiting, and acknowledge one already in hand."""
    if act in (Act.ACCEPT, Act.NOTED):
        return Reading(Act.ACCEPT, ticket.number) if ticket.status in AWAITING else Reading(Act.NOTED, ticket.number)
    return Reading(act, ticket.number, text)


def _nothing_fits(act: Act, desk: Desk) -> Reading:
    """No open ticket at all: the list says so truly. Tickets, but none this act applies to: acknowledge, or say so."""
    if not desk.tickets:
        return Reading(Act.LIST)
    if act in (Act.ACCEPT, Act.NOTED):
        return Reading(Act.NOTED)
    return Reading(Act.ASK, why=f"none_to_{act.value}")


_ALLOWED: dict[Act, frozenset[str]] = {
    Act.ACCEPT: AWAITING | IN_PROGRESS,
    Act.NOTED: AWAITING | IN_PROGRESS,
    Act.RESOLVE: RESOLVABLE,
    Act.TRANSFER: WITH_WORKER,
    Act.ESCALATE: WITH_WORKER,
    Act.RETURN: AWAITING,
}


def _candidates(act: Act, said: str, desk: Desk, subject: str) -> list[DeskTicket] | Reading:
    """The tickets the words can be about: named by their own words, else by state and the last notice.

    A completion takes the one in progress (or the one resolvable when none is in progress) and never the last
    notice alone: with two in hand, it asks. An acknowledgement takes the ticket just notified; "not ours" and
    hand-overs too, while it is still waiting to be taken.
    """
    pool = desk.having(_ALLOWED[act]) if act in _ALLOWED else list(desk.tickets)
    named = _by_content(said, list(desk.tickets))
    if named:  # 电梯那个: the ticket's own words beat its state
        return [x for x in named if x in pool] or named
    # What the act is about: 电梯那个, 电梯的 — and no lift in hand: confirm. For a completion only the words before it
    # (修好了 1201室那户也去看了 is a result), and only there a named thing: a reason or a company names other things.
    foreign = act is Act.RESOLVE and _foreign_subject(subject, desk)
    if pool and (foreign or _points_at_something(subject if act is Act.RESOLVE else said, desk)):
        asked = Act.ACCEPT if act is Act.NOTED else act
        return Reading(Act.ASK, choices=tuple(x.number for x in pool), why=f"which_{asked.value}")
    last = desk.get(desk.last_notified)
    if act is Act.RESOLVE:
        return desk.having(IN_PROGRESS) or pool
    if act in (Act.ACCEPT, Act.NOTED):
        if last is not None and last in pool:
            return [last]
        waiting, working = desk.having(AWAITING), desk.having(IN_PROGRESS)
        if waiting or not desk.tickets:
            return waiting
        return working if len(working) == 1 else Reading(Act.NOTED)
    if act is Act.QUERY and last is not None:
        return [last]
    if last is not None and last in pool and last.status in AWAITING:
        return [last]  # 这个不是我们网格的, right after the notice
    return pool


def pick(text: str, pending: Pending, desk: Desk) -> Reading | None:
    """The answer to "回复序号": `2`, `第二个`, the short number, or the ticket's words; None when it is none of these."""
    choice = parse_choice(text)
    if choice == NONE_OF_THEM:
        return Reading(Act.NOTED, why="cancelled")
    if choice is not None and 1 <= choice <= len(pending.numbers):
        return Reading(pending.act, pending.numbers[choice - 1], pending.text)
    if choice is not None:
        return None
    cleaned = clean(text)
    offered = [x for x in desk.tickets if x.number in pending.numbers]
    by_number = [x for x in offered if any(s.digits.zfill(4) == x.short for s in _shorts(cleaned))] or [
        x for x in offered if x.number in full_numbers(cleaned)
    ]
    if len(by_number) == 1 and len(compact(cleaned)) <= 8:
        return Reading(pending.act, by_number[0].number, pending.text)
    lead = re.match(r"^(?:第)?([1-9一二三四五六七八九])(?:个|号|条|单)", compact(cleaned))
    if lead is not None:
        numeral = lead.group(1)
        index = int(numeral) if numeral.isdigit() else "一二三四五六七八九".index(numeral) + 1
        if 1 <= index <= len(pending.numbers):
            return Reading(pending.act, pending.numbers[index - 1], pending.text)
    return None
