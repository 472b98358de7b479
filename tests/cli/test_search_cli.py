"""``aima search``: a case's transcripts by meaning through the real entry point, audited like the API;
bad queries, unknown cases and a missing text embedder end with one line and exit 1."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.settings import Settings, load_settings
from aima.storage.cases import CaseRepository
from aima.storage.factory import Stores
from aima.storage.findings import FindingRepository
from aima.storage.media import MediaRepository
from aima.storage.schema import audit_log
from aima.storage.transcripts import TranscriptRepository
from aima.transcripts import SpeechSegment, Transcript, segment_id
from events.catalogue import ModelInfo, TranscriptCompleted, make_event
from functions.cues.core import CueCore
from functions.cues.cuelist import load_cue_list
from functions.runtime.context import Context
from inference.pool import ModelPool
from inference.tasks.text import TextEmbedder

LINES = [
    ("en", "The car was parked outside the station for two hours.", None),
    (
        "de",
        "Ich war den ganzen Abend zu Hause bei meiner Familie.",
        "I was at home with my family all evening.",
    ),
]


def aima(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}
    full |= {"AIMA_DATA_DIR": str(data_dir), **env}
    return subprocess.run(
        [sys.executable, "-m", "aima.cli", *args], env=full, capture_output=True, text=True, timeout=180
    )


INDEX = """
import sys
from aima.settings import load_settings
from tests.cli.test_search_cli import index_a_case

case_id, transcript = index_a_case(load_settings(profile="embedded", data_dir=sys.argv[1]))
print(case_id)
print(transcript.model_dump_json())
"""


def indexed_case(data_dir: Path) -> tuple[str, Transcript]:
    """`index_a_case` in a process of its own: Milvus Lite lets go of its file only when a process ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}
    done = subprocess.run(
        [sys.executable, "-c", INDEX, str(data_dir)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    case_id, transcript = done.stdout.splitlines()[-2:]
    return case_id, Transcript.model_validate_json(transcript)


def index_a_case(settings: Settings) -> tuple[str, Transcript]:
    """A case of the embedded local owner with one transcribed, indexed file."""
    stores = Stores.open(settings)
    try:
        owner = UserDirectory(stores.db).ensure_local_owner(settings.bootstrap_tenant)
        scope = Scope.for_tenant(owner.tenant_id, owner.username)
        case_id = str(CaseRepository(stores.db).create(scope, "Station", owner.user_id)["id"])
        media_id = str(uuid.uuid4())
        MediaRepository(stores.db).add(
            scope,
            case_id=case_id,
            media_id=media_id,
            sha256=hashlib.sha256(media_id.encode()).hexdigest(),
            size=10,
            content_type="audio/wav",
            kind="audio",
            filename="statement.wav",
            object_key=f"cases/{case_id}/media/{media_id}/original",
        )
        segments = [
            SpeechSegment(
                id=segment_id(media_id, 5.0 * n),
                start=5.0 * n,
                end=5.0 * n + 4.0,
                text=text,
                language=language,
                translation=translation,
                speaker=f"S{n + 1}",
            )
            for n, (language, text, translation) in enumerate(LINES)
        ]
        transcripts = TranscriptRepository(stores.documents)
        transcript = transcripts.add(
            Transcript(
                tenant_id=owner.tenant_id, case_id=case_id, media_id=media_id, version=1, segments=segments
            )
        )
        models = ModelPool.from_settings(settings)
        core = CueCore(
            transcripts,
            stores.vectors,
            FindingRepository(stores.documents),
            embedder=lambda: models.get(TextEmbedder),
            cues=load_cue_list(),
        )
        data = TranscriptCompleted(
            tenant_id=owner.tenant_id,
            case_id=case_id,
            media_id=media_id,
            model=ModelInfo(name="base", version="test", backend="faster-whisper"),
            result_count=2,
            version=1,
        )
        asyncio.run(core.handle(data, Context("cues", make_event(data, source="/aima/test"))))
        models.close()
        return case_id, transcript
    finally:
        stores.close()


def search_records(settings: Settings) -> list[dict[str, object]]:
    stores = Stores.open(settings)
    try:
        with stores.db.engine.connect() as connection:
            rows = connection.execute(select(audit_log).where(audit_log.c.action == "media.read"))
            return [dict(row._mapping) for row in rows]
    finally:
        stores.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "aima"


def test_search_prints_the_nearest_segment_first_and_is_audited(data_dir: Path) -> None:
    settings = load_settings(profile="embedded", data_dir=data_dir)
    case_id, transcript = indexed_case(data_dir)

    found = aima(
        data_dir, "search", case_id, "she stayed in with her relatives the whole night", "--limit", "1"
    )
    assert found.returncode == 0, found.stderr
    [line] = found.stdout.splitlines()
    fields = line.split("\t")
    assert fields[1:7] == [transcript.media_id, "statement.wav", "5.0-9.0s", "S2", "de", LINES[1][1]]
    assert fields[7] == f"(English: {LINES[1][2]})"

    as_json = aima(data_dir, "search", case_id, "a vehicle outside the train station", "--json")
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["results"][0]["segment_id"] == transcript.segments[0].id
    assert len(body["results"]) == 2

    records = search_records(settings)
    assert [(r["object"], r["outcome"], r["case_id"]) for r in records] == [
        (f"case/{case_id}/search", "allowed", case_id)
    ] * 2
    assert records[0]["detail"] == {
        "via": "cli",
        "query": "she stayed in with her relatives the whole night",
        "results": 1,
    }


def test_bad_queries_unknown_cases_and_no_model_end_with_one_line(data_dir: Path) -> None:
    settings = load_settings(profile="embedded", data_dir=data_dir)
    case_id, _ = indexed_case(data_dir)
    for query, message in (
        ("   ", "the query is empty"),
        ("x" * 501, "the query is longer than 500 characters"),
    ):
        refused = aima(data_dir, "search", case_id, query)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == f"aima: {message}\n"
    unknown = aima(data_dir, "search", str(uuid.uuid4()), "film")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("aima: no case ")
    assert unknown.stderr.count("\n") == 1
    no_model = aima(data_dir, "search", case_id, "film", AIMA_MODELS__TEXT_EMBEDDER__BACKEND="none")
    assert no_model.returncode == 1
    assert no_model.stderr == (
        "aima: search needs the text embedder: no model configured for text_embedder "
        "(set AIMA_MODELS__TEXT_EMBEDDER__BACKEND)\n"
    )
    assert [r["outcome"] for r in search_records(settings)] == ["failed"]
