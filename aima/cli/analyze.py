"""``aima analyze``: the embedded main job — every pipeline step, in one process, then the report.

The function cores run exactly as they do as Knative functions, from their specs, wired to the
in-process bus: ingest stores each file in a new case (one parent job, one child job per file) and
publishes ``media.uploaded``; every analysis step found by `functions.runtime.spec.discover`
(probe, transcribe, ..., fuse) handles what it consumes, while a live table (`aima.cli.progress`)
shows each file's steps. When the job's files are done, fuse stores the case's signed report;
should a step never report, the report is built all the same and says so. Every export format is
written to ``--out`` (an audited export), and the summary shows what each step computed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aima.access.scope import Scope
from aima.cli.progress import Board
from aima.identity.users import UserDirectory
from aima.reports.exports import write_all
from aima.reports.images import ReportImages
from aima.reports.model import CaseReport
from aima.settings import Settings
from aima.storage.cases import CaseRepository
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.outcomes import OutcomeRepository
from aima.storage.reports import ReportRepository
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.telemetry.logging import setup_logging
from aima.transcripts import Transcript
from events.bus import Subscription
from events.catalogue import (
    AudioExtracted,
    FacesDetected,
    FramesExtracted,
    MediaFailed,
    MediaProbed,
    PersonsClustered,
    PhrasesMatched,
    PoseEstimated,
    SensitivityScored,
    SpeakersCompleted,
    TextRecognized,
    TranscriptCompleted,
    VisionDescribed,
    parse_data,
)
from events.envelope import CloudEvent
from functions.runtime.deps import Deps
from functions.runtime.host import Host
from functions.runtime.spec import FunctionSpec, discover

CHUNK = 1 << 20
KNOWN = (
    MediaProbed.TYPE,
    FramesExtracted.TYPE,
    AudioExtracted.TYPE,
    TranscriptCompleted.TYPE,
    SpeakersCompleted.TYPE,
    PhrasesMatched.TYPE,
    TextRecognized.TYPE,
    FacesDetected.TYPE,
    PersonsClustered.TYPE,
    PoseEstimated.TYPE,
    SensitivityScored.TYPE,
    VisionDescribed.TYPE,
    MediaFailed.TYPE,
)
SHOWN_SEGMENTS = 8

Echo = Callable[[str], None]


class AnalysisRefused(RuntimeError):
    """The analysis cannot run as asked (wrong profile)."""


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


def analysis_steps(specs: dict[str, FunctionSpec]) -> list[FunctionSpec]:
    """The pipeline steps of this installation: event functions that declare ``analysis=True``."""
    return [spec for spec in specs.values() if spec.analysis and spec.build is not None]


async def run_analysis(
    settings: Settings,
    files: Sequence[Path],
    *,
    case_name: str | None,
    echo: Echo,
    out: Path | None = None,
    context: str | None = None,
    language: str | None = None,
) -> Path | None:
    """Create a case from ``files``, run every analysis step on it and write its report in every format
    to ``out`` (default: ``DATA_DIR/reports/CASE/vN``); returns that folder.

    On the embedded profile every step runs in this process. On the cluster profile (``aima dev up``,
    or a cluster whose stores this process can reach) the files are stored the way ingest stores them
    and announced on the cluster's bus; the running functions analyse them, and this process follows
    the steps' outcomes and waits for the report fuse stores."""
    cluster = settings.profile == "cluster"
    setup_logging(level="WARNING", json_logs=settings.log_json, service="aima-cli")
    started = time.perf_counter()
    specs = discover()
    steps = analysis_steps(specs)
    if cluster:
        await _reachable(settings)
        deps = Deps(settings)
    else:
        deps = Deps(settings.model_copy(update={"bus": "memory", "delivery": "bus"}))
    host = Host(deps, [] if cluster else steps)
    results: dict[str, list[CloudEvent]] = {}
    board = Board([spec.name for spec in sorted(steps, key=_pipeline_order)])

    async def collect(event: CloudEvent) -> list[CloudEvent]:
        media_id = str((event.data or {}).get("media_id"))
        results.setdefault(media_id, []).append(event)
        board.outcome(media_id, *_progress_of(event))
        return []

    try:
        stores = deps.stores
        owner = UserDirectory(stores.db).ensure_local_owner(settings.bootstrap_tenant)
        name = case_name or f"analysis {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        tenant = Scope.for_tenant(owner.tenant_id, owner.username)
        case_id = str(uuid.uuid4())
        audit = deps.audit
        case = CaseRepository(stores.db).create(
            tenant,
            name,
            owner.user_id,
            case_id=case_id,
            language=language,
            context=context,
            audit=lambda session: audit.record(
                session,
                tenant_id=owner.tenant_id,
                actor=owner.username,
                action="case.create",
                outcome="allowed",
                case_id=case_id,
                object=f"case/{case_id}",
                detail={"via": "aima analyze"},
            ),
        )
        await host.start()
        if not cluster:
            emitted = tuple(sorted({payload.TYPE for spec in steps for payload in spec.emits}))
            await deps.bus.subscribe(Subscription("analyze-summary", emitted, collect, deps.retry_policy))
        from functions.ingest.spec import build_core  # the composition root may name a function

        ingest = build_core(deps)
        scope = Scope.for_case(owner.tenant_id, case_id, owner.username)
        with board:
            bulk = await ingest.bulk(scope, case_id, [(path.name, _chunks(path)) for path in files])
            for item in bulk.results:
                if item.result is not None and item.result.duplicate_of is None:
                    board.file(item.result.media_id, item.filename or item.result.media_id)
            any_stored = any(
                item.result is not None and item.result.duplicate_of is None for item in bulk.results
            )
            if cluster:
                await deps.relay.flush()
                report = (
                    await _followed(deps, board, owner.tenant_id, case_id, bulk.parent_job_id)
                    if any_stored
                    else None
                )
            else:
                await _settle(deps)
                report = (await _ended(deps, scope, case_id, bulk.parent_job_id) if any_stored else None) or (
                    await asyncio.to_thread(_report_of, deps, owner.tenant_id, case_id, bulk.parent_job_id)
                    if any_stored
                    else None
                )
        registered = {file.id: file for file in MediaRepository(stores.db).list(scope, case_id)}
        transcripts = TranscriptRepository(stores.documents)
        where = (
            "cluster profile: the running functions" if cluster else f"embedded, data in {settings.data_dir}"
        )
        echo(f"case {case['id']}  {name!r}  ({where})")
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
            file = registered.get(stored.media_id)
            status = file.status.value if file is not None else "?"
            echo(
                f"{item.filename}: {stored.kind} {stored.content_type}, {stored.size:,} bytes, "
                f"sha256 {stored.sha256[:16]}…, media {stored.media_id}, status {status}"
            )
            lines = (
                _describe(results.get(stored.media_id, []))
                if not cluster
                else _outcome_lines(report, stored.media_id)
            )
            for line in lines:
                echo("  " + line)
            transcript = transcripts.latest(owner.tenant_id, case_id, stored.media_id)
            for line in _transcript_lines(transcript):
                echo("    " + line)
        if not cluster:
            echo("")
            counts = {
                spec.name: sum(
                    1 for evs in results.values() for e in evs if e.source.endswith("/" + spec.name)
                )
                for spec in sorted(steps, key=_pipeline_order)
            }
            echo(
                "steps run: "
                + ", ".join(f"{n} ({c} result{'s' if c != 1 else ''})" for n, c in counts.items())
            )
        folder = None
        if report is not None:
            folder = out or settings.data_dir / "reports" / case_id / f"v{report.version}"
            written = await asyncio.to_thread(_export, deps, report, folder, owner.username)
            echo("")
            for line in _report_summary(report, folder, written):
                echo(line)
        echo(f"done in {time.perf_counter() - started:.1f} s")
        return folder
    finally:
        await host.stop()


