"""A small case report made by hand and stored as the fuse step stores one (no analysis): one image with
a person, a posture indicator for review, a gap and a narrative. For the report route tests, the CLI
tests and the gateway's route tables."""

from __future__ import annotations

from datetime import UTC, datetime

from aima.domain import EvidenceRef, ModelRef
from aima.reports.model import (
    Appearance,
    AuditHead,
    CaseReport,
    Custody,
    CustodyFile,
    CustodyModel,
    Gap,
    Indicator,
    NarrativeSection,
    PersonSummary,
    ReportFile,
    ReviewOutcome,
    Statement,
    StepOutcome,
    TimelineEntry,
)
from aima.storage.documents import DocumentStore
from aima.storage.reports import ReportRepository

MEDIA = "m-still-0001"
POSE = ModelRef(name="mediapipe-pose", version="0.10", backend="test")
CASE_NAME = "Harbour fire"


def sample_report(
    tenant_id: str, case_id: str, version: int, *, case_name: str = CASE_NAME, job_id: str | None = "job-1"
) -> CaseReport:
    """Version ``version`` of a case's report: one file, one person, one indicator, one gap."""
    evidence = [EvidenceRef(media_id=MEDIA, frame_id="fr-1")]
    return CaseReport(
        report_id=f"r-{case_id[:8]}-{version}",
        tenant_id=tenant_id,
        case_id=case_id,
        case_name=case_name,
        version=version,
        created_at=datetime(2024, 5, 13, 9, version, tzinfo=UTC),
        job_id=job_id,
        partial=version == 1,
        files=[
            ReportFile(
                id="F1",
                media_id=MEDIA,
                filename="stairwell.jpg",
                kind="image",
                content_type="image/jpeg",
                size=1234,
                sha256="b" * 64,
                uploaded_at=datetime(2024, 5, 13, 8, 0, tzinfo=UTC),
                status="analyzed",
                steps=[StepOutcome(step="pose", status="succeeded", model=POSE, version=1)],
            )
        ],
        timeline=[
            TimelineEntry(
                id="T1",
                kind="posture",
                media_id=MEDIA,
                file="F1",
                text="Person 1: hands behind the back.",
                person_ids=["P1"],
                indicator_id="I1",
                confidence=0.7,
                evidence=evidence,
            )
        ],
        persons=[
            PersonSummary(
                id="P1",
                person_id="person-1",
                name="Person 1",
                appearances=[
                    Appearance(
                        media_id=MEDIA,
                        file="F1",
                        track_id="t-1",
                        first_s=0,
                        last_s=0,
                        faces=1,
                        frame_id="fr-1",
                    )
                ],
                postures=["T1"],
                indicators=["I1"],
                evidence=evidence,
            )
        ],
        indicators=[
            Indicator(
                id="I1",
                finding_id="finding-1",
                indicator_key="k" * 64,
                step="pose",
                category="posture",
                label="hands behind the back",
                confidence=0.7,
                model=POSE,
                media_id=MEDIA,
                file="F1",
                person_ids=["P1"],
                review=ReviewOutcome(decision="unreviewed"),
                evidence=evidence,
            )
        ],
        gaps=[
            Gap(id="G1", kind="step_not_run", text="The vision step was not run.", media_id=MEDIA, file="F1")
        ],
        narrative=NarrativeSection(
            generator="deterministic",
            statements=[
                Statement(text="One person is seen with hands behind the back.", citations=["P1", "I1"])
            ],
        ),
        custody=Custody(
            files=[CustodyFile(media_id=MEDIA, filename="stairwell.jpg", sha256="b" * 64, size=1234)],
            models=[CustodyModel(step="pose", model=POSE)],
            audit_head=AuditHead(chain=tenant_id, seq=0, hash="0" * 64),
            signed_at=datetime(2024, 5, 13, 9, version, tzinfo=UTC),
        ),
    )


def store_report(documents: DocumentStore, tenant_id: str, case_id: str, **fields: object) -> CaseReport:
    """Store the next version of the case's sample report, as fuse stores a report."""
    return ReportRepository(documents).add(
        tenant_id,
        case_id,
        lambda version: sample_report(tenant_id, case_id, version, **fields),  # type: ignore[arg-type]
    )


def ensure_report(documents: DocumentStore, tenant_id: str, case_id: str) -> CaseReport:
    """The case's newest report, a sample one stored first if it has none."""
    latest = ReportRepository(documents).latest(tenant_id, case_id)
    return latest or store_report(documents, tenant_id, case_id)
