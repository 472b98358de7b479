"""The catalogue of AIMA event types: one versioned pydantic model per CloudEvents ``type``.

Names follow ``io.aima.<subject>.<verb>.v<N>``. A breaking change to a payload gets a new
version and a new class; both stay in the catalogue while producers migrate. Payloads carry ids
and references (object keys, counts, model names), never media content. JSON Schemas of every
payload are exported to ``events/schemas/`` (``python -m events.schemas_export``) and CI checks
that the checked-in files match these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from aima.domain import JobPhase, MediaKind, StepState
from events.envelope import CloudEvent, new_event_id


class EventData(BaseModel):
    """Base of every event payload; ``TYPE`` is its CloudEvents type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""


class CaseScoped(EventData):
    """A payload about one case of one tenant."""

    tenant_id: str
    case_id: str


class MediaScoped(CaseScoped):
    """A payload about one media file of a case."""

    media_id: str
    job_id: str | None = None

    def media_ids(self) -> dict[str, str | None]:
        """The ids that a payload about the same file carries on: tenant, case, media and job."""
        return {
            "tenant_id": self.tenant_id,
            "case_id": self.case_id,
            "media_id": self.media_id,
            "job_id": self.job_id,
        }


class NamedModel(Protocol):
    """Anything that names a model: a stored `ModelRef`, or a loaded model of `inference`."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def backend(self) -> str: ...


class ModelInfo(BaseModel):
    """Which model produced a result: every finding names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    backend: str

    @classmethod
    def none(cls) -> ModelInfo:
        """What a result names when no model ran (``not_run``)."""
        return cls(name="", version="", backend="none")

    @classmethod
    def of(cls, model: NamedModel | None) -> ModelInfo:
        """The event's copy of a model or a stored result's model reference (`none` if none)."""
        if model is None:
            return cls.none()
        return cls(name=model.name, version=model.version, backend=model.backend)


# --- cases ---------------------------------------------------------------------------------


class CaseCreated(CaseScoped):
    TYPE = "io.aima.case.created.v1"
    DESCRIPTION = "A case was opened."
    name: str


class CaseDeleted(CaseScoped):
    TYPE = "io.aima.case.deleted.v1"
    DESCRIPTION = "A case and every trace of it (objects, rows, vectors, documents, cache) was removed."


# --- media lifecycle -----------------------------------------------------------------------


class MediaUploaded(MediaScoped):
    TYPE = "io.aima.media.uploaded.v1"
    DESCRIPTION = "A file was stored in a case; the original is kept until the case is deleted."
    object_key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    content_type: str
    filename: str | None = None


class MediaProbed(MediaScoped):
    TYPE = "io.aima.media.probed.v1"
    DESCRIPTION = "Container, codec, duration, resolution and EXIF metadata were read."
    kind: MediaKind
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None


class FrameRef(BaseModel):
    """One sampled video frame (or the image itself) with its exact timestamp."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame_id: str
    object_key: str
    timestamp_s: float = Field(ge=0)


class FramesExtracted(MediaScoped):
    TYPE = "io.aima.media.frames.extracted.v1"
    DESCRIPTION = "Frames were sampled (scene changes plus an even floor) and stored."
    frames: list[FrameRef]


class AudioExtracted(MediaScoped):
    TYPE = "io.aima.media.audio.extracted.v1"
    DESCRIPTION = "The audio track was extracted to 16 kHz mono for transcription."
    object_key: str
    sample_rate: int = 16000
    duration_s: float = Field(ge=0)


class MediaFailed(MediaScoped):
    TYPE = "io.aima.media.failed.v1"
    DESCRIPTION = "A file could not be processed by a step; the reason is kept for the reviewer."
    step: str
    reason: str


# --- analysis ------------------------------------------------------------------------------


class AnalysisResult(MediaScoped):
    """Common shape of an analysis step's completion: which model, how many results."""

    model: ModelInfo
    result_count: int = Field(ge=0)
    status: Literal["completed", "not_run"] = "completed"
    reason: str | None = None


