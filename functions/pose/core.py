"""The pose function's core: body landmarks on a crop around each person, read for posture cues.

``handle`` takes ``io.aima.faces.detected.v1`` (a stored face result version and the frames it
read, ``frames``) and:

1. skips a media file that is gone; a face step that did not run, or a face result that is gone,
   makes this step ``not_run`` with the reason, and so does a missing pose model;
2. for every frame read (a frame missing from the object store, or that cannot be decoded, is
   skipped with its reason): one crop per face on it, built from the face box and trimmed towards
   neighbours beside the person (`functions.pose.crops`); a crop that neighbours overlap too much
   is skipped, otherwise its confidence falls with the overlap. A frame without faces (people
   seen from behind) gets one whole-frame crop, asking the model for up to two bodies: two mean
   people the step cannot tell apart (skipped), one is posed at a lower confidence;
3. runs the `PoseEstimator` (MediaPipe Pose, one body per crop) and, for a face crop, keeps the
   skeleton only if its head lies at that face (``skipped_mismatch`` otherwise);
4. reads the four posture cues from the landmarks (`functions.pose.cues`) and stores the file's
   next pose version (`aima.storage.poses`);
5. stores every cue that holds as a `PostureFinding` (confidence = cue confidence x crop
   confidence; below the tenant's ``thresholds.indicator_min_confidence`` not stored), replacing
   the file's earlier pose findings, then corroborates them with the vision step's restraint
   indicators of the same frames (`aima.storage.corroboration.corroborate`);
6. returns ``PoseEstimated`` with the counts.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from aima.access.scope import Scope
from aima.domain import EvidenceRef, ModelRef, Step
from aima.model_settings import NONE, ModelTask, model_env
from aima.storage.corroboration import corroborate
from aima.storage.documents import DocumentStore
from aima.storage.faces import FaceRepository, FaceResult
from aima.storage.findings import FindingRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.storage.poses import (
    PersonCrop,
    PoseRepository,
    PoseResult,
    PostureFinding,
    posture_finding_id,
)
from aima.storage.versioned import SkippedFrame
from events.catalogue import EventData, FacesDetected, ModelInfo, PoseEstimated
from functions.pose.framing import FramePoser
from functions.runtime.context import Context
from functions.runtime.results import look_at_frames, not_run
from inference.errors import ModelNotConfigured
from inference.tasks.vision import PoseEstimator

log = logging.getLogger(__name__)

ACTOR = "function:pose"
STEP = Step.POSE
LABELS = {
    "wrists_together": "wrists close together",
    "hands_behind_back": "hands possibly behind the back",
    "arms_raised": "both arms raised above the shoulders",
    "lying_down": "body lying down (torso near horizontal)",
}


class PoseCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.faces.detected.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        documents: DocumentStore,
        media: MediaRepository,
        *,
        estimator: Callable[[], PoseEstimator],
        min_confidence_for: Callable[[str], float] = lambda tenant_id: 0.0,
        workdir: Path | None = None,
    ) -> None:
        """``estimator`` returns the process's pose model (raising `ModelNotConfigured` when there
        is none); ``min_confidence_for(tenant_id)`` the tenant's lowest reported confidence."""
        self._objects = objects
        self._documents = documents
        self._faces = FaceRepository(documents)
        self._poses = PoseRepository(documents)
        self._findings = FindingRepository(documents)
        self._media = media
        self._estimator = estimator
        self._min_confidence_for = min_confidence_for
        self._workdir = workdir

    async def handle(self, data: FacesDetected, ctx: Context) -> list[EventData]:
        """Pose the people of the face result; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, ctx.event_id, data)

    def _handle(self, run: str, data: FacesDetected) -> list[EventData]:
        if self._media.get(Scope.for_case(data.tenant_id, data.case_id, ACTOR), data.media_id) is None:
            log.info("media is gone; nothing to pose", extra={"media_id": data.media_id})
            return []
        if data.status != "completed":
            return not_run(
                self._poses,
                PoseResult,
                PoseEstimated,
                data,
                f"the faces step did not run: {data.reason or 'no reason given'}",
                step="pose",
            )
        faces = self._face_result(data)
        if faces is None:
            return not_run(
                self._poses,
                PoseResult,
                PoseEstimated,
                data,
                f"face result version {data.version} is missing",
                step="pose",
            )
        try:
            model = self._estimator()
            crops, skipped, read = self._pose(data, faces, model)
        except ModelNotConfigured as exc:
            return not_run(
                self._poses,
                PoseResult,
                PoseEstimated,
                data,
                _reason(exc),
                step="pose",
                faces_version=faces.version,
            )
        reference = ModelRef(name=model.name, version=model.version or "unknown", backend=model.backend)
        stored = self._poses.add(
            PoseResult(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                model=reference,
                faces_version=faces.version,
                frames=read,
                crops=crops,
                skipped=skipped,
            )
        )
        floor = self._min_confidence_for(data.tenant_id)
        findings = [f for f in _findings(stored, reference) if f.confidence >= floor]
        self._findings.replace_media(data.tenant_id, data.case_id, data.media_id, STEP, findings, run=run)
        together = corroborate(self._documents, data.tenant_id, data.case_id, data.media_id)
        log.info(
            "people posed",
            extra={
                "media_id": data.media_id,
                "version": stored.version,
                "crops": len(crops),
                "posed": len(stored.posed),
                "findings": len(findings),
                "corroborated": together.corroborated,
                "disagreements": together.disagreements,
            },
        )
        return [
            PoseEstimated(
                **data.media_ids(),
                model=ModelInfo.of(reference),
                result_count=len(findings),
                version=stored.version,
                faces_version=faces.version,
                crops=len(crops),
                posed=len(stored.posed),
                skipped_crops=len(stored.skipped_crops),
                postures=dict(Counter(finding.cue for finding in findings)),
            )
        ]

    def _face_result(self, data: FacesDetected) -> FaceResult | None:
        if data.version is None:
            return self._faces.latest(data.tenant_id, data.case_id, data.media_id)
        return self._faces.get(data.tenant_id, data.case_id, data.media_id, data.version)

    def _pose(
        self, data: FacesDetected, faces: FaceResult, model: PoseEstimator
    ) -> tuple[list[PersonCrop], list[SkippedFrame], int]:
        poser = FramePoser(model, faces)
        crops: list[PersonCrop] = []
        skipped: list[SkippedFrame] = []
        read = 0
        with tempfile.TemporaryDirectory(prefix="aima-pose-", dir=self._workdir) as tmp:
            looked = look_at_frames(
                self._objects, data.frames, Path(tmp), lambda f, p: poser.frame(p, f), skipped
            )
            for _, _, found in looked:
                crops.extend(found)
                read += 1
        return crops, skipped, read


def _findings(stored: PoseResult, model: ModelRef) -> list[PostureFinding]:
    """A finding for every cue that holds on a posed crop."""
    findings: list[PostureFinding] = []
    for crop in stored.posed:
        for check in crop.cues:
            if not check.holds:
                continue
            who = f"face track {crop.track_id}" if crop.track_id else "the only body found in the frame"
            used = [point for point in crop.landmarks if point.name in check.landmarks]
            findings.append(
                PostureFinding(
                    id=posture_finding_id(stored.media_id, stored.version, crop.id, check.cue),
                    tenant_id=stored.tenant_id,
                    case_id=stored.case_id,
                    step=STEP,
                    label=f"posture: {LABELS[check.cue]}",
                    confidence=round(check.confidence * crop.confidence, 4),
                    model=model,
                    evidence=[
                        EvidenceRef(
                            media_id=stored.media_id,
                            start_s=crop.timestamp_s,
                            end_s=crop.timestamp_s,
                            frame_id=crop.frame_id,
                        )
                    ],
                    media_id=stored.media_id,
                    frame_id=crop.frame_id,
                    timestamp_s=crop.timestamp_s,
                    pose_version=stored.version,
                    crop_id=crop.id,
                    track_id=crop.track_id,
                    cue=check.cue,
                    cue_confidence=check.confidence,
                    crop_confidence=crop.confidence,
                    measure=check.measure,
                    landmarks=used,
                    note=(
                        f"The body landmarks (pose model) of {who} in frame {crop.frame_id} at "
                        f"{crop.timestamp_s:.1f} s show {LABELS[check.cue]} ({check.detail}). "
                        "An indicator for human review, not a finding of fact."
                    ),
                )
            )
    return findings


def _reason(exc: ModelNotConfigured) -> str:
    """The reason for ``not_run``; without any backend, which variable makes one."""
    if exc.backend == NONE:
        return f"no pose model configured: set {model_env(ModelTask.POSE_ESTIMATOR, 'backend')}=mediapipe"
    return exc.reason