async def _reachable(settings: Settings) -> None:
    """Refuse at once, in one line, when a store or the bus of the cluster profile does not answer."""
    from aima.cli.health import check_all

    # the clients log each refusal, some from threads that outlive the check: quiet until the one
    # line below, which says what matters
    logging.disable(logging.CRITICAL)
    health = await check_all(settings)
    down = [(name, c.error) for name, c in health.components.items() if c.status != "up"]
    if not down:
        logging.disable(logging.NOTSET)
    else:
        name, error = down[0]
        error = (error or "no answer").splitlines()[0]
        raise AnalysisRefused(
            f"the cluster profile's {name} does not answer ({error}); start a stack with `aima dev up` "
            "and source its env file, or set the AIMA_* addresses of your cluster"
        )


async def _followed(
    deps: Deps,
    board: Board,
    tenant_id: str,
    case_id: str,
    job_id: str,
    timeout: float = 1800.0,  # noqa: ASYNC109
) -> CaseReport:
    """Follow the running functions' outcomes on the board until fuse stores the job's report."""
    outcomes = OutcomeRepository(deps.stores.documents)
    reports = ReportRepository(deps.stores.documents)
    deadline = time.monotonic() + timeout
    while True:
        for media_id, steps in (await asyncio.to_thread(outcomes.for_case, tenant_id, case_id)).items():
            for step, outcome in steps.items():
                board.outcome(media_id, step, outcome.status)
        latest = await asyncio.to_thread(reports.latest, tenant_id, case_id)
        if latest is not None and latest.job_id == job_id:
            board.outcome_all("fuse", "succeeded")
            return latest
        if time.monotonic() > deadline:
            raise AnalysisRefused(f"no report for job {job_id} after {timeout:.0f} s; see `aima dev status`")
        await asyncio.sleep(0.5)


