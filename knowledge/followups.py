"""Reading a question in its context: the entry just answered to the asker, or the message the question quotes.

Residents talk; they do not file queries. Right after 高龄补贴怎么申请 is answered, 那要带什么材料 and 一个月能领多少 are
about 高龄津贴, but alone they name nothing: the first matched no entry well enough and became a 咨询 ticket, the
second matched 特困人员每月能领多少 and was answered wrongly. A reply quoting a message (a notice, a neighbour's
report, the bot's own answer) is about that message, and 这个要带医保卡吗 means nothing without it.

So a question is read against its context (`context_for`), in this order:
1. the message it quotes, when there is one: one of the group's current notices (answered from the notice's own
   text), the bot's own answer (its entry is the context, as in 2), or anything else (retrieved with the question);
2. otherwise the entry (or notice) last answered to this asker, if that was recent (the follow-up window).

A question is a follow-up (`read`) when it names none of the knowledge base's subjects that the context does not
(subjects: the words of the entries' titles, `subject_vocabulary`; 那要带什么材料 and 一个月能领多少 name none, 那低保怎么申请
names 低保), when a sentence of the entry answers the aspect it asks (材料, 多少, 哪里, 多久, 电话, 网上, 谁能…:
`relevant_passage`), and when retrieval with the entry's subject put in front (高龄津贴 一个月能领多少) still ranks the
entry first — or it asks whether to bring something the entry's list names (那要带身份证吗). It is answered with those
sentences, naming the entry and its source. When the entry does not say, nothing is answered from it or from another
entry unless the question stands alone (a person is asked, by the caller); a question naming a subject of its own is
read alone, exactly as without context. A subject of its own is also a thing the knowledge base has no entry about
(`subject_nouns`: 驾照, 头盔, 旅游 after an answer on 失业登记, 电动车上牌, 优待卡) that the entry never mentions: such a
question is never answered from the entry just answered, and alone only by an entry that names the thing — else a
person. A follow-up with no subject of its own (能提前还吗) is answered from the entry or by a person, never from
whatever entry its few words happen to match. Unaddressed, a follow-up is answered only when the rewritten question clears
the answer bar. bench/kb_search.py measures both readings on bench/data/kb_followups.yml (never used to adjust these
rules; bench/data/kb_followups_dev.yml is what they were built on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Literal

import jieba
import jieba.posseg
import opencc
from sqlalchemy.orm import Session

from grid.notices import Notice, current_notices
from knowledge.base import Answer, KnowledgeBase
from knowledge.models import KnowledgeEntry
from knowledge.questions import last_answer_to
from knowledge.text_features import _stopwords
from storage.base import utcnow

# How long after an answer a question that names nothing of its own is still read as about that answer. Short:
# the resident is still looking at the answer; an hour later 一个月能领多少 may be about anything.
FOLLOWUP_WINDOW = timedelta(minutes=10)
# An answer from a notice is recorded with this in place of an entry's external id (knowledge_questions), so a
# follow-up to it is read against the notice and admins see what answered.
NOTICE_ANSWER_PREFIX = "notice:"
# A quote is taken for a notice or for the bot's answer when this share of its character pairs is in that text
# (WeChat quotes are often cut short with …, and carry the author's name).
QUOTE_COVERAGE = 0.6
QUOTE_MIN_PAIRS = 4
NOTICES_CONSIDERED = 20

How = Literal["alone", "followup", "quote", "notice"]

_WHO_ANSWERED = r"年满|周岁|户籍|户口|符合|条件|本人|家属|委托|代办|代领|可申请|可以申请|均可|不限"
# What a follow-up asks about an entry: (the question's words for the aspect, the words of a sentence answering it).
# A follow-up is answered with the sentences that answer its aspects; none: the entry does not say.
_ASPECTS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    name: (re.compile(asked), re.compile(answered))
    for name, asked, answered in [
        (
            "materials",
            r"材料|资料|证件|手续|带(什么|啥|哪些|上|着|齐)|要带|带.{0,6}(吗|不|么|嘛)|拿(什么|啥)",
            r"携带|带上|带好|请带|材料|证件|身份证|户口本|证明|照片|原件|复印件|社保卡|医保卡|银行卡",
        ),
        (
            "amount",
            r"多少(?!天|年|个?月|小时|分钟|个?工作日|岁|人)|几块|几百|几千|[要花收交给付]钱|钱(吗|不|么|嘛)|费用|收费|免费|价格|标准|贵",
            r"\d[\d.,，]*\s*(元|块|万)|免费|不收费|收费|标准|比例|%|％",
        ),
        (
            "place",
            r"哪里|哪儿|在哪|去哪|哪办|哪(个|家)(窗口|部门|地方|医院|单位)|什么地方|啥地方|地点|地址|窗口",
            r"窗口|中心|居委会|大厅|服务站|医院|派出所|办事处|地址|[路街巷]\d+号|广场|到.{0,16}(办理|提交|申请|领取|接种|登记)",
        ),
        (
            "time",
            r"多久|多长时间|多少(天|年|个?月|小时|个?工作日)|几天|几年|几个月|啥时|什么时候|几号|几点|哪天|时间|到账|发放|"
            r"周末|节假日|开门|截止|来得及",
            r"\d+\s*个?(工作日|日|天|月|年|周(?!岁)|小时|点|时)|\d{1,2}[:：]\d{2}|次月|每月|当天|当场|即时|即办|"
            r"周[一二三四五六日末]|工作日|上午|下午|时间|到账|发放|截止|以内",
        ),
        ("phone", r"电话|号码|热线|打给谁|联系(方式|谁)", r"电话|热线|\d{3,4}-\d{5,}|12345"),
        (
            "online",
            r"网上|线上|手机|小程序|app|支付宝|微信|公众号|网站|不用跑|在家",
            r"网上|线上|小程序|app|支付宝|微信|公众号|政务服务网|网站|掌上|手机",
        ),
        (
            "who",
            r"本人|代办|代领|家属|别人|替|帮.{0,3}(办|领)|符合|条件|资格|年龄|多大|外地|户籍|谁(能|可以)",
            _WHO_ANSWERED,
        ),
        # "能领吗": who may, unless the question asks something more specific (网上能申请不 asks about online)
        ("can", r"(能|可以)(领|办|申请)(吗|不|么|嘛)|能不能|可不可以", _WHO_ANSWERED),
    ]
}
# Words that ask about an aspect of whatever was just answered, or about who: they name no matter of their own.
_ASPECT_WORDS = frozenset(
    """材料 资料 证件 手续 证明 东西 条件 资格 要求 标准 流程 步骤 程序 办法 规定 政策 时间 时候 日子 多长时间 几天 几号
    几点 哪天 周末 工作日 上班 下班 开门 节假日 钱 费用 价钱 价格 收费 免费 交钱 要钱 花钱 收钱 网上 线上 手机 电话 号码
    热线 联系 联系方式 地方 地点 地址 位置 窗口 现场 到场 代办 代领 到账 发放 打卡 年龄 外地 本地 外省 户籍 名额 结果
    进度 申请 申领 领取 办理 补办 报名 登记 审核 审批 通过 排队 上门 提交 准备 必须 一定 补贴 补助 津贴 金额 账户
    银行卡 一次 以后 之后 后来 现在 今年 明年 每个月 一个月 每月 每年 一年 多久 办完 下来 到时候 具体 详细 情况
    意思 问题 事情 这事 那事 一样 还是 或者 是不是 能不能 可不可以 有没有 用不用 需不需要 要不要 这边 那边 这里 那里""".split()
)
_PEOPLE = frozenset(
    """老人 老年人 老伴 老头 老头子 老太 老太太 老爷子 老两口 爸 妈 爸爸 妈妈 我妈 我爸 老爸 老妈 父母 爹 娘 爷爷 奶奶 外公
    外婆 姥姥 姥爷 孩子 娃 娃娃 小孩 小孩子 宝宝 宝贝 婴儿 儿子 女儿 闺女 家人 家里人 家属 家里 家庭 自己 别人 亲戚
    媳妇 老婆 老公 丈夫 妻子 邻居 朋友 我家 他家 本人 个人 一家 全家 亲属 子女 大家 我们家""".split()
)
# Characters that frame a word without naming anything (那要, 了能, 咋办 keep nothing once they are trimmed).
_FRAME_CHARS = "那这还也就都再又要能会可想得了不没吗呢吧啊呀的么嘛哦啥咋给让把被去来到在对跟和与多几谁哪怎咱俺我你他她它们个些有"
_NUMBERISH = re.compile(r"[\d一二三四五六七八九十百千万两半几]+[个岁块元号点天月年周日次多]*")
_WORD = re.compile(r"[\u4e00-\u9fffa-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;\n])")
_AUTHOR = re.compile(r"^[^：:\s]{1,20}[：:]\s*")
_BROUGHT = re.compile(r"带(上|着|好)?(?!什么|啥|哪些|哪几)(?P<thing>[^\s，,。？?！!]{2,10}?)(吗|不|么|嘛|没|去|呢|啊|$)")
_QUESTION_TAIL = re.compile(r"^(?P<subject>.{2,}?)(怎么|如何|怎样|哪里|在哪).*$")


@dataclass(frozen=True)
class Context:
    """What a question may refer to: an entry, or a notice, or only the text it quotes (kept for the hand-off)."""

    entry: KnowledgeEntry | None = None
    notice: Notice | None = None
    quoted: str = ""


@dataclass(frozen=True)
class Reading:
    """How to answer a question read in context: an entry's answer (`answer`) or a notice, and, for a follow-up, the
    sentences that answer it (`excerpt`; None: the whole answer)."""

    how: How
    answer: Answer | None = None
    notice: Notice | None = None
    excerpt: str | None = None


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _plain(text: str) -> str:
    return _t2s().convert(text).lower()


def subject_of(title: str) -> str:
    """An entry's subject, its title without the question (高龄津贴怎么申请 → 高龄津贴), put before a follow-up."""
    found = _QUESTION_TAIL.match(title)
    return found.group("subject") if found else title.replace("怎么", "")


