"""What the frame steps (OCR, faces, pose, sensitivity) share: reading frames one by one, skipped
frames, and ``not_run``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from aima.storage.objects import InvalidKey, ObjectNotFound, ObjectStore
from aima.storage.versioned import SkippedFrame, VersionedRepository
from events.catalogue import AnalysisResult, EventData, FrameRef, MediaScoped, ModelInfo
from inference.errors import InvalidModelOutput

log = logging.getLogger(__name__)

MISSING_FRAME = "the frame is missing from the object store"

R = TypeVar("R", bound=BaseModel)
T = TypeVar("T")


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


def look_at_frames(
    objects: ObjectStore,
    frames: Sequence[FrameRef],
    folder: Path,
    look: Callable[[FrameRef, Path], T],
    skipped: list[SkippedFrame],
    *,
    verb: str = "read",
    keep: bool = False,
) -> Iterator[tuple[FrameRef, Path, T]]:
    """Each frame in time order, copied into ``folder`` and given to ``look``: yields the frame, its
    file and what ``look`` found. A frame missing from the object store, or one ``look`` cannot
    read (`InvalidModelOutput`), is appended to ``skipped`` with its reason and the others go on.
    The file is removed after its frame unless ``keep``."""
    ordered = sorted(frames, key=lambda frame: (frame.timestamp_s, frame.frame_id))
    for index, frame in enumerate(ordered):
        path = folder / f"frame-{index:06d}{Path(frame.object_key).suffix[:8]}"
        try:
            objects.download(frame.object_key, path)
            found = look(frame, path)
        except (ObjectNotFound, InvalidKey):
            skipped.append(skipped_frame(frame, MISSING_FRAME))
            path.unlink(missing_ok=True)
            continue
        except InvalidModelOutput as exc:
            skipped.append(skipped_frame(frame, f"the frame could not be {verb}: {exc.reason}"))
            path.unlink(missing_ok=True)
            continue
        yield frame, path, found
        if not keep:
            path.unlink(missing_ok=True)