def _outcome_lines(report: CaseReport | None, media_id: str) -> Iterator[str]:
    """A file's step outcomes as the report records them (the cluster profile's summary)."""
    file = next((f for f in report.files if f.media_id == media_id), None) if report else None
    for step in file.steps if file else []:
        reason = f": {step.reason}" if step.reason else ""
        yield f"{step.step}: {step.status.replace('_', ' ')}{reason}"


async def _ended(
    deps: Deps,
    scope: Scope,
    case_id: str,
    job_id: str,
    grace: float = 30.0,
) -> CaseReport | None:
    """The job's report once the job reached a final phase (fuse builds it as the job ends; a job
    cancelled from elsewhere gets its partial report); None for a job still running once the bus is
    idle (a step that never reported), which then gets its report built here."""
    jobs = JobRepository(deps.stores.db)
    reports = ReportRepository(deps.stores.documents)
    deadline = time.monotonic() + grace
    while True:
        job = await asyncio.to_thread(jobs.get, scope, job_id)
        if job is None or not job.phase.final:
            return None
        latest = await asyncio.to_thread(reports.latest, scope.tenant_id, case_id)
        if latest is not None and latest.job_id == job_id:
            return latest
        if time.monotonic() > deadline:
            return None
        await _settle(deps)
        await asyncio.sleep(0.1)


def _report_of(deps: Deps, tenant_id: str, case_id: str, job_id: str | None) -> CaseReport | None:
    """The report fuse stored for the job, or one built now when a step never reported."""
    from functions.fuse.spec import ReportBuilder, pipeline_of  # the composition root may name a function

    reports = ReportRepository(deps.stores.documents)
    latest = reports.latest(tenant_id, case_id)
    if latest is not None and latest.job_id == job_id:
        return latest
    return ReportBuilder(deps, pipeline_of(discover())).build(tenant_id, case_id, job_id)


def export_report(
    settings: Settings, report: CaseReport, folder: Path, *, actor: str, via: str = "aima analyze"
) -> list[str]:
    """Write ``report`` in every format into ``folder`` (an audited export); returns the summary lines."""
    deps = Deps(settings.model_copy(update={"bus": "memory"}))
    try:
        written = _export(deps, report, folder, actor, via)
    finally:
        deps.stores.close()
    return list(_report_summary(report, folder, written))


