"""The sensitivity function's core: every frame of a file scored for explicit material.

``handle`` takes ``io.aima.media.frames.extracted.v1`` (the sampled frames of a video, or the still of
an image) and:

1. scores every frame, in time order, with the `SensitivityScorer` (Open-NSFW by default: the
   probability of explicit material, 0..1). A frame that is missing or cannot be decoded is skipped
   with its reason; the other frames go on;
2. stores the scores as the file's next sensitivity version (`aima.storage.sensitivity`), with the
   tenant's ``thresholds.sensitive_blur`` at this moment;
3. emits ``io.aima.sensitivity.scored.v1`` with the frames at or above that threshold.

The threshold is applied again whenever an image is served (the gateway's image routes), so it is
only recorded here; nothing is blurred here either (blurred derivatives are made on first blurred
serving, `aima.storage.blurred`). No model → ``not_run`` with the reason; a model that is down →
the event is retried by the bus; a file deleted meanwhile → nothing.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from aima.access.scope import Scope
from aima.domain import ModelRef
from aima.storage.media import MediaRepository
from aima.storage.objects import ObjectStore
from aima.storage.sensitivity import FrameScore, SensitivityRepository, SensitivityResult
from aima.storage.versioned import SkippedFrame
from events.catalogue import EventData, FrameRef, FramesExtracted, ModelInfo, SensitivityScored
from functions.runtime.context import Context
from functions.runtime.results import look_at_frames, not_run
from inference.errors import ModelNotConfigured
from inference.tasks.common import ImageInput
from inference.tasks.vision import SensitivityScore, SensitivityScorer

log = logging.getLogger(__name__)

ACTOR = "function:sensitivity"


class SensitivityCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.media.frames.extracted.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        results: SensitivityRepository,
        media: MediaRepository,
        *,
        scorer: Callable[[], SensitivityScorer],
        threshold_for: Callable[[str], float],
        workdir: Path | None = None,
    ) -> None:
        """``scorer`` returns the process's model (raising `ModelNotConfigured` when there is none);
        ``threshold_for`` the tenant's current ``thresholds.sensitive_blur``."""
        self._objects = objects
        self._results = results
        self._media = media
        self._scorer = scorer
        self._threshold_for = threshold_for
        self._workdir = workdir

    async def handle(self, data: FramesExtracted, ctx: Context) -> list[EventData]:
        """Score the file's frames; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, data)

    def _handle(self, data: FramesExtracted) -> list[EventData]:
        if self._media.get(Scope.for_case(data.tenant_id, data.case_id, ACTOR), data.media_id) is None:
            log.info("media is gone; nothing to score", extra={"media_id": data.media_id})
            return []
        threshold = self._threshold_for(data.tenant_id)
        try:
            scorer = self._scorer()
            scores, skipped = self.score(data.frames, scorer)
        except ModelNotConfigured as exc:
            return not_run(
                self._results,
                SensitivityResult,
                SensitivityScored,
                data,
                exc.reason,
                step="sensitivity",
                threshold=threshold,
            )
        stored = self._results.add(
            SensitivityResult(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                version=1,
                model=ModelRef(name=scorer.name, version=scorer.version or "unknown", backend=scorer.backend),
                threshold=threshold,
                frames=scores,
                skipped=skipped,
            )
        )
        flagged = stored.flagged(threshold)
        log.info(
            "frames scored",
            extra={
                "media_id": data.media_id,
                "frames": len(scores),
                "skipped": len(skipped),
                "flagged": flagged,
            },
        )
        return [
            SensitivityScored(
                **data.media_ids(),
                model=ModelInfo.of(stored.model),
                result_count=flagged,
                version=stored.version,
                frames=len(scores),
                skipped_frames=len(skipped),
                threshold=threshold,
                flagged_frames=flagged,
            )
        ]

    def score(
        self, frames: list[FrameRef], scorer: SensitivityScorer
    ) -> tuple[list[FrameScore], list[SkippedFrame]]:
        """Every frame scored in time order; a missing or undecodable frame is skipped with its reason."""
        scores: list[FrameScore] = []
        skipped: list[SkippedFrame] = []
        with tempfile.TemporaryDirectory(prefix="aima-sensitivity-", dir=self._workdir) as tmp:

            def look(frame: FrameRef, path: Path) -> SensitivityScore:
                return scorer.predict(
                    ImageInput(path=path, frame_id=frame.frame_id, timestamp_s=frame.timestamp_s)
                )

            for frame, _, found in look_at_frames(
                self._objects, frames, Path(tmp), look, skipped, verb="scored"
            ):
                scores.append(
                    FrameScore(
                        frame_id=frame.frame_id,
                        object_key=frame.object_key,
                        timestamp_s=frame.timestamp_s,
                        score=found.score,
                    )
                )
        return scores, skipped