def own_words(text: str) -> list[str]:
    """The words of `text` that say what it is about (低保, 医保卡, 意大利面), not an aspect of something named
    elsewhere (材料, 多少, 哪里), a person (我妈) or a frame (那要, 咋办)."""
    stop = _stopwords()
    found: list[str] = []
    for token in jieba.lcut(_plain(text)):
        if not _WORD.fullmatch(token) or token in stop:
            continue
        core = token.strip(_FRAME_CHARS)
        if len(core) < 2 or _NUMBERISH.fullmatch(core) or core in _ASPECT_WORDS or core in _PEOPLE:
            continue
        if any(asked.fullmatch(core) for asked, _ in _ASPECTS.values()):
            continue
        found.append(core)
    return list(dict.fromkeys(found))


# jieba's part-of-speech flags of a thing a question can be about (手机, 驾照, 燃气灶, 旅游): nouns, names and verbal
# nouns; not verbs, adverbs or adjectives (提前, 大概, 便宜), which ask about whatever the context is.
_SUBJECT_FLAGS = ("n", "vn")
_COST_CHARS = "费钱"


def subject_nouns(text: str) -> list[str]:
    """The things `text` is about in its own words, whether or not the knowledge base covers them (燃气灶, 狗, 驾照
    are no entry's subject, but a question naming them is not about the entry just answered): its nouns, without
    people (孩子, 我妈), aspects (材料, 电话) and frames."""
    stop = _stopwords()
    found: list[str] = []
    for pair in jieba.posseg.lcut(_plain(text)):
        token, flag = pair.word, pair.flag
        if not flag.startswith(_SUBJECT_FLAGS) or not _WORD.fullmatch(token) or token in stop:
            continue
        core = token.strip(_FRAME_CHARS)
        if len(core) < 2 or _NUMBERISH.fullmatch(core) or core in _ASPECT_WORDS or core in _PEOPLE:
            continue
        if core[-1] in _COST_CHARS:
            continue  # 学费, 工本费, 领钱: what something costs or pays is an aspect of whatever is in context
        found.append(core)
    return list(dict.fromkeys(found))


