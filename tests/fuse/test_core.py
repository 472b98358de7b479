"""The fuse core: which steps a file needs, when a job is done, and one report per job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aima.access.scope import Scope
from aima.reports.model import AuditHead, CaseReport, Custody, NarrativeSection
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.outcomes import Outcome, OutcomeRepository
from events.catalogue import (
    AnalysisResult,
    AudioExtracted,
    EventData,
    FacesDetected,
    FrameRef,
    FramesExtracted,
    MediaFailed,
    MediaProbed,
    ModelInfo,
    PersonsClustered,
    PhrasesMatched,
    PoseEstimated,
    ReportGenerated,
    ReportRequested,
    SensitivityScored,
    SpeakersCompleted,
    TextRecognized,
    TranscriptCompleted,
    VisionDescribed,
    make_event,
)
from functions.fuse.core import FuseCore, Pipeline
from functions.fuse.spec import pipeline_of
from functions.runtime.context import Context
from functions.runtime.spec import discover
from tests.support import CaseStores, add_media, case_stores

FRAMES = FramesExtracted.TYPE
AUDIO = AudioExtracted.TYPE
MODEL = ModelInfo(name="m", version="1", backend="cpu")
IMAGE_STEPS = {"probe", "ocr", "vision", "faces", "sensitivity"}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return pipeline_of(discover())


def done(step: str, status: str = "succeeded") -> Outcome:
    return Outcome(media_id="m", step=step, status=status)


def test_the_steps_a_file_needs_follow_the_specs(pipeline: Pipeline) -> None:
    assert pipeline.expected({FRAMES}, {}) == IMAGE_STEPS
    assert pipeline.expected({FRAMES}, {"faces": done("faces")}) == IMAGE_STEPS | {"persons", "pose"}
    assert pipeline.expected({FRAMES}, {"faces": done("faces", "not_run")}) == IMAGE_STEPS | {
        "persons",
        "pose",
    }
    assert pipeline.expected({FRAMES}, {"faces": done("faces", "failed")}) == IMAGE_STEPS
    assert pipeline.expected({AUDIO}, {}) == {"probe", "transcribe"}
    after = {"transcribe": done("transcribe")}
    assert pipeline.expected({AUDIO}, after) == {"probe", "transcribe", "speakers", "cues"}
    assert pipeline.expected({AUDIO}, {"transcribe": done("transcribe", "failed")}) == {"probe", "transcribe"}
    assert "fuse" not in pipeline.expected({FRAMES, AUDIO}, {s: done(s) for s in ("faces", "transcribe")})


class World:
    def __init__(self, stores: CaseStores, pipeline: Pipeline) -> None:
        self.stores = stores
        self.tenant, self.case = stores.tenant_id, stores.case_id
        self.jobs = JobRepository(stores.db)
        scope = Scope.for_tenant(self.tenant, "tester")
        self.parent = self.jobs.create_parent(scope, self.case, ["probe"], announce=False)
        case_scope = Scope.for_case(self.tenant, self.case, "tester")
        registry = MediaRepository(stores.db)
        media = {
            name: add_media(
                stores.objects, registry, case_scope, self.case, b"x", content_type="x/y", filename=name
            )[0]
            for name in ("audio", "image")
        }
        self.children = {
            name: self.jobs.create_child(
                scope, self.case, self.parent.id, media[name], ["probe"], announce=False
            )
            for name in ("audio", "image")
        }
        self.extracted: dict[str, set[str]] = {media["audio"]: {AUDIO}, media["image"]: {FRAMES}}
        self.built: list[str | None] = []
        self.lock = threading.Lock()
        self.core = self.make_core(pipeline)

    def make_core(self, pipeline: Pipeline) -> FuseCore:
        return FuseCore(
            OutcomeRepository(self.stores.documents),
            self.jobs,
            pipeline,
            extracted=lambda tenant, case, media: self.extracted.get(media),
            build_report=self.build,
        )

    def build(self, tenant_id: str, case_id: str, job_id: str | None) -> CaseReport:
        with self.lock:
            self.built.append(job_id)
        now = datetime.now(UTC)
        return CaseReport(
            report_id="r",
            tenant_id=tenant_id,
            case_id=case_id,
            case_name="c",
            version=len(self.built),
            created_at=now,
            job_id=job_id,
            files=[],
            narrative=NarrativeSection(generator="deterministic"),
            custody=Custody(
                files=[], models=[], audit_head=AuditHead(chain="t", seq=0, hash="0"), signed_at=now
            ),
        )

    def ids(self, name: str) -> dict[str, str | None]:
        child = self.children[name]
        return {
            "tenant_id": self.tenant,
            "case_id": self.case,
            "media_id": child.media_id,
            "job_id": child.id,
        }

    def send(self, step: str, data: EventData, core: FuseCore | None = None) -> list[EventData]:
        event = make_event(data, source=f"/aima/functions/{step}")
        return (core or self.core)._handle(data, Context("fuse", event))


@pytest.fixture
def world(tmp_path: Path, pipeline: Pipeline) -> Iterator[World]:
    with case_stores(tmp_path, "fuse") as stores:
        yield World(stores, pipeline)


def result(kind: type[AnalysisResult], world: World, name: str, **fields: Any) -> EventData:
    return kind(**world.ids(name), model=MODEL, result_count=0, **fields)


def image_events(world: World) -> list[tuple[str, EventData]]:
    ids = world.ids("image")
    frames = [FrameRef(frame_id="f", object_key="k", timestamp_s=0)]
    return [
        ("probe", MediaProbed(**ids, kind="image")),
        ("probe", FramesExtracted(**ids, frames=frames)),
        ("ocr", result(TextRecognized, world, "image")),
        ("vision", result(VisionDescribed, world, "image", status="not_run", reason="no model")),
        ("sensitivity", result(SensitivityScored, world, "image")),
        ("faces", result(FacesDetected, world, "image")),
        ("persons", PersonsClustered(**world.ids("image"), person_count=1, model=MODEL)),
        ("pose", result(PoseEstimated, world, "image")),
    ]


def audio_events(world: World) -> list[tuple[str, EventData]]:
    ids = world.ids("audio")
    return [
        ("probe", MediaProbed(**ids, kind="audio")),
        ("probe", AudioExtracted(**ids, object_key="a", duration_s=3)),
        ("transcribe", result(TranscriptCompleted, world, "audio")),
        ("speakers", result(SpeakersCompleted, world, "audio")),
        ("cues", result(PhrasesMatched, world, "audio")),
    ]


def test_the_report_is_built_once_the_last_step_of_the_last_file_reports(world: World) -> None:
    events = image_events(world) + audio_events(world)
    *before, last = events
    for step, data in before:
        assert world.send(step, data) == [], step
    assert world.built == []
    emitted = world.send(*last)
    assert [type(e) for e in emitted] == [type(e) for e in emitted if e.TYPE.startswith("io.aima.")]
    assert world.built == [world.parent.id]
    assert any(isinstance(e, ReportGenerated) for e in emitted)
    assert world.send(*last) == []  # a redelivery builds nothing more
    assert world.built == [world.parent.id]


def test_events_out_of_order_never_end_a_file_early(world: World) -> None:
    events = audio_events(world) + image_events(world)
    # the persons and pose results arrive before faces' own event, the audio's after the image's probe
    reordered = [events[i] for i in (5, 11, 12, 6, 7, 8, 9, 0, 2, 3, 4, 1)] + [events[10]]
    for step, data in reordered[:-1]:
        assert world.send(step, data) == [], step
    assert world.built == []
    assert world.send(*reordered[-1])
    assert world.built == [world.parent.id]


def test_a_failed_step_ends_its_branch_and_a_failed_probe_its_file(world: World) -> None:
    ids = world.ids("audio")
    for step, data in image_events(world):
        world.send(step, data)
    world.send("probe", MediaProbed(**ids, kind="audio"))
    world.send("probe", AudioExtracted(**ids, object_key="a", duration_s=3))
    assert world.built == []
    world.send("transcribe", MediaFailed(**ids, step="transcription", reason="model crashed"))
    assert world.built == [world.parent.id]
    outcome = OutcomeRepository(world.stores.documents).for_media(
        world.tenant, world.case, str(ids["media_id"])
    )
    assert outcome["transcribe"].status == "failed"
    assert outcome["transcribe"].reason == "model crashed"


def test_two_fuse_processes_seeing_the_end_at_once_build_one_report(world: World, pipeline: Pipeline) -> None:
    events = image_events(world) + audio_events(world)
    for step, data in events[:-1]:
        world.send(step, data)
    cores = [world.make_core(pipeline) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda core: world.send(*events[-1], core=core), cores))
    assert world.built == [world.parent.id]


def test_a_requested_report_is_built_at_once(world: World) -> None:
    asked = ReportRequested(tenant_id=world.tenant, case_id=world.case, requested_by="owner")
    assert [type(e) for e in world.send("api", asked)][-1] is ReportGenerated
    assert world.send("api", asked)
    assert world.built == [None, None]  # every request is a new version; no job is claimed