class TranscriptCompleted(AnalysisResult):
    TYPE = "io.aima.transcript.completed.v1"
    DESCRIPTION = (
        "Speech was transcribed with word timestamps and a language per segment; the transcript is "
        "stored as a new version (``result_count`` is its number of segments)."
    )
    language: str | None = Field(default=None, description="the language spoken longest")
    version: int | None = Field(default=None, ge=1, description="the stored transcript version")
    audio_key: str | None = Field(default=None, description="the 16 kHz audio it was made from")
    speech_segments: int = Field(default=0, ge=0)
    unintelligible: int = Field(default=0, ge=0, description="speech regions that yielded no text")
    words: int = Field(default=0, ge=0)
    languages: dict[str, float] = Field(default_factory=dict, description="seconds of speech per language")
    speech_s: float = Field(default=0.0, ge=0)


class SpeakersCompleted(AnalysisResult):
    TYPE = "io.aima.speakers.completed.v1"
    DESCRIPTION = (
        "The speech turns of a transcript version were embedded, grouped into the file's speakers and "
        "linked to the case's speakers (``result_count`` is the number of file speakers)."
    )
    version: int | None = Field(default=None, ge=1, description="the transcript version labelled")
    speakers: int = Field(default=0, ge=0, description="speakers found in the file")
    case_speakers: int = Field(default=0, ge=0, description="case speakers they belong to")
    new_case_speakers: int = Field(default=0, ge=0, description="voices not heard in the case before")
    turns: int = Field(default=0, ge=0, description="speech turns labelled with a speaker")


class FacesDetected(AnalysisResult):
    TYPE = "io.aima.faces.detected.v1"
    DESCRIPTION = (
        "Faces were detected, aligned and embedded in a file's frames and followed across them as tracks; "
        "the result is stored as a new version (``result_count`` is its number of tracks)."
    )
    version: int | None = Field(default=None, ge=1, description="the stored face result version")
    frames: list[FrameRef] = Field(
        default_factory=list, description="the frames read, for the steps that look at the same frames"
    )
    skipped_frames: int = Field(default=0, ge=0, description="frames that could not be read")
    faces: int = Field(default=0, ge=0, description="face detections over all frames")
    tracks: int = Field(default=0, ge=0, description="faces followed across frames (one a face of an image)")
    detectors: dict[str, int] = Field(default_factory=dict, description="detections per detector")


class PoseEstimated(AnalysisResult):
    TYPE = "io.aima.pose.estimated.v1"
    DESCRIPTION = (
        "Body landmarks were estimated on a crop around each person of a face result and read for posture "
        "cues (``result_count`` is the number of posture findings, indicators for human review)."
    )
    version: int | None = Field(default=None, ge=1, description="the stored pose result version")
    faces_version: int | None = Field(default=None, ge=1, description="the face result the crops came from")
    crops: int = Field(default=0, ge=0, description="person crops given to the model")
    posed: int = Field(default=0, ge=0, description="crops with a body found")
    skipped_crops: int = Field(default=0, ge=0, description="crops skipped because neighbours overlap them")
    postures: dict[str, int] = Field(default_factory=dict, description="posture findings per cue")


class VisionDescribed(AnalysisResult):
    TYPE = "io.aima.vision.described.v1"
    DESCRIPTION = "A vision-language model described frames (or recorded 'not run' without an endpoint)."
    version: int | None = Field(default=None, ge=1, description="the stored vision document version")
    frames: int = Field(default=0, ge=0, description="frames given to the model")
    described_frames: int = Field(default=0, ge=0)
    failed_frames: int = Field(default=0, ge=0, description="frames without a valid answer (reason kept)")
    restraint_indicators: int = Field(default=0, ge=0, description="restraint indicator findings")
    distress_cues: int = Field(default=0, ge=0, description="visible distress cue findings")


class TextRecognized(AnalysisResult):
    TYPE = "io.aima.ocr.completed.v1"
    DESCRIPTION = (
        "Text in frames and images was recognised and stored as a new version (``result_count`` is its "
        "number of lines, each deduplicated across consecutive frames)."
    )
    version: int | None = Field(default=None, ge=1, description="the stored OCR result version")
    frames: int = Field(default=0, ge=0, description="frames read")
    skipped_frames: int = Field(default=0, ge=0, description="frames that could not be read")
    languages: dict[str, int] = Field(default_factory=dict, description="lines per language")
    indexed_lines: int = Field(default=0, ge=0, description="lines put into the case search index")


