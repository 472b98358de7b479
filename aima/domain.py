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


class JobPhase(StrEnum):
    """Where a job stands, derived from its files' step states (names as Kubernetes shows them)."""

    QUEUED = "Queued"
    ESTIMATING = "Estimating"
    AWAITING_APPROVAL = "AwaitingApproval"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def final(self) -> bool:
        """No step of the job runs any more (`resume` may still queue a cancelled or failed one)."""
        return self in FINAL_PHASES

    @property
    def active(self) -> bool:
        """Admitted and holding one of the tenant's running slots."""
        return self in (JobPhase.ESTIMATING, JobPhase.RUNNING)

    def can_become(self, other: JobPhase) -> bool:
        """Whether a job in this phase may move to ``other`` (`PHASE_TRANSITIONS`)."""
        return other in PHASE_TRANSITIONS[self]


FINAL_PHASES = frozenset(
    {JobPhase.SUCCEEDED, JobPhase.PARTIALLY_SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED}
)

PHASE_TRANSITIONS: dict[JobPhase, frozenset[JobPhase]] = {
    JobPhase.QUEUED: frozenset(
        {JobPhase.ESTIMATING, JobPhase.CANCELLED, JobPhase.FAILED, JobPhase.SUCCEEDED}
    ),
    JobPhase.ESTIMATING: frozenset(
        {JobPhase.AWAITING_APPROVAL, JobPhase.RUNNING, JobPhase.QUEUED, JobPhase.CANCELLED, JobPhase.FAILED}
    ),
    JobPhase.AWAITING_APPROVAL: frozenset({JobPhase.QUEUED, JobPhase.CANCELLED}),
    JobPhase.RUNNING: frozenset(
        {JobPhase.SUCCEEDED, JobPhase.PARTIALLY_SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED}
    ),
    JobPhase.SUCCEEDED: frozenset(),
    JobPhase.PARTIALLY_SUCCEEDED: frozenset(),
    JobPhase.FAILED: frozenset({JobPhase.QUEUED}),
    JobPhase.CANCELLED: frozenset({JobPhase.QUEUED}),
}
"""The job state machine, in one place that the kernel, the functions and the operator all import.
A job with nothing to analyse (every file a duplicate) succeeds from the queue.
An approved job goes back to the queue (it is admitted under the tenant's limits like any other);
``resume`` queues a cancelled or failed job again, and only its unfinished steps run."""


class StepState(StrEnum):
    """One step of one file (a child job)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_RUN = "not_run"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self not in (StepState.PENDING, StepState.RUNNING)

    def can_become(self, other: StepState) -> bool:
        """Whether a step in this state may move to ``other`` (`STEP_TRANSITIONS`)."""
        return other in STEP_TRANSITIONS[self]


STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset(
        {StepState.RUNNING, StepState.NOT_RUN, StepState.CANCELLED, StepState.FAILED, StepState.SUCCEEDED}
    ),
    StepState.RUNNING: frozenset(
        {StepState.SUCCEEDED, StepState.FAILED, StepState.NOT_RUN, StepState.CANCELLED, StepState.PENDING}
    ),
    StepState.SUCCEEDED: frozenset(),
    StepState.NOT_RUN: frozenset(),
    StepState.FAILED: frozenset({StepState.PENDING}),
    StepState.CANCELLED: frozenset({StepState.PENDING}),
}
"""``pending -> running -> succeeded | failed | not_run | cancelled``. ``running -> pending`` is a
worker that died mid-step (its lease ran out, or a resume); ``pending -> succeeded`` a step that
ended without being seen to start (its event was handled before the ledger existed, or by a
worker that recorded only its end); ``failed`` and ``cancelled`` go back to ``pending`` on resume."""


class Priority(StrEnum):
    """A job's priority class; FIFO within a class, and ``urgent`` jumps every queue."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """Higher runs first (the stored value)."""
        return _RANKS[self]

    @classmethod
    def of_rank(cls, rank: int) -> Priority:
        return next((p for p, r in _RANKS.items() if r == rank), Priority.NORMAL)


_RANKS = {Priority.LOW: -1, Priority.NORMAL: 0, Priority.HIGH: 1, Priority.URGENT: 2}


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
    """A parent job (one request, ``media_id`` None) or a child job (one file of it)."""

    id: str = Field(default_factory=new_id)
    tenant_id: str
    case_id: str
    parent_job_id: str | None = None
    media_id: str | None = None
    phase: JobPhase = JobPhase.QUEUED
    steps: list[Step] = Field(default_factory=list)
    priority: Priority = Priority.NORMAL
    hold_until: datetime | None = Field(default=None, description="low priority: not before this time")
    require_approval: bool = False
    approved_by: str | None = None
    approved_at: datetime | None = None
    context: str | None = Field(default=None, max_length=8000)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    reference: str | None = Field(default=None, max_length=300, description="the submitter's own id")
    estimate: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None
    reason: str | None = None
    submitted_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


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
