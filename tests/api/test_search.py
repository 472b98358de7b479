"""``GET /cases/{case_id}/search``: transcripts searched by meaning over the API, within the case and
the caller's role, one audit record per search, problems for bad queries and a missing model."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from aima.access.scope import Scope
from aima.model_settings import ModelsSettings
from aima.settings import Settings
from aima.storage.findings import FindingRepository
from aima.storage.schema import audit_log
from aima.storage.transcripts import TranscriptRepository
from aima.transcripts import SpeechSegment, Transcript, segment_id
from events.catalogue import ModelInfo, TranscriptCompleted, make_event
from functions.api.app import create_app
from functions.api.problems import PROBLEM_JSON
from functions.api.services import ApiServices
from functions.cues.core import CueCore
from functions.cues.cuelist import load_cue_list
from functions.runtime.context import Context
from inference.pool import ModelPool
from inference.tasks.text import TextEmbedder
from tests.api.conftest import World, client_for

FILM = "I was at home with my sister and we watched a film"
LINES = [
    ("en", "The officer asked the witness where she had been on Tuesday evening.", None),
    ("en", FILM, None),
    ("de", "Bitte hören Sie auf, lassen Sie mich gehen.", "Please stop, let me go."),
]
PARAPHRASE = "she spent the evening at her place watching a movie with a sibling"


async def transcribed(world: World, case_id: str, filename: str = "interview.wav") -> Transcript:
    """A media row in the case and its transcript, indexed the way the cues function does it."""
    services = world.services
    media_id = str(uuid.uuid4())
    services.media.add(
        Scope.for_tenant(world.tenant, "test"),
        case_id=case_id,
        media_id=media_id,
        sha256=hashlib.sha256(media_id.encode()).hexdigest(),
        size=1000,
        content_type="audio/wav",
        kind="audio",
        filename=filename,
        object_key=f"cases/{case_id}/media/{media_id}/original",
    )
    segments = [
        SpeechSegment(
            id=segment_id(media_id, 4.0 * n),
            start=4.0 * n,
            end=4.0 * n + 3.0,
            text=text,
            language=language,
            translation=translation,
            speaker="S1",
            case_speaker_id="speaker-1",
        )
        for n, (language, text, translation) in enumerate(LINES)
    ]
    documents = services.stores.documents
    transcripts = TranscriptRepository(documents)
    transcript = transcripts.add(
        Transcript(tenant_id=world.tenant, case_id=case_id, media_id=media_id, version=1, segments=segments)
    )
    assert services.models is not None
    models = services.models
    core = CueCore(
        transcripts,
        services.stores.vectors,
        FindingRepository(documents),
        embedder=lambda: models.get(TextEmbedder),
        cues=load_cue_list(),
    )
    data = TranscriptCompleted(
        tenant_id=world.tenant,
        case_id=case_id,
        media_id=media_id,
        model=ModelInfo(name="base", version="test", backend="faster-whisper"),
        result_count=len(segments),
        version=1,
    )
    await core.handle(data, Context("cues", make_event(data, source="/aima/test")))
    return transcript


async def search(world: World, caller: str, case_id: str, **params: Any) -> httpx.Response:
    return await world.client.get(
        f"/api/v1/cases/{case_id}/search", params=params, headers=world.headers(caller)
    )


def records(world: World, action: str = "media.read") -> list[dict[str, Any]]:
    with world.services.stores.db.engine.connect() as connection:
        rows = connection.execute(
            select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq)
        )
        return [dict(row._mapping) for row in rows]


async def test_a_paraphrase_finds_its_segment_with_file_time_and_speaker(world: World) -> None:
    transcript = await transcribed(world, world.case_id)
    response = await search(world, "viewer", world.case_id, q=PARAPHRASE, limit=2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == PARAPHRASE
    first = body["results"][0]
    assert first == {
        "media_id": transcript.media_id,
        "filename": "interview.wav",
        "segment_id": transcript.segments[1].id,
        "start": 4.0,
        "end": 7.0,
        "text": FILM,
        "translation": None,
        "language": "en",
        "speaker": "S1",
        "case_speaker_id": "speaker-1",
        "score": first["score"],
        "matched": "text",
        "transcript_version": 1,
        "source": "speech",
        "frame_id": None,
        "timestamp_s": None,
        "ocr_version": None,
    }
    assert len(body["results"]) == 2
    assert first["score"] > body["results"][1]["score"]

    german = (await search(world, "owner", world.case_id, q="please let me leave")).json()["results"][0]
    assert (german["segment_id"], german["matched"]) == (transcript.segments[2].id, "translation")
    assert german["text"] == LINES[2][1]


async def test_search_stays_in_its_case_and_the_callers_role(world: World) -> None:
    mine = await transcribed(world, world.case_id)
    other_case = world.new_case("Other")
    theirs = await transcribed(world, other_case, "other.wav")
    response = await search(world, "analyst", world.case_id, q=PARAPHRASE, limit=20)
    assert {hit["media_id"] for hit in response.json()["results"]} == {mine.media_id}
    response = await search(world, "analyst", other_case, q=PARAPHRASE, limit=20)
    assert {hit["media_id"] for hit in response.json()["results"]} == {theirs.media_id}
    for caller in ("nonmember", "guest_nonmember", "other_admin"):
        refused = await search(world, caller, world.case_id, q=PARAPHRASE)
        assert refused.status_code == 404, caller
        assert refused.headers["content-type"] == PROBLEM_JSON
    assert (await search(world, "guest_member", world.case_id, q=PARAPHRASE)).status_code == 200
    assert (await search(world, "anonymous", world.case_id, q=PARAPHRASE)).status_code == 401


async def test_every_search_is_one_audit_record_with_the_query(world: World) -> None:
    await transcribed(world, world.case_id)
    before = len(records(world))
    response = await search(world, "viewer", world.case_id, q=PARAPHRASE, limit=3)
    assert response.status_code == 200
    [record] = records(world)[before:]
    assert (record["tenant_id"], record["actor"], record["outcome"]) == (
        world.tenant,
        world.users["viewer"].id,
        "allowed",
    )
    assert (record["case_id"], record["object"]) == (world.case_id, f"case/{world.case_id}/search")
    assert record["detail"]["query"] == PARAPHRASE
    assert record["detail"]["results"] == 3
    assert record["request_id"] == response.headers["x-request-id"]

    denied = await search(world, "nonmember", world.case_id, q=PARAPHRASE)
    assert denied.status_code == 404
    [refusal] = records(world)[before + 1 :]
    assert (refusal["actor"], refusal["outcome"]) == (world.users["nonmember"].id, "denied")


async def test_a_blank_or_overlong_query_is_422_and_audited_as_failed(world: World) -> None:
    for params in ({"q": ""}, {"q": "   "}, {"q": "x" * 501}, {}, {"q": "film", "limit": "0"}):
        before = len(records(world))
        response = await search(world, "viewer", world.case_id, **params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["type"].endswith("validation-failed")
        [record] = records(world)[before:]
        assert record["outcome"] == "failed"


async def test_a_case_with_nothing_indexed_answers_no_results(world: World) -> None:
    response = await search(world, "owner", world.case_id, q="anything at all")
    assert response.status_code == 200
    assert response.json() == {"query": "anything at all", "results": []}


async def test_without_a_text_embedder_search_is_503_with_the_reason(world: World, tmp_path: Path) -> None:
    await transcribed(world, world.case_id)  # indexed with the default model
    original = world.services.models
    unusable = {
        "not configured": {"backend": "none"},
        "is neither all-MiniLM-L6-v2 nor a folder": {"model": str(tmp_path / "no-model")},
    }
    try:
        for reason, block in unusable.items():
            world.services.models = ModelPool(ModelsSettings.model_validate({"text_embedder": block}))
            before = len(records(world))
            response = await search(world, "owner", world.case_id, q="film")
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == PROBLEM_JSON
            problem = response.json()
            assert problem["type"].endswith("search-unavailable")
            assert reason in problem["detail"]
            assert "retry-after" not in response.headers  # nothing will change without an operator
            [record] = records(world)[before:]
            assert record["outcome"] == "failed"
    finally:
        world.services.models = original


async def test_a_broken_text_embedder_leaves_the_gateway_ready(settings: Settings, tmp_path: Path) -> None:
    pool = ModelPool(ModelsSettings.model_validate({"text_embedder": {"model": str(tmp_path / "no-model")}}))
    services = ApiServices.open(settings, models=pool)
    try:
        async with client_for(create_app(services)) as client:
            response = await client.get("/readyz")
        assert response.status_code == 200
        component = response.json()["components"]["model:text_embedder"]
        assert (component["status"], component["critical"]) == ("down", False)
    finally:
        await services.close()