class SensitivityScored(AnalysisResult):
    TYPE = "io.aima.sensitivity.scored.v1"
    DESCRIPTION = (
        "Frames were scored for explicit content so reviewers see them blurred first; the scores are "
        "stored as a new version (``result_count`` is the number of frames above the tenant's threshold)."
    )
    version: int | None = Field(default=None, ge=1, description="the stored sensitivity result version")
    frames: int = Field(default=0, ge=0, description="frames scored")
    skipped_frames: int = Field(default=0, ge=0, description="frames that could not be read")
    threshold: float | None = Field(default=None, ge=0, le=1, description="the tenant's blur threshold")
    flagged_frames: int = Field(default=0, ge=0, description="frames served blurred until opened")


class PhrasesMatched(AnalysisResult):
    TYPE = "io.aima.transcript.phrases.matched.v1"
    DESCRIPTION = (
        "A transcript version was indexed for search and matched against the distress and coercion cue "
        "list (``result_count`` is its number of findings, indicators for human review)."
    )
    transcript_version: int | None = Field(default=None, ge=1, description="the transcript version read")
    cue_list_version: int | None = Field(default=None, ge=1, description="the cue list it was matched with")
    indexed_segments: int = Field(default=0, ge=0, description="speech segments put into the search index")
    categories: dict[str, int] = Field(default_factory=dict, description="findings per cue category")


class PersonsClustered(CaseScoped):
    TYPE = "io.aima.persons.clustered.v1"
    DESCRIPTION = (
        "The face tracks of a file were linked to the case's persons (incrementally, as files arrive); "
        "a track that fits no person well enough stays unassigned."
    )
    person_count: int = Field(ge=0, description="persons of the case after this file")
    model: ModelInfo
    media_id: str | None = None
    job_id: str | None = None
    status: Literal["completed", "not_run"] = "completed"
    reason: str | None = None
    faces_version: int | None = Field(default=None, ge=1, description="the face result linked")
    tracks: int = Field(default=0, ge=0, description="tracks of the file")
    assigned: int = Field(default=0, ge=0, description="tracks linked to a person")
    unassigned: int = Field(default=0, ge=0, description="tracks that fit no person well enough")
    new_persons: int = Field(default=0, ge=0, description="persons first seen in this file")


class FusionCompleted(CaseScoped):
    TYPE = "io.aima.fusion.completed.v1"
    DESCRIPTION = "Timeline, per-person summaries and indicators with evidence were built."
    job_id: str | None = None
    indicator_count: int = Field(ge=0)
    timeline_entries: int = Field(ge=0)


class ReportRequested(CaseScoped):
    TYPE = "io.aima.report.requested.v1"
    DESCRIPTION = (
        "A user asked for a new report version of the case from its current results (after reviewer "
        "decisions or renamed persons, say); fuse builds it."
    )
    requested_by: str = Field(min_length=1, max_length=200)


class ReportGenerated(CaseScoped):
    TYPE = "io.aima.report.generated.v1"
    DESCRIPTION = "A versioned report was rendered; every statement cites evidence."
    report_id: str
    version: int = Field(ge=1)
    formats: list[str]


# --- jobs ----------------------------------------------------------------------------------


class JobCreated(CaseScoped):
    TYPE = "io.aima.job.created.v1"
    DESCRIPTION = (
        "An analysis job (a parent, or one child per file) was created; a parent waits in the queue "
        "until the scheduler admits it."
    )
    job_id: str
    parent_job_id: str | None = None
    media_id: str | None = None
    steps: list[str] = Field(default_factory=list)
    priority: str = Field(default="normal", description="low, normal, high or urgent")


class SchedulingRequested(EventData):
    TYPE = "io.aima.job.scheduling.requested.v1"
    DESCRIPTION = (
        "Something that may free or fill a running slot happened (a job was approved, resumed or "
        "cancelled; a hold window opened; a schedule ticked): the scheduler looks at the queue again."
    )
    tenant_id: str | None = Field(default=None, description="only this tenant's queue; none: all")
    case_id: str | None = None
    job_id: str | None = Field(default=None, description="a resumed job to pick up where it stopped")
    reason: str = Field(default="tick", max_length=200)