def _mentions(text: str, word: str) -> bool:
    """Whether `text` names `word`, or, for a longer word, its head (租房子 → 租房, 暖气片 → 暖气)."""
    return word in text or (len(word) >= 3 and any(word[i : i + 2] in text for i in range(len(word) - 1)))


_vocabularies: dict[int, tuple[object, frozenset[str]]] = {}


def subject_vocabulary(session: Session, kb: KnowledgeBase) -> frozenset[str]:
    """The words naming the knowledge base's subjects: its entries' titles without the question (低保, 临时救助,
    居住证, 社保卡…). What a resident's words name is judged against what the knowledge base is about, not against a
    list of every colloquial word a follow-up may contain (一般, 大概, 当天 name nothing here). Kept per index."""
    state = kb.state(session)
    kept = _vocabularies.get(id(kb))
    if kept is not None and kept[0] is state:
        return kept[1]
    words = frozenset(word for record in state.index.records for word in own_words(subject_of(record.phrasings[0])))
    _vocabularies[id(kb)] = (state, words)
    return words


def matter_words(text: str, vocabulary: frozenset[str]) -> list[str]:
    """The knowledge base's subjects that `text` names (低保户 names 低保). None: a question leans on its context for
    what it is about (那要带什么材料, 一个月能领多少)."""
    named: list[str] = []
    for word in own_words(text):
        named.extend([word] if word in vocabulary else [v for v in vocabulary if v in word])
    return list(dict.fromkeys(named))


