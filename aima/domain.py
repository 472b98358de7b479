"""The domain model every layer speaks: case, media, job, step, finding, person, evidence, report.

These are plain pydantic models, independent of storage. Findings are *indicators for human
review*: each carries a confidence, the model that produced it and evidence references
(media, time, frame); reports say what a model saw, never what a person is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def new_id() -> str:
    """A fresh identifier for any domain object."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


class MediaStatus(StrEnum):
    STORED = "stored"
    PROBED = "probed"
    ANALYSED = "analysed"
    FAILED = "failed"


class JobState(StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

    def can_become(self, other: JobState) -> bool:
        """Whether a job in this state may move to ``other`` (`JOB_TRANSITIONS`)."""
        return other in JOB_TRANSITIONS[self]


JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset(
        {
            JobState.AWAITING_APPROVAL,
            JobState.RUNNING,
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.CANCELLED,
        }
    ),
    JobState.AWAITING_APPROVAL: frozenset({JobState.PENDING, JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.PENDING, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
"""The job state machine, in one place that the kernel, the functions and the operator all import:
``running -> pending`` is a resume after a crash; a final state is never left."""


class Step(StrEnum):
    """Pipeline steps, in the order a file usually passes them."""

    PROBE = "probe"
    TRANSCRIBE = "transcribe"
    SPEAKERS = "speakers"
    FACES = "faces"
    PERSONS = "persons"
    POSE = "pose"
    VISION = "vision"
    OCR = "ocr"
    SENSITIVITY = "sensitivity"
    PHRASES = "phrases"
    FUSE = "fuse"
    REPORT = "report"


class Case(_Model):
    id: str = Field(default_factory=new_id)
    tenant_id: str
    name: str = Field(min_length=1, max_length=200)
    status: str = "open"
    retention_days: int | None = Field(default=None, ge=1)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    context: str | None = Field(default=None, max_length=8000, description="the analyst's context")
    created_at: datetime = Field(default_factory=utcnow)


class Media(_Model):
    id: str = Field(default_factory=new_id)
    tenant_id: str
    case_id: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    content_type: str
    kind: MediaKind | None = None
    filename: str | None = Field(default=None, description="metadata only, never a path")
    object_key: str
    status: MediaStatus = MediaStatus.STORED
    failure_reason: str | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="what the probe found")
    created_at: datetime = Field(default_factory=utcnow)


class Job(_Model):
    id: str = Field(default_factory=new_id)
    tenant_id: str
    case_id: str
    parent_job_id: str | None = None
    media_id: str | None = None
    state: JobState = JobState.PENDING
    steps: list[Step] = Field(default_factory=list)
    priority: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None


class EvidenceRef(_Model):
    """Where a statement comes from: a file, and a time range or frame within it."""

    media_id: str
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, ge=0)
    frame_id: str | None = None
    segment_id: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> EvidenceRef:
        if self.start_s is not None and self.end_s is not None and self.end_s < self.start_s:
            raise ValueError("end_s must not be before start_s")
        return self


class ModelRef(_Model):
    name: str
    version: str
    backend: str


class Finding(_Model):
    """An indicator for human review; never a verdict."""

    id: str = Field(default_factory=new_id)
    tenant_id: str
    case_id: str
    step: Step
    label: str
    confidence: float = Field(ge=0, le=1)
    model: ModelRef
    evidence: list[EvidenceRef] = Field(min_length=1)
    person_id: str | None = None
    review_state: str = "unreviewed"


class Person(_Model):
    """A cluster of faces and voices across one case's files; named by a reviewer, not by a model."""

    id: str = Field(default_factory=new_id)
    tenant_id: str
    case_id: str
    label: str
    evidence: list[EvidenceRef] = Field(default_factory=list)


class Report(_Model):
    id: str = Field(default_factory=new_id)
    tenant_id: str
    case_id: str
    version: int = Field(ge=1)
    created_at: datetime = Field(default_factory=utcnow)
    formats: list[str] = Field(default_factory=list)