def _export(
    deps: Deps, report: CaseReport, folder: Path, actor: str, via: str = "aima analyze"
) -> list[Path]:
    """Every format into ``folder``, recorded as an export of the case in the audit log."""
    stores = deps.stores
    transcripts = {
        t.media_id: t
        for t in TranscriptRepository(stores.documents).latest_for_case(report.tenant_id, report.case_id)
    }
    names = CaseSpeakerRepository(stores.documents).display_names(report.tenant_id, report.case_id)
    images = ReportImages(stores.objects, report)
    written = write_all(
        report,
        folder,
        transcripts=transcripts,
        speaker_names=names,
        thumbnail=images.thumbnail,
        crop=images.crop,
    )
    deps.audit.record_now(
        tenant_id=report.tenant_id,
        actor=actor,
        action="case.export",
        outcome="allowed",
        case_id=report.case_id,
        object=f"case/{report.case_id}/report/v{report.version}",
        detail={"via": via, "formats": sorted({p.suffix.lstrip(".") for p in written})},
    )
    return written


def _report_summary(report: CaseReport, folder: Path, written: Sequence[Path]) -> Iterator[str]:
    """Where the report is and what it found, in a few lines."""
    page = folder / "report.html"
    yield f"report v{report.version}: {page}  ({len(written)} files: json, csv, html, pdf, vtt)"
    categories = ", ".join(
        f"{n} {c}" for c, n in sorted(Counter(i.category for i in report.indicators).items())
    )
    yield (
        f"  {len(report.files)} file(s), {len(report.speakers)} speaker(s), {len(report.persons)} person(s), "
        f"{len(report.timeline)} timeline entries, {len(report.indicators)} indicator(s) for review"
        + (f" ({categories})" if categories else "")
        + f", {len(report.gaps)} gap(s)"
    )
    for statement in report.narrative.statements[:12]:
        cited = ", ".join(statement.citations[:6]) + (", …" if len(statement.citations) > 6 else "")
        yield f"  - {statement.text} [{cited}]"
    if len(report.narrative.statements) > 12:
        yield f"  … {len(report.narrative.statements) - 12} more sentence(s) in the report"
    if report.partial:
        yield "  partial: a step did not report for some file (see the gaps)"


def _progress_of(event: CloudEvent) -> tuple[str, str]:
    """The step an event reports on, and its outcome for the progress table."""
    step = event.source.rsplit("/", 1)[-1]
    data = event.data or {}
    if event.type == MediaFailed.TYPE:
        return step, "failed"
    return step, "not_run" if data.get("status") == "not_run" else "succeeded"


async def _settle(deps: Deps, timeout: float = 600.0) -> None:  # noqa: ASYNC109 - seconds, as the bus takes
    """Wait until the in-process bus is idle and the outbox has nothing left to publish."""
    drain: Any = getattr(deps.bus.inner, "drain", None)
    deadline = time.monotonic() + timeout
    while True:
        if drain is not None:
            await drain(timeout=max(1.0, deadline - time.monotonic()))
        if await deps.relay.flush() == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the analysis did not settle in time")


def _describe(events: list[CloudEvent]) -> Iterator[str]:
    """One line per step result, from the events the steps published."""
    order = {event_type: n for n, event_type in enumerate(KNOWN)}
    for event in sorted(events, key=lambda e: (order.get(e.type, len(KNOWN)), e.type)):
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
        elif isinstance(data, TranscriptCompleted):
            yield _transcript_summary(data)
        elif isinstance(data, SpeakersCompleted):
            yield (
                f"speakers: not run: {data.reason}"
                if data.status == "not_run"
                else f"speakers: {data.speakers} in the file, {data.case_speakers} case speaker(s) "
                f"({data.new_case_speakers} new), {data.turns} turn(s) labelled"
            )
        elif isinstance(data, TextRecognized):
            languages = ", ".join(f"{code} {count}" for code, count in sorted(data.languages.items()))
            yield (
                f"ocr: not run: {data.reason}"
                if data.status == "not_run"
                else f"ocr: v{data.version}, {data.result_count} line(s) of text in {data.frames} frame(s)"
                f"{f' ({languages})' if languages else ''}"
                f"{f', {data.skipped_frames} frame(s) unreadable' if data.skipped_frames else ''}"
            )
        elif isinstance(data, FacesDetected | PersonsClustered | PoseEstimated | SensitivityScored):
            yield _vision_summary(data)
        elif isinstance(data, VisionDescribed):
            yield (
                f"vision: not run: {data.reason}"
                if data.status == "not_run"
                else f"vision: {data.described_frames} of {data.frames} frame(s) described, "
                f"{data.restraint_indicators} restraint and {data.distress_cues} distress "
                "indicator(s) for review"
            )
        elif isinstance(data, PhrasesMatched):
            cues = ", ".join(f"{name} {count}" for name, count in sorted(data.categories.items()))
            yield (
                f"cues: not run: {data.reason}"
                if data.status == "not_run"
                else f"cues: {data.indexed_segments} segment(s) indexed for search, "
                f"{data.result_count} spoken cue(s) for review{f' ({cues})' if cues else ''}"
            )
        else:
            yield f"{event.source.rsplit('/', 1)[-1]}: {event.type}"