def asked_aspects(question: str) -> list[str]:
    plain = _plain(question)
    asked = [name for name, (pattern, _) in _ASPECTS.items() if pattern.search(plain)]
    if "phone" in asked and "amount" in asked and not re.search(r"钱|费|元|块", plain):
        asked.remove("amount")  # 电话多少 asks for a number, not an amount of money
    if "can" in asked and len(asked) > 1:
        asked.remove("can")
    return asked


def brought(question: str) -> list[str]:
    """The words of what a question asks whether to bring (要带户口本吗 → 户口本): a detail of the matter in context,
    not a matter of its own, and the context must name it for the answer to be yes."""
    found = _BROUGHT.search(_plain(question))
    return own_words(found.group("thing")) if found else []


def _keywords(question: str, known: str) -> list[str]:
    """The question's own words and character pairs (jieba splits 能到账 as 能到 账) that a sentence can share; those
    of `known` (the entry's title, which every sentence is about) and pairs of frame characters do not count."""
    plain = _plain(question)
    stop = _stopwords()
    words = [w.strip(_FRAME_CHARS) for w in jieba.lcut(plain) if _WORD.fullmatch(w) and w not in stop]
    pairs = [
        run[i : i + 2]
        for run in re.findall(r"[\u4e00-\u9fff]+", plain)
        for i in range(len(run) - 1)
        if not (run[i] in _FRAME_CHARS and run[i + 1] in _FRAME_CHARS)
    ]
    return [w for w in dict.fromkeys([*words, *pairs]) if len(w) >= 2 and w not in known]


