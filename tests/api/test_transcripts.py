"""Transcripts over the API: the JSON document and the list of versions (reads, for viewers too), WebVTT
and SRT subtitles (exports), versions, who may read and who may export, the audit record of each call,
404s and a transcript that was not run."""

from __future__ import annotations

import io
import uuid
from typing import Any

import srt
import webvtt
from sqlalchemy import select

from aima.storage.schema import audit_log
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.subtitles import TranscriptExport
from aima.transcripts import SpeechSegment, Transcript, segment_id
from functions.api.problems import PROBLEM_JSON
from tests.api.conftest import CALLERS, World, unique_png

FORMATS = {
    "": ("application/json", "json"),
    ".vtt": ("text/vtt; charset=utf-8", "vtt"),
    ".srt": ("application/x-subrip; charset=utf-8", "srt"),
}


def add_transcript(world: World, media_id: str, *, case_id: str | None = None, **fields: Any) -> Transcript:
    segments = [
        SpeechSegment(
            id=segment_id(media_id, 0.5),
            start=0.5,
            end=3.2,
            text="Where were you on Tuesday?",
            language="en",
            speaker="S1",
            case_speaker_id="cs-officer",
        ),
        SpeechSegment(id=segment_id(media_id, 3.5), start=3.5, end=4.5, kind="unintelligible"),
        SpeechSegment(
            id=segment_id(media_id, 5.0),
            start=5.0,
            end=7.5,
            text="Ich war zu Hause.",
            language="de",
            translation="I was at home.",
            speaker="S2",
        ),
    ]
    base = {
        "tenant_id": world.tenant,
        "case_id": case_id or world.case_id,
        "media_id": media_id,
        "version": 1,
        "duration_s": 8.0,
        "segments": [s.model_dump() for s in segments],
    }
    repository = TranscriptRepository(world.services.stores.documents)
    return repository.add(Transcript.model_validate(base | fields))


async def uploaded(world: World) -> str:
    """A media file of the shared case named ``scene 1.png`` (uploaded by the owner)."""
    response = await world.client.post(
        f"/api/v1/cases/{world.case_id}/media",
        headers=world.headers("owner") | {"X-AIMA-Filename": "scene%201.png"},
        content=unique_png(),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["media_id"])


def path(world: World, media_id: str, suffix: str = "", case_id: str | None = None) -> str:
    return f"/api/v1/cases/{case_id or world.case_id}/media/{media_id}/transcript{suffix}"


def records(world: World, after: int, action: str) -> list[dict[str, Any]]:
    with world.services.stores.db.engine.connect() as c:
        rows = c.execute(
            select(audit_log)
            .where(audit_log.c.seq > after, audit_log.c.action == action)
            .order_by(audit_log.c.seq)
        )
        return [dict(row._mapping) for row in rows]


def exports(world: World, after: int) -> list[dict[str, Any]]:
    return records(world, after, "case.export")


def reads(world: World, after: int) -> list[dict[str, Any]]:
    return records(world, after, "media.read")


def last_seq(world: World) -> int:
    with world.services.stores.db.engine.connect() as c:
        return int(c.execute(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1)).scalar() or 0)


async def test_each_format_downloads_with_its_type_and_file_name(world: World) -> None:
    media_id = await uploaded(world)
    add_transcript(world, media_id)
    add_transcript(world, media_id)  # version 2
    for suffix, (content_type, fmt) in FORMATS.items():
        response = await world.client.get(path(world, media_id, suffix), headers=world.headers("analyst"))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == content_type
        disposition = f'attachment; filename="scene_1.transcript-v2.{fmt}"'
        assert response.headers["content-disposition"] == disposition
        assert response.headers["cache-control"] == "no-store"

    body = await world.client.get(path(world, media_id), headers=world.headers("analyst"))
    export = TranscriptExport.model_validate(body.json())
    assert (export.transcript.version, export.versions) == (2, [1, 2])
    assert export.exported_by == world.users["analyst"].id
    assert export.transcript.segments[2].translation == "I was at home."

    vtt = await world.client.get(path(world, media_id, ".vtt"), headers=world.headers("analyst"))
    captions = webvtt.from_buffer(io.StringIO(vtt.text)).captions
    assert [c.voice for c in captions] == ["S1", None, "S2"]
    assert captions[1].text == "[unintelligible]"
    assert captions[2].text.splitlines() == ["Ich war zu Hause.", "I was at home."]

    subtitles = list(
        srt.parse(
            (await world.client.get(path(world, media_id, ".srt"), headers=world.headers("owner"))).text
        )
    )
    assert [s.content for s in subtitles] == [
        "S1: Where were you on Tuesday?",
        "[unintelligible]",
        "S2: [de] Ich war zu Hause.\n<i>I was at home.</i>",
    ]


