"""The vision function's core: each sampled frame described by a vision-language model.

``handle`` takes ``io.aima.media.frames.extracted.v1`` and:

1. skips a media file that is gone;
2. copies every frame the probe stored to a private temporary folder (a frame missing from the
   object store is recorded failed with that reason);
3. asks the `VisionDescriber` for every frame (`VisionDescriber.describe`: frames batched per
   request as the endpoint allows, the case's context prompt in the request, an invalid answer
   asked again once with the validation error, then that frame recorded failed; nothing invented);
4. stores the media file's next vision version (`aima.storage.vision`): per frame the structured
   description or the reason it has none;
5. stores every restraint indicator and visible distress cue as a `VisionFinding` (an indicator for
   human review, with the media, frame id and timestamp as evidence and the model), replacing the
   media file's earlier vision findings, weighs the restraint indicators against the file's
   postures from the pose step (``corroborate``: a matching posture on the same frame raises the
   confidence, a clearly different one is kept as a disagreement), and returns ``VisionDescribed``.

Findings below the tenant's ``thresholds.indicator_min_confidence`` (runtime configuration) are
not stored as findings; they stay in the vision document. The context prompt comes from
``context_for(tenant_id, case_id)`` (the spec reads the tenant's ``analysis.context_prompt``).

No model configured → a ``not_run`` document and event with the reason (which variable to set;
earlier findings kept); the endpoint refusing our credentials → ``not_run`` with the reason; an
endpoint that is down or times out → `ModelUnavailable` propagates and the event is retried.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aima.access.scope import Scope
from aima.domain import EvidenceRef, Finding, ModelRef, Step
from aima.model_settings import NONE, ModelTask, model_env
from aima.storage.findings import FindingRepository
from aima.storage.media import MediaRepository
from aima.storage.objects import InvalidKey, ObjectNotFound, ObjectStore
from aima.storage.vision import FrameVision, VisionDocument, VisionRepository
from events.catalogue import EventData, FrameRef, FramesExtracted, ModelInfo, VisionDescribed
from functions.runtime.context import Context
from inference.errors import InvalidModelOutput, ModelNotConfigured
from inference.tasks.vision import (
    DistressCue,
    RestraintIndicator,
    RestraintType,
    SceneDescription,
    VisionDescriber,
    VisionInput,
)

log = logging.getLogger(__name__)

ACTOR = "function:vision"
STEP = Step.VISION
_NAMESPACE = uuid.UUID("0d6c3f5e-8a41-4f7b-9e2d-5b1c7a9e3f20")
_RESTRAINTS: dict[str, str] = {
    "handcuffs": "handcuffs",
    "cable_ties": "cable ties",
    "rope": "rope",
    "tape": "tape",
    "gag": "a gag",
    "other": "a restraint",
}


class VisionFinding(Finding):
    """A restraint indicator or a visible distress cue in a frame: for human review, never a verdict."""

    media_id: str
    frame_id: str
    timestamp_s: float
    vision_version: int
    kind: Literal["restraint", "distress"]
    restraint_type: RestraintType | None = None
    body_position: str | None = None
    cue: str | None = None
    scene: str
    context_given: bool
    note: str


@dataclass(frozen=True)
class _Frame:
    ref: FrameRef
    path: Path | None
    reason: str | None = None


class VisionCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.media.frames.extracted.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        vision: VisionRepository,
        findings: FindingRepository,
        media: MediaRepository,
        *,
        describer: Callable[[], VisionDescriber],
        context_for: Callable[[str, str], str | None] = lambda tenant_id, case_id: None,
        min_confidence_for: Callable[[str], float] = lambda tenant_id: 0.0,
        corroborate: Callable[[str, str, str], object] | None = None,
        workdir: Path | None = None,
    ) -> None:
        """``describer`` returns the process's vision describer (raising `ModelNotConfigured` when
        there is none); ``context_for(tenant_id, case_id)`` is the case's context prompt, if any;
        ``min_confidence_for(tenant_id)`` the tenant's lowest reported confidence;
        ``corroborate(tenant_id, case_id, media_id)`` weighs the stored findings against the file's
        postures (`aima.storage.corroboration`)."""
        self._objects = objects
        self._vision = vision
        self._findings = findings
        self._media = media
        self._describer = describer
        self._context_for = context_for
        self._min_confidence_for = min_confidence_for
        self._corroborate = corroborate
        self._workdir = workdir

    async def handle(self, data: FramesExtracted, ctx: Context) -> list[EventData]:
        """Describe the frames; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, ctx.event_id, data)

    def _handle(self, run: str, data: FramesExtracted) -> list[EventData]:
        scope = Scope.for_case(data.tenant_id, data.case_id, ACTOR)
        if self._media.get(scope, data.media_id) is None:
            log.info("media is gone; nothing to describe", extra={"media_id": data.media_id})
            return []
        try:
            model = self._describer()
        except ModelNotConfigured as exc:
            return self._not_run(data, _reason(exc))
        context = self._context_for(data.tenant_id, data.case_id) or None
        with tempfile.TemporaryDirectory(prefix="aima-vision-", dir=self._workdir) as tmp:
            frames = [self._download(ref, Path(tmp), index) for index, ref in enumerate(data.frames)]
            inputs = [
                VisionInput(
                    path=frame.path,
                    frame_id=frame.ref.frame_id,
                    timestamp_s=frame.ref.timestamp_s,
                    context=context,
                )
                for frame in frames
                if frame.path is not None
            ]
            try:
                answers = model.describe(inputs) if inputs else []
            except ModelNotConfigured as exc:  # the endpoint refused our credentials or model
                return self._not_run(data, _reason(exc))
        outcomes = iter(answers)
        results: list[FrameVision] = []
        for frame in frames:
            ref = frame.ref
            base = {"frame_id": ref.frame_id, "object_key": ref.object_key, "timestamp_s": ref.timestamp_s}
            answer = next(outcomes) if frame.path is not None else InvalidModelOutput(frame.reason or "")
            if isinstance(answer, InvalidModelOutput):
                log.warning("a frame was not described: %s", answer.reason, extra={"media_id": data.media_id})
                results.append(FrameVision(**base, status="failed", reason=answer.reason))
            else:
                description = answer.model_dump(mode="json")
                results.append(FrameVision(**base, status="described", description=description))
        reference = ModelRef(name=model.name, version=model.version or "unknown", backend=model.backend)
        stored = self._vision.add(
            VisionDocument(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                model=reference,
                context_prompt=context,
                frames=results,
            )
        )
        floor = self._min_confidence_for(data.tenant_id)
        findings = [f for f in self._frame_findings(stored, reference, run) if f.confidence >= floor]
        dropped = self._findings.replace_media(
            data.tenant_id, data.case_id, data.media_id, STEP, findings, run=run
        )
        if self._corroborate is not None:
            self._corroborate(data.tenant_id, data.case_id, data.media_id)
        restraints = sum(1 for finding in findings if finding.kind == "restraint")
        log.info(
            "frames described",
            extra={
                "media_id": data.media_id,
                "version": stored.version,
                "frames": len(results),
                "failed": len(stored.failed),
                "findings": len(findings),
                "stale_findings": dropped,
            },
        )
        return [
            VisionDescribed(
                **data.media_ids(),
                model=ModelInfo.of(reference),
                result_count=len(stored.described),
                version=stored.version,
                frames=len(results),
                described_frames=len(stored.described),
                failed_frames=len(stored.failed),
                restraint_indicators=restraints,
                distress_cues=len(findings) - restraints,
            )
        ]

    # --- the work ------------------------------------------------------------------------------

    def _download(self, ref: FrameRef, folder: Path, index: int) -> _Frame:
        target = folder / f"frame-{index:05d}{Path(ref.object_key).suffix[:8]}"
        try:
            self._objects.download(ref.object_key, target)
        except (ObjectNotFound, InvalidKey):
            return _Frame(ref, None, "the frame is missing from the object store")
        return _Frame(ref, target)

    def _frame_findings(self, stored: VisionDocument, model: ModelRef, run: str) -> list[VisionFinding]:
        findings: list[VisionFinding] = []
        for frame in stored.described:
            description = SceneDescription.model_validate(frame.description)
            for index, restraint in enumerate(description.restraint_indicators):
                findings.append(self._restraint(stored, frame, description, restraint, index, model, run))
            for index, cue in enumerate(description.distress_cues):
                findings.append(self._distress(stored, frame, description, cue, index, model, run))
        return findings

    def _restraint(
        self,
        stored: VisionDocument,
        frame: FrameVision,
        description: SceneDescription,
        restraint: RestraintIndicator,
        index: int,
        model: ModelRef,
        run: str,
    ) -> VisionFinding:
        what = _RESTRAINTS[restraint.type]
        return VisionFinding(
            **self._common(stored, frame, description, "restraint", index, model, run),
            label=f"possible restraint indicator: {what}",
            confidence=restraint.confidence,
            restraint_type=restraint.type,
            body_position=restraint.body_position,
            note=(
                f"The vision model reports what may be {what} in frame {frame.frame_id} at "
                f"{frame.timestamp_s:.1f} s (body position: {restraint.body_position or 'not stated'}). "
                "An indicator for human review, not a finding of fact."
            ),
        )

    def _distress(
        self,
        stored: VisionDocument,
        frame: FrameVision,
        description: SceneDescription,
        cue: DistressCue,
        index: int,
        model: ModelRef,
        run: str,
    ) -> VisionFinding:
        return VisionFinding(
            **self._common(stored, frame, description, "distress", index, model, run),
            label=f"possible visible distress: {cue.cue}",
            confidence=cue.confidence,
            cue=cue.cue,
            note=(
                f"The vision model reports a visible distress cue ({cue.cue}) in frame {frame.frame_id} at "
                f"{frame.timestamp_s:.1f} s. An indicator for human review, not a finding of fact."
            ),
        )

    def _common(
        self,
        stored: VisionDocument,
        frame: FrameVision,
        description: SceneDescription,
        kind: Literal["restraint", "distress"],
        index: int,
        model: ModelRef,
        run: str,
    ) -> dict[str, object]:
        key = f"{run}/{stored.media_id}/{frame.frame_id}/{kind}/{index}"
        return {
            "id": str(uuid.uuid5(_NAMESPACE, key)),
            "tenant_id": stored.tenant_id,
            "case_id": stored.case_id,
            "step": STEP,
            "model": model,
            "evidence": [
                EvidenceRef(
                    media_id=stored.media_id,
                    start_s=frame.timestamp_s,
                    end_s=frame.timestamp_s,
                    frame_id=frame.frame_id,
                )
            ],
            "media_id": stored.media_id,
            "frame_id": frame.frame_id,
            "timestamp_s": frame.timestamp_s,
            "vision_version": stored.version,
            "kind": kind,
            "scene": description.scene,
            "context_given": stored.context_prompt is not None,
        }

    # --- outcomes ------------------------------------------------------------------------------

    def _not_run(self, data: FramesExtracted, reason: str) -> list[EventData]:
        log.info("vision not run: %s", reason, extra={"media_id": data.media_id})
        stored = self._vision.add(
            VisionDocument(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                status="not_run",
                reason=reason,
            )
        )
        return [
            VisionDescribed(
                **data.media_ids(),
                model=ModelInfo.none(),
                result_count=0,
                status="not_run",
                reason=reason,
                version=stored.version,
                frames=len(data.frames),
            )
        ]


def _reason(exc: ModelNotConfigured) -> str:
    """The reason for ``not_run``; without any backend, which variables make one."""
    if exc.backend == NONE:
        task = ModelTask.VISION_DESCRIBER
        return (
            f"no vision-language model configured: set {model_env(task, 'backend')}=openai, "
            f"{model_env(task, 'endpoint')} (an OpenAI-compatible endpoint, e.g. vLLM serving LLaVA) "
            f"and {model_env(task, 'model')}"
        )
    return exc.reason
