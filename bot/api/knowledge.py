"""Knowledge base over HTTP for admins: hit testing, and the questions it could not answer well.

Entry editing, import/export and history live in bot/api/knowledge_admin.py. Any account may hit-test (a worker
checking what the bot tells residents); the question lists are the admins' work queue.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from bot.api.deps import ServicesDep
from bot.auth.deps import Admin, AnyAccount
from grid.clock import LOCAL_TZ
from grid.geography import ChatGroup, asker_regions
from knowledge.hit_test import hit_test
from knowledge.questions import AskedQuestion, needing_entries
from storage.base import utcnow
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])


class SearchIn(BaseModel):
    query: str = Field(min_length=1, max_length=500)
    group_id: str | None = Field(
        default=None, description="Ask as in this group (its regions); null: district-wide entries only."
    )
    top_k: int = Field(default=5, ge=1, le=20)


class SourceOut(BaseModel):
    document: str | None
    office: str | None
    url: str | None
    date: str | None


class HitOut(BaseModel):
    entry_id: int
    external_id: str
    title: str
    score: float = Field(description="Confidence on the answer policy's scale: 1.0 is just enough to answer.")
    lexical: float = Field(description="Normalised BM25 of the best-matching phrasing (about 0–1).")
    dense: float | None = Field(description="Cosine of the best phrasing under the embedding model; null if lexical-only.")
    matched: str = Field(description="The entry's phrasing (title or variant) that matched best.")
    answer: str
    source: SourceOut


class SearchOut(BaseModel):
    answered: bool = Field(description="Whether the bot would answer with the first hit (threshold and margin).")
    mode: str = Field(description="'hybrid (<model>)' or 'lexical only'.")
    hits: list[HitOut]


@router.post("/search", response_model=SearchOut)
def search(body: SearchIn, _account: AnyAccount, services: ServicesDep) -> SearchOut:
    """What the bot would answer this question in this group, with the ranked candidates and their scores."""
    if not body.query.strip():
        raise HTTPException(422, "query is empty")
    with unit_of_work(services.session_factory) as session:
        if body.group_id and session.get(ChatGroup, body.group_id) is None:
            raise HTTPException(404, f"unknown group '{body.group_id}'")
        regions = asker_regions(session, body.group_id)
        result = hit_test(
            services.knowledge, session, body.query.strip(), regions, utcnow().astimezone(LOCAL_TZ).date(), body.top_k
        )
    return SearchOut.model_validate(asdict(result))


class AskedOut(BaseModel):
    id: int
    asked_at: datetime
    group_id: str | None
    asker_name: str
    question: str
    answered: bool
    entry_external_id: str | None
    score: float | None
    feedback: str | None
    ticket_number: str | None


@router.get("/questions", response_model=list[AskedOut])
def questions(
    _admin: Admin,
    services: ServicesDep,
    kind: Annotated[Literal["unanswered", "unhelpful"], Query(description="Handed to workers, or said not to help.")],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AskedOut]:
    """Residents' questions to turn into entries, newest first, until marked handled."""
    with unit_of_work(services.session_factory) as session:
        return [AskedOut.model_validate(row, from_attributes=True) for row in needing_entries(session, kind, limit)]


@router.post("/questions/{question_id}/handled", response_model=AskedOut)
def mark_handled(question_id: int, _admin: Admin, services: ServicesDep) -> AskedOut:
    """An admin has dealt with it (added or fixed an entry, or decided none is needed): off the list."""
    with unit_of_work(services.session_factory) as session:
        row = session.get(AskedQuestion, question_id)
        if row is None:
            raise HTTPException(404, f"unknown question {question_id}")
        row.handled = True
        session.flush()
        return AskedOut.model_validate(row, from_attributes=True)
