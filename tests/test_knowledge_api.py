"""Hit testing over a real HTTP server, on both databases: ranked hits, the answer decision, region scope."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.embedded import app_server, free_port
from bot.settings import Settings
from tests.accounts import headers_for


@pytest.fixture(scope="module")
def api(database_url: str, session_factory: sessionmaker[Session]) -> Iterator[httpx.Client]:
    """The live app as a grid worker's account: hit testing is open to every account, not only admins."""
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port())
    headers = headers_for(session_factory, "worker-1")
    with app_server(settings) as url, httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        yield client


def _search(api: httpx.Client, **body: object) -> httpx.Response:
    return api.post("/api/v1/knowledge/search", json=body)


def test_answerable_question_ranks_its_entry_first_with_source(api: httpx.Client) -> None:
    result = _search(api, query="社区的高龄补贴怎么申请", group_id="demo-grid-1", top_k=3).json()
    assert result["answered"] is True and len(result["hits"]) == 3
    first = result["hits"][0]
    assert first["external_id"] == "kb-elderly-allowance" and first["source"]["office"] == "示范区民政局"
    assert [h["score"] for h in result["hits"]] == sorted((h["score"] for h in result["hits"]), reverse=True)


def test_unrelated_question_is_not_answered(api: httpx.Client) -> None:
    assert _search(api, query="火星上能种土豆吗").json()["answered"] is False


def test_community_entry_only_in_its_community(api: httpx.Client) -> None:
    inside = _search(api, query="门禁卡丢了怎么办", group_id="demo-grid-1").json()
    outside = _search(api, query="门禁卡丢了怎么办", group_id="demo-grid-3").json()
    assert inside["answered"] and inside["hits"][0]["external_id"] == "kb-access-card"
    assert "kb-access-card" not in [h["external_id"] for h in outside["hits"]]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": ""}, 422),
        ({"query": "   "}, 422),
        ({"query": "低保", "top_k": 0}, 422),
        ({"query": "低保", "group_id": "nope"}, 404),
    ],
)
def test_bad_requests(api: httpx.Client, body: dict[str, object], status: int) -> None:
    assert _search(api, **body).status_code == status
