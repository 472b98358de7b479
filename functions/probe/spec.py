"""The probe function: metadata, frames, thumbnail, preview and 16 kHz audio of every uploaded file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from aima.config.service import ConfigService
from aima.storage.media import MediaRepository
from events.catalogue import AudioExtracted, FramesExtracted, MediaFailed, MediaProbed, MediaUploaded
from functions.probe.core import ProbeCore, ProbeLimits
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources

log = logging.getLogger(__name__)


def build(deps: Deps) -> ProbeCore:
    """A core on the process's stores; each tenant's duration limit and frame density come from the
    runtime configuration (``limits.max_duration_s``, ``analysis.max_frames_per_minute``)."""
    stores = deps.stores
    core = ProbeCore(
        stores.objects, stores.documents, MediaRepository(stores.db), limits_for=tenant_limits(deps.config)
    )
    for name, size in core.remove_stale_folders():
        log.warning("removed a killed probe's working folder", extra={"folder": name, "bytes": size})
    return core


def tenant_limits(config: ConfigService, base: ProbeLimits | None = None) -> Callable[[str], ProbeLimits]:
    """Each tenant's probe limits: ``base`` with the configured duration limit and frame density."""

    def limits_for(tenant_id: str) -> ProbeLimits:
        effective = config.effective(tenant_id)
        return replace(
            base or ProbeLimits(),
            max_duration_s=float(effective.limits.max_duration_s),
            max_frames_per_minute=effective.analysis.max_frames_per_minute,
        )

    return limits_for


SPEC = FunctionSpec(
    name="probe",
    description="ffprobe metadata and EXIF, frames with exact timestamps, thumbnail, preview, 16 kHz audio",
    consumes=(MediaUploaded,),
    emits=(MediaProbed, FramesExtracted, AudioExtracted, MediaFailed),
    build=build,
    needs=("database", "objects", "documents", "bus"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=2, timeout_s=900),
    port=8082,
    analysis=True,
    step="probe",
)