def relevant_passage(text: str, question: str, known: str = "") -> str | None:
    """The sentences of `text` that answer `question`: for each aspect it asks (the amount, the materials…) the
    sentence answering it that shares most of its words, or, when it asks no known aspect, the sentence sharing most
    of its words. None when an aspect asked is answered nowhere (网上能申请不 of an entry that only names a counter):
    the text does not say, and a person should."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    if not sentences:
        return None
    asked = asked_aspects(question)
    keywords = _keywords(question, _plain(known))
    plain = [_plain(s) for s in sentences]

    def cues(i: int) -> set[str]:
        return {name for name in asked if _ASPECTS[name][1].search(plain[i])}

    def shared(i: int) -> int:
        return sum(1 for word in keywords if word in plain[i])

    if not asked:
        scored = [(shared(i), -i) for i in range(len(sentences)) if shared(i)]
        return sentences[-max(scored)[1]] if scored else None
    scored = [(2 * len(cues(i)) + shared(i), -i) for i in range(len(sentences)) if cues(i)]
    if not scored:
        return None
    best = -max(scored)[1]
    chosen = {best}
    for aspect in [a for a in asked if a not in cues(best)]:
        answering = [(shared(i), -i) for i in range(len(sentences)) if aspect in cues(i)]
        if not answering:
            return None
        chosen.add(-max(answering)[1])
    return "".join(sentences[i] for i in sorted(chosen))


def _pairs(text: str) -> set[str]:
    return {run[i : i + 2] for run in re.findall(r"\w+", _plain(text)) for i in range(len(run) - 1)}


def quote_coverage(quoted: str, reference: str) -> float:
    """How much of a quote (its author's name left out) is in `reference`: the share of its character pairs."""
    pairs = _pairs(_AUTHOR.sub("", quoted, count=1))
    if len(pairs) < QUOTE_MIN_PAIRS:
        return 0.0
    return len(pairs & _pairs(reference)) / len(pairs)


def _quoted_notice(session: Session, group_id: str | None, quoted: str) -> Notice | None:
    """The current notice for this group that the quote is taken from, if any."""
    scored = [
        (quote_coverage(quoted, f"惠民信息 {notice.title}\n{notice.body}"), notice)
        for notice in current_notices(session, group_id, limit=NOTICES_CONSIDERED)
    ]
    best = max(scored, key=lambda pair: pair[0], default=None)
    return best[1] if best is not None and best[0] >= QUOTE_COVERAGE else None


def _quoted_entry(session: Session, kb: KnowledgeBase, quoted: str, regions: list[str], today: date) -> KnowledgeEntry | None:
    """The entry whose answer the quote is (the bot's own answer, quoted back): among the entries the quote
    retrieves, one whose answer and source contain most of it."""
    _, candidates = kb.ranked(session, quoted, regions, today, top_k=3)
    for candidate in candidates:
        entry = session.get(KnowledgeEntry, candidate.entry_id)
        if entry is not None and quote_coverage(quoted, f"{entry.title}\n{entry.answer}\n{entry.citation()}") >= QUOTE_COVERAGE:
            return entry
    return None


def context_for(
    session: Session,
    kb: KnowledgeBase,
    asker_id: str,
    group_id: str | None,
    quoted: str,
    regions: list[str],
    today: date,
    window: timedelta = FOLLOWUP_WINDOW,
    now: datetime | None = None,
) -> Context | None:
    """What this asker's question may refer to: the message quoted, else the last answer within `window`."""
    now = now or utcnow()
    if quoted:
        notice = _quoted_notice(session, group_id, quoted)
        if notice is not None:
            return Context(notice=notice, quoted=quoted)
        return Context(entry=_quoted_entry(session, kb, quoted, regions, today), quoted=quoted)
    last = last_answer_to(session, asker_id, group_id, now=now, window=window)
    if last is None:
        return None
    if last.entry_id is not None:
        entry = session.get(KnowledgeEntry, last.entry_id)
        return Context(entry=entry) if entry is not None else None
    reference = last.entry_external_id or ""
    if reference.startswith(NOTICE_ANSWER_PREFIX) and reference[len(NOTICE_ANSWER_PREFIX) :].isdigit():
        notice = session.get(Notice, int(reference[len(NOTICE_ANSWER_PREFIX) :]))
        return Context(notice=notice) if notice is not None and notice.is_current(now) else None
    return None


def read(
    session: Session,
    kb: KnowledgeBase,
    question: str,
    regions: list[str],
    today: date,
    context: Context | None,
    *,
    addressed: bool = True,
) -> Reading | None:
    """The answer to `question` read in `context` (None: no context, read alone), or None when there is none to
    give. Unaddressed (`addressed` false), a follow-up is answered only when retrieval is confident of it."""
    alone = kb.answer(session, question, regions, today)
    standalone = Reading("alone", alone) if alone is not None else None
    if context is None:
        return standalone
    if context.notice is not None:
        return _about_notice(session, kb, context.notice, question, standalone)
    if context.entry is not None:
        return _follow_up(session, kb, question, regions, today, context.entry, alone, addressed)
    return _about_quote(session, kb, question, regions, today, context.quoted, standalone, addressed)


def _entry_text(entry: KnowledgeEntry) -> tuple[str, str]:
    """(its phrasings and tags, everything including the answer), as matter words are looked up in them."""
    phrasings = _plain("\n".join([entry.title, *entry.questions, " ".join(entry.tags)]))
    return phrasings, phrasings + "\n" + _plain(entry.answer)


def _follow_up(
    session: Session,
    kb: KnowledgeBase,
    question: str,
    regions: list[str],
    today: date,
    entry: KnowledgeEntry,
    alone: Answer | None,
    addressed: bool,
) -> Reading | None:
    """`question` after `entry` was answered (or quoted): a follow-up answered from `entry`, a question of its own
    read alone, or None (the entry does not say, and the question does not stand alone)."""
    standalone = Reading("alone", alone) if alone is not None else None
    things = brought(question)
    words = [w for w in matter_words(question, subject_vocabulary(session, kb)) if not any(w in thing for thing in things)]
    phrasings, whole = _entry_text(entry)
    if any(word not in whole for word in words):
        return standalone  # names a matter the entry never mentions (那低保呢): a question of its own
    if any(thing not in whole for thing in things):
        return None  # 要带结婚证吗 of an entry that never names it: it does not say, a person should
    foreign = [n for n in subject_nouns(question) if not _mentions(whole, n) and not any(n in thing for thing in things)]
    if foreign:
        # A subject of its own that the entry never mentions, though no entry is about it (燃气灶, 驾照, 旅游 after
        # an answer on 燃气开户, 失业登记, 优待卡): a question of its own, never answered from the entry just
        # answered; answered alone only by an entry that names what it asks about (else a person).
        about = alone is not None and any(_mentions(_entry_text(alone.entry)[1], n) for n in foreign)
        return standalone if about else None
    passage = relevant_passage(entry.answer, question, entry.title)
    if alone is not None and alone.entry.id == entry.id:
        return Reading("followup", alone, excerpt=passage)
    # A matter the answer mentions only in passing is the subject of a follow-up when it is something to bring or a
    # condition (那要带身份证吗, and the sentence listing what to bring names it); otherwise a confident answer from its
    # own entry wins (身份证丢了去哪补).
    mentioned = [word for word in words if word not in phrasings]
    detail = (
        passage is not None
        and bool({"materials", "who"} & set(asked_aspects(question)))
        and any(word in _plain(passage) for word in [*mentioned, *own_words(question)])
    )
    if alone is not None and mentioned and not detail:
        return standalone
    if passage is None:
        # The entry does not say. A question naming a matter of its own is read alone (above); one without (要钱吗,
        # 能提前还吗: a verb or an adverb is no subject) is for a person, not for whatever entry its few words happen
        # to match (提前 matched a water outage notice).
        return None
    policy, candidates = kb.ranked(session, f"{subject_of(entry.title)} {question}", regions, today, top_k=3)
    first = bool(candidates) and candidates[0].entry_id == entry.id
    if not first and not detail:
        # Even with the subject in front it points elsewhere: to where it points alone, or to nothing sure.
        agrees = alone is not None and bool(candidates) and candidates[0].entry_id == alone.entry.id
        return standalone if words or agrees else None
    if not addressed and (not first or policy.choose(candidates) is None):
        return None  # unasked and not sure
    score = next((policy.confidence(c) for c in candidates if c.entry_id == entry.id), 0.0)
    runner_up = max((policy.confidence(c) for c in candidates if c.entry_id != entry.id), default=0.0)
    return Reading("followup", Answer(entry, score, runner_up), excerpt=passage)


def _about_notice(
    session: Session, kb: KnowledgeBase, notice: Notice, question: str, standalone: Reading | None
) -> Reading | None:
    """A question about a notice is answered from the notice's own words when a sentence answers it; one naming a
    subject the notice does not mention is read alone. Asked whether to bring something or who may come, the thing
    or person must be in the notice (要带户口本吗 of a notice that says 请带医保卡 is for a person)."""
    text = _plain(f"{notice.title}\n{notice.body}")
    things = brought(question)
    words = [w for w in matter_words(question, subject_vocabulary(session, kb)) if not any(w in thing for thing in things)]
    if any(word not in text for word in words):
        return standalone
    foreign = [n for n in subject_nouns(question) if not _mentions(text, n) and not any(n in thing for thing in things)]
    if foreign:  # a thing of its own the notice never mentions: read alone, answered only by an entry about it
        alone = standalone.answer.entry if standalone is not None and standalone.answer is not None else None
        return standalone if alone is not None and any(_mentions(_entry_text(alone)[1], n) for n in foreign) else None
    passage = relevant_passage(notice.body, question, notice.title)
    asks_detail = bool({"materials", "who"} & set(asked_aspects(question)))
    if passage is None or (asks_detail and any(word not in text for word in own_words(question))):
        return None
    return Reading("notice", notice=notice, excerpt=passage)


def _about_quote(
    session: Session,
    kb: KnowledgeBase,
    question: str,
    regions: list[str],
    today: date,
    quoted: str,
    standalone: Reading | None,
    addressed: bool,
) -> Reading | None:
    """A question about a quoted message (a neighbour's 楼道里堆满了纸箱子 + 这种找谁): read alone when it names a
    matter of its own; else about the entry the quote is about — one whose subject the quote names, ranked first both
    for the quote and for quote and question together — answered with the sentences answering the aspect asked, or
    whole when it asks none (nothing was answered yet). Unaddressed, only when quote and question together answer."""
    vocabulary = subject_vocabulary(session, kb)
    if standalone is not None and matter_words(question, vocabulary):
        return standalone
    message = _AUTHOR.sub("", quoted, count=1)
    named = matter_words(message, vocabulary)
    if not named:
        return None  # the quote is about nothing the knowledge base covers (今晚一起吃火锅啊)
    policy, together = kb.ranked(session, f"{message} {question}", regions, today, top_k=3)
    _, by_quote = kb.ranked(session, message, regions, today, top_k=1)
    if not together or not by_quote or together[0].entry_id != by_quote[0].entry_id:
        return None
    entry = session.get(KnowledgeEntry, together[0].entry_id)
    if entry is None or not any(word in _entry_text(entry)[0] for word in named):
        return None  # its best entry is not about what the quote names
    if not addressed and policy.choose(together) is None:
        return None
    passage = relevant_passage(entry.answer, question, entry.title) if asked_aspects(question) else None
    if asked_aspects(question) and passage is None:
        return None  # asks something the entry does not say
    runner_up = max((policy.confidence(c) for c in together[1:]), default=0.0)
    return Reading("quote", Answer(entry, policy.confidence(together[0]), runner_up), excerpt=passage)
