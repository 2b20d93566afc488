"""The hybrid index on its own: filters, fusion, and the ANN path agreeing with exact search."""

from __future__ import annotations

from datetime import date

import numpy as np

from knowledge.hybrid import EntryRecord, HybridIndex
from knowledge.lexical import Bm25Index
from knowledge.text_features import terms

RECORDS = [
    EntryRecord(1, "district", None, None, ("高龄津贴怎么申请", "80岁老人有什么补贴")),
    EntryRecord(2, "district", None, date(2025, 1, 1), ("流感疫苗在哪打",)),
    EntryRecord(3, "community-a", None, None, ("门禁卡丢了怎么补",), body="到物业服务中心补办 工本费20元"),
    EntryRecord(4, "district", date(2027, 3, 1), None, ("长期护理保险怎么申请",)),
]


def test_bm25_scores_are_normalised_by_what_the_question_asks() -> None:
    index = Bm25Index.from_texts(["高龄津贴怎么申请", "居住证怎么办理", "居住证明在哪里开"])
    same = index.scores("高龄津贴怎么申请")
    assert 0.8 < same[0] <= 1.5 and same[1] == same[2] == 0
    assert index.scores("居住证明")[2] > index.scores("居住证明")[1] > 0
    assert not index.scores("").any() and not index.scores("火星").any()


def test_allowed_mask_applies_region_and_dates() -> None:
    index = HybridIndex(RECORDS)
    mask = index.allowed(["district"], date(2026, 11, 25))
    assert mask.tolist() == [True, False, False, False]
    assert index.allowed(["district", "community-a"], date(2027, 3, 1)).tolist() == [True, False, True, True]


def test_allowed_masks_are_remembered_read_only_per_chain_and_day() -> None:
    index = HybridIndex(RECORDS)
    first = index.allowed(["district", "community-a"], date(2026, 11, 25))
    assert index.allowed(("district", "community-a"), date(2026, 11, 25)) is first  # no second np.isin
    assert not first.flags.writeable  # a caller cannot spoil the mask the next question gets
    assert index.allowed(["district", "community-a"], date(2027, 3, 1)).tolist() == [True, False, True, True]
    assert first.tolist() == [True, False, True, False]  # the other day's mask did not overwrite it


def test_one_split_of_the_question_scores_like_the_text() -> None:
    index = Bm25Index.from_texts(["高龄津贴怎么申请", "居住证怎么办理"])
    assert index.scores_for_terms(terms("居住证怎么办")).tolist() == index.scores("居住证怎么办").tolist()


def test_search_only_returns_allowed_entries_and_uses_the_entry_body() -> None:
    index = HybridIndex(RECORDS)
    hits = index.search("门禁卡 工本费多少", None, index.allowed(["community-a"], date(2026, 11, 25)))
    assert [h.entry_id for h in hits] == [3]
    assert hits[0].dense is None and hits[0].matched == "门禁卡丢了怎么补"
    assert index.search("门禁卡丢了", None, index.allowed(["district"], date(2026, 11, 25))) == []


def test_ann_path_agrees_with_exact_search() -> None:
    rng = np.random.default_rng(0)
    records = [EntryRecord(i + 1, "d", None, None, (f"条目{i}", f"问法{i}")) for i in range(600)]
    vectors = rng.normal(size=(1200, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = HybridIndex(records, vectors, ann_above=10**9)
    approximate = HybridIndex(records, vectors, ann_above=100)
    assert approximate.dense is not None and approximate.dense.approximate
    allowed = np.ones(600, dtype=bool)
    agree = 0
    for row in rng.choice(1200, size=50, replace=False):
        query = vectors[row] + rng.normal(scale=0.05, size=32).astype(np.float32)
        query /= np.linalg.norm(query)
        best_exact = exact.search("", query, allowed, top_k=1)[0]
        best_ann = approximate.search("", query, allowed, top_k=1)[0]
        assert best_exact.entry_id == row // 2 + 1  # the entry owning the perturbed phrasing
        agree += best_ann.entry_id == best_exact.entry_id
    assert agree >= 48
