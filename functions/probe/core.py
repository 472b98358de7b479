"""The probe function's core: metadata, frames, thumbnail, preview and audio of one uploaded file.

``handle`` takes ``io.aima.media.uploaded.v1``, streams the original to a private temporary
folder, probes it (refusing oversized, overlong, empty, damaged or unknown files before decoding
where it can) and stores what it derived next to the original::

    cases/{case_id}/media/{media_id}/frames/{timestamp_ms:010d}.jpg
    cases/{case_id}/media/{media_id}/thumb.jpg, preview.jpg, audio.wav

then the metadata on the media row and in a ``probes`` document. It returns MediaProbed,
FramesExtracted (video, image) and AudioExtracted (audio, video with sound); the runtime derives
their ids from the handled event, so a redelivery stores the same objects again and emits the same ids.
Anything wrong with the file ends in MediaFailed and a ``failed`` row with the reason; only
infrastructure errors (a store that cannot be reached) raise, so the bus retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aima.access.scope import Scope
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects import InvalidKey, ObjectNotFound, ObjectStore
from aima.storage.retention import PROBE_PREFIX, remove_probe_folders
from aima.storage.schema import utcnow
from events.catalogue import (
    AudioExtracted,
    EventData,
    FrameRef,
    FramesExtracted,
    MediaFailed,
    MediaProbed,
    MediaUploaded,
)
from events.envelope import derived_event_id
from functions.probe import ffmpeg
from functions.probe.ffmpeg import MediaError, ProbeResult, RunLimits
from functions.runtime.context import Context

log = logging.getLogger(__name__)

ACTOR = "function:probe"
PROBES = "probes"
STEP = "probe"
AUDIO_RATE = 16000
STALE_FOLDER_S = 6 * 3600.0
"""A working folder this old belongs to a probe that was killed: no file takes that long."""


@dataclass(frozen=True)
class ProbeLimits:
    """What the probe accepts and how much work it does per file."""

    max_pixels: int = 100_000_000
    max_duration_s: float = 4 * 3600.0
    timeout_s: float = 60.0  # per tool call; extraction gets this per started minute of media
    max_frames_per_minute: int = 12
    scene_threshold: float = 0.3
    thumb_edge: int = 320
    frame_edge: int = 1280
    preview_frames: int = 8

    def run_limits(self) -> RunLimits:
        return RunLimits(
            timeout_s=self.timeout_s, max_pixels=self.max_pixels, max_duration_s=self.max_duration_s
        )


@dataclass
class _Derived:
    """What one run produced in its temporary folder."""

    info: ProbeResult
    frames: list[tuple[float, Path]] = field(default_factory=list)
    thumb: Path | None = None
    preview: Path | None = None
    audio: tuple[Path, float] | None = None


class ProbeCore:
    """``async handle(data, ctx) -> list[EventData]`` for ``io.aima.media.uploaded.v1``."""

    def __init__(
        self,
        objects: ObjectStore,
        documents: DocumentStore,
        media: MediaRepository,
        *,
        limits: ProbeLimits = ProbeLimits(),
        limits_for: Callable[[str], ProbeLimits] | None = None,
        workdir: Path | None = None,
    ) -> None:
        """``limits_for(tenant_id)``, when given, supplies each tenant's limits (from the runtime
        configuration) instead of the fixed ``limits``."""
        self._objects = objects
        self._documents = documents
        self._media = media
        self._limits = limits
        self._limits_for = limits_for
        self._workdir = workdir

    def remove_stale_folders(self, older_than_s: float = STALE_FOLDER_S) -> list[tuple[str, int]]:
        """Remove working folders a killed probe left on this host (older than ``older_than_s`` and
        used by no process); called when the function starts, as the retention sweep cannot see
        another pod's disk."""
        workdir = self._workdir or Path(tempfile.gettempdir())
        return remove_probe_folders(workdir, time.time() - older_than_s)

    async def handle(self, data: MediaUploaded, ctx: Context) -> list[EventData]:
        """Probe the uploaded file; blocking work runs in a worker thread."""
        return await asyncio.to_thread(self._handle, ctx.event_id, data)

    def _handle(self, event_id: str, data: MediaUploaded) -> list[EventData]:
        scope = Scope.for_case(data.tenant_id, data.case_id, ACTOR)
        if self._media.get(scope, data.media_id) is None:
            log.info("media is gone; nothing to probe", extra={"media_id": data.media_id})
            return []
        with tempfile.TemporaryDirectory(prefix=PROBE_PREFIX, dir=self._workdir) as tmp:
            try:
                derived = self._derive(Path(tmp), data)
            except MediaError as exc:
                return self._fail(data, scope, exc.reason)
            doc = self._store(event_id, data, derived)
        if not self._media.set_probed(scope, data.media_id, kind=derived.info.kind, metadata=doc["metadata"]):
            self._forget(data)  # deleted while we worked: leave nothing behind
            return []
        return self._results(data, doc)

    # --- work on the local copy --------------------------------------------------------------

    def _derive(self, work: Path, data: MediaUploaded) -> _Derived:
        source = work / "input"  # no extension: the content decides the format, not the name
        self._download(data, source)
        limits = self._limits if self._limits_for is None else self._limits_for(data.tenant_id)
        run = limits.run_limits()
        info = ffmpeg.probe(source, run)
        derived = _Derived(info)
        scaled = run.scaled(info.duration_s)
        if info.kind == "image":
            frame = work / "frames" / "still.jpg"
            ffmpeg.still_frame(source, frame, max_edge=limits.frame_edge, limits=run)
            derived.frames = [(0.0, frame)]
            derived.thumb = work / "thumb.jpg"
            ffmpeg.still_frame(source, derived.thumb, max_edge=limits.thumb_edge, limits=run)
        if info.kind == "video":
            derived.frames = ffmpeg.sample_frames(
                source,
                work / "frames",
                max_per_minute=limits.max_frames_per_minute,
                scene_threshold=limits.scene_threshold,
                start_s=info.start_s,
                max_edge=limits.frame_edge,
                limits=scaled,
            )
            derived.thumb, derived.preview = work / "thumb.jpg", work / "preview.jpg"
            ffmpeg.thumbnail(
                source, derived.thumb, duration_s=info.duration_s, edge=limits.thumb_edge, limits=scaled
            )
            ffmpeg.preview_strip(
                source, derived.preview, limits.preview_frames, duration_s=info.duration_s, limits=scaled
            )
        if info.has_audio:
            wav = work / "audio.wav"
            derived.audio = (wav, ffmpeg.extract_audio(source, wav, scaled))
        return derived

    def _download(self, data: MediaUploaded, target: Path) -> None:
        """Stream the original to ``target`` in constant memory and check its SHA-256."""
        try:
            chunks = self._objects.get(data.object_key)
        except (ObjectNotFound, InvalidKey) as exc:
            raise MediaError("the uploaded file is missing from the object store") from exc
        digest = hashlib.sha256()
        with target.open("wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != data.sha256:
            raise MediaError("the stored file does not match the SHA-256 recorded at upload; it was altered")

    # --- results -------------------------------------------------------------------------------

    def _store(self, event_id: str, data: MediaUploaded, derived: _Derived) -> dict[str, Any]:
        """Upload the artefacts, drop stale frames of an earlier run, upsert the probe document."""
        base = _base(data)
        frames = []
        for timestamp, path in derived.frames:
            millis = round(timestamp * 1000)
            key = f"{base}/frames/{millis:010d}.jpg"
            self._put(key, path, "image/jpeg")
            frame_id = derived_event_id(data.media_id, "frame", str(millis))
            frames.append({"frame_id": frame_id, "object_key": key, "timestamp_s": round(timestamp, 6)})
        fresh = {frame["object_key"] for frame in frames}
        for stale in [info.key for info in self._objects.list(f"{base}/frames/") if info.key not in fresh]:
            self._objects.delete(stale)
        thumb = self._put(f"{base}/thumb.jpg", derived.thumb, "image/jpeg")
        preview = self._put(f"{base}/preview.jpg", derived.preview, "image/jpeg")
        audio = None
        if derived.audio is not None:
            wav, duration = derived.audio
            wav_key = self._put(f"{base}/audio.wav", wav, "audio/wav")
            audio = {"object_key": wav_key, "sample_rate": AUDIO_RATE, "duration_s": round(duration, 3)}
        doc = {
            "media_id": data.media_id,
            "source_event": event_id,
            "kind": derived.info.kind,
            "metadata": derived.info.to_dict(),
            "frames": frames,
            "thumbnail": thumb,
            "preview": preview,
            "audio": audio,
            "probed_at": utcnow(),
        }
        where = {"_id": data.media_id, "tenant_id": data.tenant_id, "case_id": data.case_id}
        self._documents.update_one(
            PROBES, where, {"$set": doc, "$setOnInsert": {"created_at": utcnow()}}, upsert=True
        )
        return doc

    def _put(self, key: str, path: Path | None, content_type: str) -> str | None:
        if path is None:
            return None
        with path.open("rb") as source:
            self._objects.put(key, source, content_type=content_type)
        return key

    def _results(self, data: MediaUploaded, doc: dict[str, Any]) -> list[EventData]:
        ids = data.media_ids()
        meta = doc["metadata"]
        payloads: list[EventData] = [
            MediaProbed(
                **ids,
                kind=doc["kind"],
                duration_s=meta["duration_s"],
                width=meta["width"],
                height=meta["height"],
            )
        ]
        if doc["frames"]:
            frames = [FrameRef(**frame) for frame in doc["frames"]]
            payloads.append(FramesExtracted(**ids, frames=frames))
        if doc["audio"] is not None:
            payloads.append(AudioExtracted(**ids, **doc["audio"]))
        return payloads

    def _fail(self, data: MediaUploaded, scope: Scope, reason: str) -> list[EventData]:
        log.warning("media failed to probe: %s", reason, extra={"media_id": data.media_id})
        self._forget(data)
        if not self._media.mark_failed(scope, data.media_id, reason):
            return []
        return [MediaFailed(**data.media_ids(), step=STEP, reason=reason)]

    def _forget(self, data: MediaUploaded) -> None:
        """Remove what an earlier run derived (never the original)."""
        base = _base(data)
        self._objects.delete_prefix(f"{base}/frames/")
        for name in ("thumb.jpg", "preview.jpg", "audio.wav"):
            self._objects.delete(f"{base}/{name}")
        self._documents.delete_many(
            PROBES, {"_id": data.media_id, "tenant_id": data.tenant_id, "case_id": data.case_id}
        )


def _base(data: MediaUploaded) -> str:
    return f"cases/{data.case_id}/media/{data.media_id}"
