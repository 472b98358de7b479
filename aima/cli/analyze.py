"""``aima analyze``: the embedded main job — every pipeline step this build has, in one process.

The function cores run exactly as they do as Knative functions, wired to the in-process bus:
ingest stores each file in a new case (one parent job, one child job per file) and publishes
``media.uploaded``; probe reads metadata, samples frames and extracts audio. The summary shows
only what those steps computed; steps that later issues add are listed as not in this build.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.settings import Settings
from aima.storage.audit import AuditLog
from aima.storage.cases import CaseRepository
from aima.storage.factory import Stores
from aima.storage.media import MediaRepository
from aima.telemetry.logging import setup_logging
from events.bus import Subscription
from events.catalogue import (
    AudioExtracted,
    FramesExtracted,
    MediaFailed,
    MediaProbed,
    parse_data,
)
from events.envelope import CloudEvent
from events.factory import bus_from_settings, retry_policy_from_settings
from functions.ingest.app import build_core as build_ingest
from functions.probe.app import SUBSCRIBES as PROBE_SUBSCRIBES
from functions.probe.app import build_core as build_probe
from functions.runtime.worker import instrument

CHUNK = 1 << 20
NOT_YET = (
    "transcription",
    "speakers",
    "faces and persons",
    "vision",
    "OCR",
    "sensitivity",
    "fusion",
    "report",
)
RESULT_TYPES = (MediaProbed.TYPE, FramesExtracted.TYPE, AudioExtracted.TYPE, MediaFailed.TYPE)

Echo = Callable[[str], None]


class AnalysisRefused(RuntimeError):
    """The analysis cannot run as asked (wrong profile)."""


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


async def run_analysis(
    settings: Settings, files: Sequence[Path], *, case_name: str | None, echo: Echo
) -> None:
    """Create a case from ``files`` and run the pipeline on it (embedded profile only)."""
    if settings.profile != "embedded":
        raise AnalysisRefused("aima analyze runs the embedded profile; in a cluster, upload through the API")
    setup_logging(level="WARNING", json_logs=settings.log_json, service="aima-cli")
    started = time.perf_counter()
    stores = Stores.open(settings)
    bus = bus_from_settings(settings)
    results: dict[str, list[CloudEvent]] = {}

    async def collect(event: CloudEvent) -> list[CloudEvent]:
        results.setdefault(str((event.data or {}).get("media_id")), []).append(event)
        return []

    try:
        owner = UserDirectory(stores.db).ensure_local_owner()
        name = case_name or f"analysis {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        case = CaseRepository(stores.db).create(
            Scope.for_tenant(owner.tenant_id, owner.username), name, owner.user_id
        )
        case_id = str(case["id"])
        AuditLog(stores.db).record_now(
            tenant_id=owner.tenant_id,
            actor=owner.username,
            action="case.create",
            outcome="allowed",
            case_id=case_id,
            object=f"case/{case_id}",
            detail={"via": "aima analyze"},
        )
        await bus.start()
        policy = retry_policy_from_settings(settings)
        probe = build_probe(settings)
        await bus.subscribe(
            Subscription("probe", PROBE_SUBSCRIBES, instrument("probe", probe.handle), policy)
        )
        await bus.subscribe(Subscription("analyze-summary", RESULT_TYPES, collect, policy))
        ingest = build_ingest(settings, bus_publish=bus.publish)
        scope = Scope.for_case(owner.tenant_id, case_id, owner.username)
        bulk = await ingest.bulk(scope, case_id, [(path.name, _chunks(path)) for path in files])
        drain: Any = getattr(bus, "drain", None)
        if drain is not None:
            await drain(timeout=600)
        rows = {row["id"]: row for row in MediaRepository(stores.db).list(scope, case_id)}
        echo(f"case {case_id}  {name!r}  (embedded, data in {settings.data_dir})")
        echo(f"job {bulk.parent_job_id}: {len(files)} file(s)")
        for item in bulk.results:
            echo("")
            if item.result is None:
                echo(f"{item.filename}: refused: {item.error}")
                continue
            stored = item.result
            if stored.duplicate_of is not None:
                echo(f"{item.filename}: duplicate of media {stored.duplicate_of}; not stored again")
                continue
            row = rows.get(stored.media_id, {})
            echo(
                f"{item.filename}: {stored.kind} {stored.content_type}, {stored.size:,} bytes, "
                f"sha256 {stored.sha256[:16]}…, media {stored.media_id}, status {row.get('status', '?')}"
            )
            for line in _describe(results.get(stored.media_id, [])):
                echo("  " + line)
        echo("")
        echo("not in this build yet: " + ", ".join(NOT_YET))
        echo(f"done in {time.perf_counter() - started:.1f} s")
    finally:
        await bus.close()
        stores.close()


def _describe(events: list[CloudEvent]) -> Iterator[str]:
    """One line per step result, from the events the steps published."""
    for event in sorted(events, key=lambda e: RESULT_TYPES.index(e.type)):
        data = parse_data(event)
        if isinstance(data, MediaFailed):
            yield f"{data.step}: failed: {data.reason}"
        elif isinstance(data, MediaProbed):
            parts: list[str] = [data.kind]
            if data.duration_s is not None:
                parts.append(f"{data.duration_s:.2f} s")
            if data.width and data.height:
                parts.append(f"{data.width}x{data.height}")
            yield "probe: " + ", ".join(parts)
        elif isinstance(data, FramesExtracted):
            stamps = ", ".join(f"{f.timestamp_s:.2f}" for f in data.frames[:8])
            more = " …" if len(data.frames) > 8 else ""
            yield f"frames: {len(data.frames)} sampled at t = {stamps}{more} s"
        elif isinstance(data, AudioExtracted):
            yield f"audio: {data.duration_s:.2f} s extracted at {data.sample_rate} Hz mono for transcription"