def _vision_summary(data: FacesDetected | PersonsClustered | PoseEstimated | SensitivityScored) -> str:
    """The line of a faces, persons, pose or sensitivity result."""
    step = {FacesDetected: "faces", PersonsClustered: "persons", PoseEstimated: "pose"}.get(
        type(data), "sensitivity"
    )
    if data.status == "not_run":
        return f"{step}: not run: {data.reason}"
    if isinstance(data, FacesDetected):
        return (
            f"faces: v{data.version}, {data.tracks} face track(s) from {data.faces} face(s) in "
            f"{len(data.frames)} frame(s)"
        )
    if isinstance(data, PersonsClustered):
        return (
            f"persons: {data.assigned} of {data.tracks} track(s) linked to a person, {data.unassigned} "
            f"unassigned; {data.person_count} person(s) in the case ({data.new_persons} new)"
        )
    if isinstance(data, PoseEstimated):
        postures = ", ".join(f"{cue} {count}" for cue, count in sorted(data.postures.items()))
        return (
            f"pose: {data.posed} of {data.crops} person crop(s) posed, {data.result_count} posture "
            f"finding(s) for review{f' ({postures})' if postures else ''}"
        )
    return (
        f"sensitivity: v{data.version}, {data.frames} frame(s) scored, {data.flagged_frames} at or above "
        f"{data.threshold} (served blurred until opened)"
    )


def _pipeline_order(spec: FunctionSpec) -> tuple[int, str]:
    from functions.fuse.picture import STEP_ORDER as order  # one order for the summary and the report

    return (order.index(spec.name) if spec.name in order else len(order), spec.name)


def _transcript_summary(data: TranscriptCompleted) -> str:
    if data.status == "not_run":
        return f"transcribe: not run: {data.reason}"
    if not data.result_count:
        return f"transcribe: v{data.version}, {data.reason or 'no segments'}"
    languages = ", ".join(f"{code} {seconds:.1f} s" for code, seconds in data.languages.items())
    gaps = f", {data.unintelligible} unintelligible" if data.unintelligible else ""
    return (
        f"transcribe: v{data.version}, {data.speech_segments} segment(s), {data.words} words "
        f"({languages}){gaps}, {data.model.name}"
    )


def _transcript_lines(transcript: Transcript | None) -> Iterator[str]:
    """The first segments of a transcript: time, language, speaker, text (and its translation)."""
    if transcript is None:
        return
    for segment in transcript.segments[:SHOWN_SEGMENTS]:
        when = f"[{_clock(segment.start)}-{_clock(segment.end)}]"
        if segment.kind == "unintelligible":
            yield f"{when} (unintelligible: {segment.reason})"
            continue
        speaker = f" {segment.speaker}" if segment.speaker else ""
        yield f"{when} {segment.language or '??'}{speaker}: {segment.text}"
        if segment.translation:
            yield f"{' ' * len(when)} en (translated): {segment.translation}"
    if len(transcript.segments) > SHOWN_SEGMENTS:
        yield f"… {len(transcript.segments) - SHOWN_SEGMENTS} more segment(s)"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"
