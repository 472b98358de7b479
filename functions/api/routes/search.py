"""Search a case's transcripts by meaning: ``GET /cases/{case_id}/search?q=...&limit=...``.

The query is embedded with the gateway's text embedder (the model that embedded the transcripts,
``AIMA_MODELS__TEXT_EMBEDDER__*``) and compared with the case's speech segments, their text and
English translation (`aima.storage.speech_index`). Results are segments, best first, within the case
only; a member needs the right to read the case's media (viewer and above). Every search is one
``media.read`` audit record naming the case, the query and how many segments were returned.

A blank or overlong query is 422. A case with nothing indexed answers no results without the model;
otherwise a text embedder that is not configured, or is down, answers 503 with the reason.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field

from aima.access.policy import Action
from aima.storage.speech_index import MAX_QUERY, MAX_RESULTS, SegmentHit, SpeechIndex
from aima.storage.transcripts import TranscriptRepository
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import CaseId
from functions.api.security import Access, RouteTable, api_route
from inference.errors import ModelError, ModelNotConfigured
from inference.tasks.text import TextEmbedder, TextsInput

log = logging.getLogger(__name__)

router = RouteTable(tags=["search"])

AUDITED_QUERY = 200
"""Characters of the query the audit record keeps."""

SearchQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_QUERY,
        pattern=r"^[^\x00]*[^\s\x00][^\x00]*$",
        description="What was said, in other words: a sentence or a few words (English works best).",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_RESULTS, description="How many segments at most.")]


class SearchResults(BaseModel):
    """The segments nearest in meaning to the query, best first."""

    query: str
    results: list[SegmentHit] = Field(description="best first; `score` is the cosine similarity")


@api_route(
    router,
    "GET",
    "/cases/{case_id}/search",
    action=Action.MEDIA_READ,
    responses=problem_responses(503),
)
def search_case(case_id: CaseId, q: SearchQuery, access: Access, limit: Limit = 10) -> SearchResults:
    """Search the case's transcripts by meaning: the segments (text, translation, file, time, speaker)
    nearest to the query, best first."""
    access.require_case()
    services = access.services
    query = q.strip()
    index = SpeechIndex(
        services.stores.vectors, TranscriptRepository(services.stores.documents), services.media
    )
    hits: list[SegmentHit] = []
    if index.has_texts(case_id):
        hits = index.search(access.scope, case_id, _embed(access, query), limit)
    access.audit(
        object=f"case/{case_id}/search",
        detail={"query": query[:AUDITED_QUERY], "results": len(hits)},
    )
    return SearchResults(query=query, results=hits)


def _embed(access: Access, query: str) -> list[float]:
    """The query's vector, on the model's own executor; 503 with the reason when it cannot be made."""
    models = access.services.models
    try:
        if models is None:
            raise ModelNotConfigured("the gateway has no models")
        model = models.get(TextEmbedder)
        answer = model.executor.submit(model.predict, TextsInput(texts=[query])).result()
    except ModelError as exc:
        log.warning("search without a text embedder: %s", exc.reason)
        configured = not isinstance(exc, ModelNotConfigured)
        detail = f"Search needs the text embedder, which is {'down' if configured else 'not configured'}: "
        raise Problem(
            503,
            "search-unavailable",
            "Search unavailable",
            detail + exc.reason,
            headers={"Retry-After": "30"} if configured else None,
        ) from None
    return answer.vectors[0]
