"""What the frame steps (OCR, faces, pose, sensitivity) share: skipped frames and ``not_run``."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel

from aima.storage.versioned import SkippedFrame, VersionedRepository
from events.catalogue import AnalysisResult, EventData, FrameRef, MediaScoped, ModelInfo

log = logging.getLogger(__name__)

MISSING_FRAME = "the frame is missing from the object store"

R = TypeVar("R", bound=BaseModel)


def skipped_frame(frame: FrameRef, reason: str) -> SkippedFrame:
    """A frame the step could not look at, logged with its reason."""
    log.warning("frame skipped: %s", reason, extra={"frame_id": frame.frame_id})
    return SkippedFrame(frame_id=frame.frame_id, timestamp_s=frame.timestamp_s, reason=reason)


def not_run(
    results: VersionedRepository[R],
    result: type[R],
    event: type[AnalysisResult],
    data: MediaScoped,
    reason: str,
    *,
    step: str,
    **fields: Any,
) -> list[EventData]:
    """Store the step's ``not_run`` version of the media (with ``fields``) and the event saying so
    (``version=1`` is replaced by the next free version)."""
    log.info("%s not run: %s", step, reason, extra={"media_id": data.media_id})
    scope = {"tenant_id": data.tenant_id, "case_id": data.case_id, "media_id": data.media_id}
    stored: Any = results.add(result(**scope, version=1, status="not_run", reason=reason, **fields))
    payload = {**data.media_ids(), "model": ModelInfo.none(), "result_count": 0, "status": "not_run"}
    return [event.model_validate({**payload, "reason": reason, "version": stored.version, **fields})]