class JobProgressed(CaseScoped):
    TYPE = "io.aima.job.progressed.v1"
    DESCRIPTION = "A job's phase changed, or a step of one of its files changed state."
    job_id: str
    phase: JobPhase
    media_id: str | None = None
    step: str | None = None
    state: StepState | None = None
    progress: float = Field(ge=0, le=1)


class JobFinished(CaseScoped):
    TYPE = "io.aima.job.finished.v1"
    DESCRIPTION = "A job reached a final phase (succeeded, partially succeeded, failed or cancelled)."
    job_id: str
    phase: Literal["Succeeded", "PartiallySucceeded", "Failed", "Cancelled"]
    reason: str | None = None
    finished_at: datetime | None = None


# --- platform ------------------------------------------------------------------------------


class ConfigChanged(EventData):
    TYPE = "io.aima.config.changed.v1"
    DESCRIPTION = "A runtime setting changed; running functions reload it."
    tenant_id: str | None = None
    key: str
    version: int = Field(ge=1)


# --- retention -----------------------------------------------------------------------------


class RetentionSweepRequested(EventData):
    TYPE = "io.aima.retention.sweep.requested.v1"
    DESCRIPTION = "Purge expired intermediate artefacts now (sent on a schedule, e.g. by a PingSource)."
    now: AwareDatetime | None = None  # the reference time; default: the event's time


class RetentionSwept(CaseScoped):
    TYPE = "io.aima.retention.swept.v1"
    DESCRIPTION = "A case's expired intermediates (frames, audio extracts) were purged; originals stay."
    media_count: int = Field(ge=0)
    objects_deleted: int = Field(ge=0)
    bytes_freed: int = Field(ge=0)


CATALOGUE: dict[str, type[EventData]] = {
    cls.TYPE: cls
    for cls in (
        CaseCreated,
        CaseDeleted,
        MediaUploaded,
        MediaProbed,
        FramesExtracted,
        AudioExtracted,
        MediaFailed,
        TranscriptCompleted,
        SpeakersCompleted,
        FacesDetected,
        PoseEstimated,
        VisionDescribed,
        TextRecognized,
        SensitivityScored,
        PhrasesMatched,
        PersonsClustered,
        FusionCompleted,
        ReportRequested,
        ReportGenerated,
        JobCreated,
        SchedulingRequested,
        JobProgressed,
        JobFinished,
        ConfigChanged,
        RetentionSweepRequested,
        RetentionSwept,
    )
}

D = TypeVar("D", bound=EventData)


class UnknownEventType(LookupError):
    """The event's type is not in the catalogue."""


def make_event(
    data: EventData,
    *,
    source: str,
    subject: str | None = None,
    event_id: str | None = None,
    **extensions: Any,
) -> CloudEvent:
    """Wrap a payload in a CloudEvent; tenant and case ids are copied into extensions."""
    if not data.TYPE:
        raise UnknownEventType(f"{type(data).__name__} has no event type")
    scope: dict[str, Any] = {}
    if isinstance(data, CaseScoped):
        scope = {"tenantid": data.tenant_id, "caseid": data.case_id}
    return CloudEvent(
        id=event_id or new_event_id(),
        source=source,
        type=data.TYPE,
        subject=subject,
        dataschema=schema_uri(data.TYPE),
        data=data.model_dump(mode="json"),
        **{**scope, **{k: v for k, v in extensions.items() if v is not None}},
    )


def parse_data(event: CloudEvent, expected: type[D] | None = None) -> EventData:
    """Validate an event's data against its catalogue model (and the expected class, if given)."""
    model = CATALOGUE.get(event.type)
    if model is None:
        raise UnknownEventType(f"unknown event type {event.type!r}")
    if expected is not None and model is not expected:
        raise UnknownEventType(f"expected {expected.TYPE!r}, got {event.type!r}")
    return model.model_validate(event.data or {})


def schema_uri(event_type: str) -> str:
    """The ``dataschema`` URI of an event type (a path in this repository)."""
    return f"https://aima.io/schemas/{event_type}.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every payload, keyed by event type."""
    out: dict[str, dict[str, Any]] = {}
    for event_type, model in sorted(CATALOGUE.items()):
        schema = model.model_json_schema()
        schema["$id"] = schema_uri(event_type)
        schema["description"] = model.DESCRIPTION
        out[event_type] = schema
    return out
