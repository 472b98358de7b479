"""The case report: what the pipeline found in a case's files, every statement tied to its evidence.

A report is a versioned document (`aima.storage.reports`): the fuse step builds a new version after
each analysis, older versions stay readable. It is made of

* ``files``: every file it rests on, with its SHA-256 and what each step did with it
  (``succeeded``, ``failed`` or ``not_run``, with the reason);
* ``timeline``: everything with a time (speech, unintelligible audio, person appearances, postures,
  vision and spoken indicators, text in frames, scene changes, file creation times), in order;
* ``persons``: one summary per person of the case (appearances, a linked voice, what that voice
  said, postures, who else appears with them, indicators involving them);
* ``indicators``: findings for human review, each with confidence, model, evidence and the
  reviewer's decision, never verdicts;
* ``gaps``: what could not be seen or heard, and where steps disagree, stated plainly;
* ``narrative``: sentences, each citing the ids of the entries it rests on;
* ``custody``: file hashes, the models that produced the findings and the audit chain head when the
  report was made, signed (`aima.reports.custody`).

Ids inside a report (``T1``, ``P1``, ``I1``, ``G1``, ``F1``) are assigned in a deterministic order from
the content, so two analyses of the same input give the same ids; every entry's ``evidence`` names
the media file and the time range, frame or transcript segment it comes from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import EvidenceRef, ModelRef

SCHEMA_VERSION = "1"
StepStatus = Literal["succeeded", "failed", "not_run", "cancelled"]
EntryKind = Literal[
    "file_created",
    "speech",
    "unintelligible",
    "appearance",
    "posture",
    "indicator",
    "text",
    "scene",
]
IndicatorCategory = Literal["restraint", "posture", "distress", "coercion", "other"]
GapKind = Literal["step_not_run", "step_failed", "unintelligible", "disagreement", "unassigned_faces"]
Decision = Literal["confirmed", "rejected", "unclear", "unreviewed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepOutcome(_Model):
    """What one step did with one file."""

    step: str
    status: StepStatus
    reason: str | None = None
    model: ModelRef | None = None
    version: int | None = Field(default=None, ge=1, description="the version of the step's stored result")


class ReportFile(_Model):
    """A file the report rests on."""

    id: str = Field(description="F1, F2, ... in upload order")
    media_id: str
    filename: str | None = None
    kind: str | None = None
    content_type: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    duration_s: float | None = Field(default=None, ge=0)
    width: int | None = None
    height: int | None = None
    created: datetime | None = Field(default=None, description="creation time from the file's metadata")
    uploaded_at: datetime
    status: str
    sensitive: bool = Field(default=False, description="a frame scored at or above the tenant's threshold")
    thumbnail_key: str | None = None
    steps: list[StepOutcome] = Field(default_factory=list)


class TimelineEntry(_Model):
    """Something that happened in a file at a time."""

    id: str = Field(description="T1, T2, ... in timeline order")
    kind: EntryKind
    media_id: str
    file: str = Field(description="the report's file id (F1, ...)")
    start_s: float | None = Field(default=None, ge=0, description="within the file; None for an image")
    end_s: float | None = Field(default=None, ge=0)
    at: datetime | None = Field(default=None, description="wall-clock time, where the metadata gives one")
    text: str
    language: str | None = None
    translation: str | None = None
    speaker_id: str | None = None
    speaker: str | None = Field(default=None, description="the case speaker's display name")
    person_ids: list[str] = Field(default_factory=list, description="the report's person ids (P1, ...)")
    indicator_id: str | None = None
    confidence: float | None = Field(default=None, ge=0, le=1)
    evidence: list[EvidenceRef] = Field(min_length=1)


class Appearance(_Model):
    """Where a person is seen: one face track of a file."""

    media_id: str
    file: str
    track_id: str
    first_s: float = Field(ge=0)
    last_s: float = Field(ge=0)
    faces: int = Field(ge=1)
    frame_id: str = Field(description="the frame of the best crop")
    crop_key: str | None = None


class CoOccurrence(_Model):
    person: str = Field(description="the other person's report id")
    files: list[str]


class PersonSummary(_Model):
    """The case-limited dossier of one person: what the files show of them, never who they are."""

    id: str = Field(description="P1, P2, ... by first appearance")
    person_id: str
    name: str = Field(description="the reviewer's name for them, else 'Person N'")
    named_by_reviewer: bool = False
    appearances: list[Appearance] = Field(default_factory=list)
    best_crop: Appearance | None = None
    voice: str | None = Field(default=None, description="a case speaker heard while only this person is seen")
    voice_name: str | None = None
    voice_basis: str | None = Field(default=None, description="how the voice was linked, and how surely")
    said: list[str] = Field(default_factory=list, description="timeline ids of what the linked voice said")
    postures: list[str] = Field(default_factory=list, description="timeline ids of posture entries")
    co_occurrences: list[CoOccurrence] = Field(default_factory=list)
    indicators: list[str] = Field(default_factory=list, description="indicator ids involving them")
    evidence: list[EvidenceRef] = Field(min_length=1)


class SpeakerSummary(_Model):
    id: str = Field(description="the case speaker's id")
    name: str
    files: list[str]
    seconds: float = Field(ge=0)
    languages: list[str] = Field(default_factory=list)


class ReviewOutcome(_Model):
    decision: Decision
    reason: str | None = None
    reviewer: str | None = None
    decided_at: datetime | None = None


class Indicator(_Model):
    """A finding for human review: what a model saw, with how surely and where."""

    id: str = Field(description="I1, I2, ... in timeline order")
    finding_id: str
    indicator_key: str
    step: str
    category: IndicatorCategory
    label: str
    confidence: float = Field(ge=0, le=1)
    model: ModelRef
    media_id: str
    file: str
    start_s: float | None = None
    person_ids: list[str] = Field(default_factory=list)
    review: ReviewOutcome
    evidence: list[EvidenceRef] = Field(min_length=1)


class Gap(_Model):
    """Something the analysis could not see or hear, or where two steps disagree."""

    id: str = Field(description="G1, G2, ...")
    kind: GapKind
    text: str
    media_id: str | None = None
    file: str | None = None
    step: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    evidence: list[EvidenceRef] = Field(default_factory=list)


class Statement(_Model):
    text: str = Field(min_length=1)
    citations: list[str] = Field(
        min_length=1, description="ids of timeline entries, persons, indicators, gaps"
    )


class NarrativeSection(_Model):
    """A readable summary; every sentence cites what it rests on."""

    generator: str = Field(description="'deterministic', or the language model that wrote it")
    model: ModelRef | None = None
    statements: list[Statement] = Field(default_factory=list)
    dropped: int = Field(
        default=0, ge=0, description="model sentences dropped for citing nothing or unknown ids"
    )
    note: str | None = Field(default=None, description="why the model was not used, where it was configured")


class CustodyFile(_Model):
    media_id: str
    filename: str | None = None
    sha256: str
    size: int


class CustodyModel(_Model):
    step: str
    model: ModelRef


class AuditHead(_Model):
    chain: str = Field(description="the tenant's audit chain")
    seq: int = Field(ge=0)
    hash: str


class Custody(_Model):
    """Chain of custody: the files, the models and the audit chain head, signed by the platform key."""

    files: list[CustodyFile]
    models: list[CustodyModel]
    audit_head: AuditHead
    signed_at: datetime
    key_id: str | None = None
    signature: str | None = Field(default=None, description="compact JWS over the report's digest")


class CaseReport(_Model):
    """One version of a case's report."""

    schema_version: str = SCHEMA_VERSION
    report_id: str
    tenant_id: str
    case_id: str
    case_name: str
    version: int = Field(ge=1)
    created_at: datetime
    job_id: str | None = None
    context: str | None = Field(default=None, description="the analyst's context for the case")
    partial: bool = Field(default=False, description="some file's steps did not all finish")
    files: list[ReportFile]
    timeline: list[TimelineEntry] = Field(default_factory=list)
    persons: list[PersonSummary] = Field(default_factory=list)
    speakers: list[SpeakerSummary] = Field(default_factory=list)
    indicators: list[Indicator] = Field(default_factory=list)
    gaps: list[Gap] = Field(default_factory=list)
    narrative: NarrativeSection
    custody: Custody

    def ids(self) -> set[str]:
        """Every id a narrative sentence may cite."""
        return {
            *(entry.id for entry in self.timeline),
            *(person.id for person in self.persons),
            *(indicator.id for indicator in self.indicators),
            *(gap.id for gap in self.gaps),
            *(file.id for file in self.files),
        }