async def test_a_version_is_chosen_with_the_query(world: World) -> None:
    media_id = "m-" + uuid.uuid4().hex[:8]
    add_transcript(world, media_id)
    add_transcript(world, media_id, segments=[])
    first = await world.client.get(
        path(world, media_id, ".srt"), params={"version": 1}, headers=world.headers("owner")
    )
    assert first.status_code == 200
    assert "Tuesday" in first.text
    assert f"{media_id}.transcript-v1.srt" in first.headers["content-disposition"]  # no media row: its id
    latest = await world.client.get(path(world, media_id, ".srt"), headers=world.headers("owner"))
    assert latest.text == ""
    missing = await world.client.get(
        path(world, media_id), params={"version": 3}, headers=world.headers("owner")
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == "No such transcript version."
    for bad in ("0", "x", "-1"):
        answer = await world.client.get(
            path(world, media_id), params={"version": bad}, headers=world.headers("owner")
        )
        assert answer.status_code == 422


async def test_who_may_read_and_who_may_export(world: World) -> None:
    media_id = "m-" + uuid.uuid4().hex[:8]
    add_transcript(world, media_id)
    exporters = {
        "admin": 200,
        "owner": 200,
        "analyst": 200,
        "viewer": 403,  # viewers read the case, they do not take its content out
        "nonmember": 404,
        "guest_member": 403,
        "guest_nonmember": 404,
        "other_admin": 404,
        "anonymous": 401,
    }
    readers = exporters | {"viewer": 200, "guest_member": 200}  # reviewers read in the workspace
    assert set(exporters) == set(CALLERS)
    for suffix, expected in {"": readers, "/versions": readers, ".vtt": exporters, ".srt": exporters}.items():
        got = {}
        for caller in CALLERS:
            response = await world.client.get(path(world, media_id, suffix), headers=world.headers(caller))
            got[caller] = response.status_code
            if response.status_code >= 400:
                assert response.headers["content-type"] == PROBLEM_JSON
        assert got == expected, suffix


async def test_every_export_writes_one_export_record(world: World) -> None:
    media_id = "m-" + uuid.uuid4().hex[:8]
    add_transcript(world, media_id)
    for suffix in (".vtt", ".srt"):
        fmt = FORMATS[suffix][1]
        before = last_seq(world)
        response = await world.client.get(path(world, media_id, suffix), headers=world.headers("analyst"))
        assert response.status_code == 200
        [record] = exports(world, before)
        assert (record["actor"], record["outcome"], record["case_id"]) == (
            world.users["analyst"].id,
            "allowed",
            world.case_id,
        )
        assert record["object"] == f"media/{media_id}/transcript/v1"
        assert record["detail"]["format"] == fmt
        assert record["detail"]["version"] == 1
        assert record["request_id"] == response.headers["x-request-id"]

    before = last_seq(world)
    assert (
        await world.client.get(path(world, media_id, ".vtt"), headers=world.headers("viewer"))
    ).status_code == 403
    [denied] = exports(world, before)
    assert (denied["actor"], denied["outcome"]) == (world.users["viewer"].id, "denied")

    before = last_seq(world)
    assert (
        await world.client.get(path(world, "nothing-here", ".srt"), headers=world.headers("owner"))
    ).status_code == 404
    [failed] = exports(world, before)
    assert (failed["outcome"], failed["detail"]["error"]) == ("failed", "not-found")


async def test_every_read_writes_one_read_record_and_no_export(world: World) -> None:
    media_id = "m-" + uuid.uuid4().hex[:8]
    add_transcript(world, media_id)
    add_transcript(world, media_id)  # version 2
    for params, version in (({}, 2), ({"version": 1}, 1)):
        before = last_seq(world)
        response = await world.client.get(
            path(world, media_id), params=params, headers=world.headers("viewer")
        )
        assert response.status_code == 200
        assert response.json()["transcript"]["version"] == version
        assert exports(world, before) == []
        [record] = reads(world, before)
        assert (record["actor"], record["outcome"], record["case_id"]) == (
            world.users["viewer"].id,
            "allowed",
            world.case_id,
        )
        assert record["object"] == f"media/{media_id}/transcript/v{version}"
        assert record["detail"]["version"] == version
        assert record["request_id"] == response.headers["x-request-id"]

    before = last_seq(world)
    listed = await world.client.get(path(world, media_id, "/versions"), headers=world.headers("guest_member"))
    assert listed.status_code == 200
    [record] = reads(world, before)
    assert (record["actor"], record["object"]) == (
        world.users["guest_member"].id,
        f"media/{media_id}/transcript",
    )
    assert record["detail"]["versions"] == 2
    assert exports(world, before) == []

    for suffix in ("", "/versions"):
        before = last_seq(world)
        missing = await world.client.get(path(world, "nothing-here", suffix), headers=world.headers("viewer"))
        assert missing.status_code == 404
        [failed] = reads(world, before)
        assert (failed["outcome"], failed["detail"]["error"]) == ("failed", "not-found")

        before = last_seq(world)
        hidden = await world.client.get(path(world, media_id, suffix), headers=world.headers("nonmember"))
        assert hidden.status_code == 404
        [denied] = reads(world, before)
        assert (denied["actor"], denied["outcome"]) == (world.users["nonmember"].id, "denied")


async def test_the_versions_say_when_what_and_how_much_without_segments(world: World) -> None:
    media_id = "m-" + uuid.uuid4().hex[:8]
    model = {"name": "whisper-small", "version": "1", "backend": "cpu"}
    add_transcript(world, media_id, model=model)
    add_transcript(world, media_id, status="not_run", reason="no transcriber configured", segments=[])
    response = await world.client.get(path(world, media_id, "/versions"), headers=world.headers("viewer"))
    assert response.status_code == 200
    first, second = response.json()
    assert (first["version"], first["status"], first["reason"], first["model"]) == (
        1,
        "completed",
        None,
        model,
    )
    assert (first["segments"], first["speech_segments"], first["speakers"]) == (3, 2, 2)
    assert first["duration_s"] == 8.0
    assert "created_at" in first
    assert (second["version"], second["status"], second["reason"]) == (
        2,
        "not_run",
        "no transcriber configured",
    )
    assert (second["segments"], second["speech_segments"], second["speakers"], second["model"]) == (
        0,
        0,
        0,
        None,
    )


async def test_no_transcript_is_404_and_another_case_s_is_not_found(world: World) -> None:
    answer = await world.client.get(path(world, "never-transcribed", ".vtt"), headers=world.headers("owner"))
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["detail"] == "No such transcript."

    other_case = world.new_case("Other")
    media_id = "m-" + uuid.uuid4().hex[:8]
    add_transcript(world, media_id, case_id=other_case)
    wrong = await world.client.get(path(world, media_id), headers=world.headers("owner"))
    assert wrong.status_code == 404  # the media's transcript belongs to the other case
    right = await world.client.get(path(world, media_id, case_id=other_case), headers=world.headers("owner"))
    assert right.status_code == 200
    missing_case = await world.client.get(
        path(world, media_id, case_id=str(uuid.uuid4())), headers=world.headers("admin")
    )
    assert missing_case.status_code == 404


async def test_a_transcript_that_was_not_run_exports_its_reason(world: World) -> None:
    media_id = "m-" + uuid.uuid4().hex[:8]
    reason = "no transcriber configured (AIMA_MODELS__TRANSCRIBER__BACKEND=none)"
    add_transcript(world, media_id, status="not_run", reason=reason, segments=[])
    document = await world.client.get(path(world, media_id), headers=world.headers("owner"))
    assert document.status_code == 200
    assert (document.json()["transcript"]["status"], document.json()["transcript"]["reason"]) == (
        "not_run",
        reason,
    )
    for suffix in (".vtt", ".srt"):
        answer = await world.client.get(path(world, media_id, suffix), headers=world.headers("owner"))
        assert answer.status_code == 409
        problem = answer.json()
        assert problem["type"] == "urn:aima:problem:transcript-not-run"
        assert problem["detail"] == f"Transcript version 1 was not run: {reason}."

    failed_id = "m-" + uuid.uuid4().hex[:8]
    add_transcript(world, failed_id, status="failed", reason="the audio could not be decoded", segments=[])
    answer = await world.client.get(path(world, failed_id, ".vtt"), headers=world.headers("owner"))
    assert answer.status_code == 409
    assert answer.json()["detail"] == "Transcript version 1 failed: the audio could not be decoded."


async def test_case_names_of_speakers_replace_the_file_labels(world: World) -> None:
    speakers = CaseSpeakerRepository(world.services.stores.documents)
    speakers.create(world.tenant, world.case_id, "cs-officer", name="Officer <Smith>")
    speakers.create(world.tenant, world.case_id, "cs-unused", name="Nobody")
    media_id = "m-" + uuid.uuid4().hex[:8]
    add_transcript(world, media_id)
    vtt = await world.client.get(path(world, media_id, ".vtt"), headers=world.headers("owner"))
    assert "<v Officer &lt;Smith&gt;>Where were you on Tuesday?</v>" in vtt.text
    assert "<v S2>" in vtt.text  # a file speaker not linked to a case speaker keeps its label
    srt_text = (await world.client.get(path(world, media_id, ".srt"), headers=world.headers("owner"))).text
    assert "Officer <Smith>: Where were you on Tuesday?" in srt_text
    document = (await world.client.get(path(world, media_id), headers=world.headers("owner"))).json()
    assert document["speaker_names"] == {"cs-officer": "Officer <Smith>"}
    assert document["transcript"]["segments"][0]["case_speaker_id"] == "cs-officer"
