"""Knowledge base over HTTP: hit testing for admins (import, edit and history come with issue #4)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from bot.api.local import ServicesDep
from grid.clock import LOCAL_TZ
from grid.geography import ChatGroup, asker_regions
from knowledge.hit_test import hit_test
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
    score: float
    answer: str
    source: SourceOut


class SearchOut(BaseModel):
    answered: bool = Field(description="Whether the bot would answer with the first hit (threshold and margin).")
    hits: list[HitOut]


@router.post("/search", response_model=SearchOut)
def search(body: SearchIn, services: ServicesDep) -> SearchOut:
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
