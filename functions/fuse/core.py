"""The fuse function's core: notices when a job's files are done, then builds the case's report.

``handle`` takes every event an analysis step ends with (and the probe's), and:

1. records the step's outcome for the file in the ledger (`aima.storage.outcomes`): ``succeeded``,
   ``not_run`` (with the step's reason) or ``failed`` (``io.aima.media.failed.v1``);
2. works out which steps the file needs, from the function specs (`Pipeline`): the steps that
   consume what the probe extracted (frames, audio), then the steps that consume what those emit,
   and so on; a step that failed expects nothing after it;
3. when every step the file needs has an outcome, looks at the file's job: once every file of the
   parent job is done (or failed at the probe), it claims the job (one report per job, however
   many fuse processes see it complete) and builds the case's next report version
   (`functions.fuse.picture`), signs it and stores it (`aima.storage.reports`);
4. emits ``io.aima.fusion.completed.v1`` and ``io.aima.report.generated.v1``.

``io.aima.report.requested.v1`` (a user asking for a new version from the current results, after
reviewer decisions say) builds the next version at once. `fuse_job` builds the report of a job on
demand, whatever its files' state (``aima analyze`` calls it when its files settled with a step that
never reported, so the report says so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aima.access.scope import Scope
from aima.domain import ModelRef
from aima.reports.model import CaseReport
from aima.storage.jobs import JobRepository
from aima.storage.outcomes import Outcome, OutcomeRepository
from events.catalogue import (
    AnalysisResult,
    AudioExtracted,
    EventData,
    FramesExtracted,
    FusionCompleted,
    JobFinished,
    JobProgressed,
    MediaFailed,
    MediaProbed,
    PersonsClustered,
    ReportGenerated,
    ReportRequested,
)
from functions.runtime.context import Context

log = logging.getLogger(__name__)

ACTOR = "function:fuse"
PROBE = "probe"
FORMATS = ["json", "csv", "html", "pdf", "vtt"]


@dataclass(frozen=True)
class Pipeline:
    """Which analysis function consumes which event types, and emits which (from the specs)."""

    consumes: Mapping[str, frozenset[str]]
    emits: Mapping[str, frozenset[str]]

    def consumers(self, event_type: str) -> set[str]:
        return {name for name, types in self.consumes.items() if event_type in types}

    def expected(self, extracted: set[str], outcomes: Mapping[str, Outcome]) -> set[str]:
        """The steps a file needs, given the event types the probe extracted for it."""
        needed: set[str] = {PROBE}
        frontier = {step for event_type in extracted for step in self.consumers(event_type)}
        while frontier:
            step = frontier.pop()
            if step in needed:
                continue
            needed.add(step)
            outcome = outcomes.get(step)
            if outcome is None or outcome.status == "failed":
                continue  # nothing after it until it reports; nothing at all after a failure
            for event_type in self.emits.get(step, ()):
                frontier |= self.consumers(event_type) - needed
        return needed


BuildReport = Callable[[str, str, str | None], CaseReport]
"""``(tenant_id, case_id, job_id) -> the stored, signed report``."""
FinishJob = Callable[[str, str, str], None]
"""``(tenant_id, case_id, job_id)``: give a job whose report was built its final phase."""
CANCELLED = "the job was cancelled before this step ran"


class FuseCore:
    """``async handle(data, ctx) -> list[EventData]`` for every step's completion event."""

    def __init__(
        self,
        outcomes: OutcomeRepository,
        jobs: JobRepository,
        pipeline: Pipeline,
        *,
        extracted: Callable[[str, str, str], set[str] | None],
        build_report: BuildReport,
        finish_job: FinishJob | None = None,
    ) -> None:
        """``extracted(tenant, case, media)`` is the event types the probe extracted for the file
        (None before the probe stored its result); ``build_report`` builds and stores a report."""
        self._outcomes = outcomes
        self._jobs = jobs
        self._pipeline = pipeline
        self._extracted = extracted
        self._build_report = build_report
        self._finish_job = finish_job

    async def handle(self, data: EventData, ctx: Context) -> list[EventData]:
        return await asyncio.to_thread(self._handle, data, ctx)

    def _handle(self, data: EventData, ctx: Context) -> list[EventData]:
        if isinstance(data, ReportRequested):
            return self.fuse_job(data.tenant_id, data.case_id, None)
        if isinstance(data, JobFinished):
            return self.cancelled(data) if data.phase == "Cancelled" else []
        if isinstance(data, JobProgressed):
            # a job (re)started: one whose files are all done already (a resume with nothing left) ends now
            if data.phase != "Running" or data.step is not None:
                return []
            if not self.job_done(data.tenant_id, data.case_id, data.job_id):
                return []
            return self.fuse_job(data.tenant_id, data.case_id, data.job_id)
        outcome = self.outcome_of(data, ctx)
        if outcome is None:
            return []
        tenant_id, case_id = data.tenant_id, data.case_id  # type: ignore[attr-defined]
        self._outcomes.record(tenant_id, case_id, outcome)
        if not self.file_done(tenant_id, case_id, outcome.media_id):
            return []
        parent = self._parent_of(tenant_id, case_id, outcome.job_id)
        if parent is None or not self.job_done(tenant_id, case_id, parent):
            return []
        return self.fuse_job(tenant_id, case_id, parent)

    def outcome_of(self, data: EventData, ctx: Context) -> Outcome | None:
        """The ledger entry an event makes (None for one that is not a step's end)."""
        source = ctx.event.source.rsplit("/", 1)[-1]
        common = {"event_id": ctx.event_id, "job_id": getattr(data, "job_id", None)}
        if isinstance(data, MediaFailed):
            # the emitter is the step that failed (a step's own name for itself may differ)
            return Outcome(media_id=data.media_id, step=source, status="failed", reason=data.reason, **common)
        if isinstance(data, MediaProbed | FramesExtracted | AudioExtracted):
            return Outcome(media_id=data.media_id, step=PROBE, status="succeeded", **common)
        if isinstance(data, AnalysisResult | PersonsClustered):
            media_id = data.media_id
            if media_id is None:
                return None
            model = ModelRef(name=data.model.name, version=data.model.version, backend=data.model.backend)
            return Outcome(
                media_id=media_id,
                step=source,
                status="succeeded" if data.status == "completed" else "not_run",
                reason=data.reason,
                model=model,
                version=getattr(data, "version", None),
                **common,
            )
        return None

    def file_done(self, tenant_id: str, case_id: str, media_id: str) -> bool:
        """Whether every step the file needs has an outcome."""
        outcomes = self._outcomes.for_media(tenant_id, case_id, media_id)
        probe = outcomes.get(PROBE)
        if probe is not None and probe.status == "failed":
            return True
        extracted = self._extracted(tenant_id, case_id, media_id)
        if probe is None or extracted is None:
            return False
        return self._pipeline.expected(extracted, outcomes) <= outcomes.keys()

    def job_done(self, tenant_id: str, case_id: str, parent_id: str) -> bool:
        scope = Scope.for_case(tenant_id, case_id, ACTOR)
        children = self._jobs.children(scope, parent_id)
        return all(
            child.media_id is None or self.file_done(tenant_id, case_id, child.media_id) for child in children
        )

    def cancelled(self, data: JobFinished) -> list[EventData]:
        """A cancelled job: its files' steps that never ended are recorded ``cancelled`` and the
        report of what finished is built at once (partial)."""
        tenant_id, case_id = data.tenant_id, data.case_id
        scope = Scope.for_case(tenant_id, case_id, ACTOR)
        for child in self._jobs.children(scope, data.job_id):
            if child.media_id is None:
                continue
            outcomes = self._outcomes.for_media(tenant_id, case_id, child.media_id)
            extracted = self._extracted(tenant_id, case_id, child.media_id) or set()
            missing = self._pipeline.expected(extracted, outcomes) - outcomes.keys()
            for step in sorted(missing):
                outcome = Outcome(
                    media_id=child.media_id, step=step, status="cancelled", reason=CANCELLED, job_id=child.id
                )
                self._outcomes.record(tenant_id, case_id, outcome)
        return self.fuse_job(tenant_id, case_id, data.job_id, finish=False)

    def fuse_job(
        self, tenant_id: str, case_id: str, parent_id: str | None, *, finish: bool = True
    ) -> list[EventData]:
        """Build and store the case's report for ``parent_id`` (once per job), then give the job its
        final phase (``finish``)."""
        if parent_id is not None and not self._outcomes.claim_fusion(tenant_id, case_id, parent_id):
            return []
        try:
            report = self._build_report(tenant_id, case_id, parent_id)
        except BaseException:
            if parent_id is not None:
                self._outcomes.release_fusion(tenant_id, case_id, parent_id)
            raise
        if finish and parent_id is not None and self._finish_job is not None:
            self._finish_job(tenant_id, case_id, parent_id)
        return [
            FusionCompleted(
                tenant_id=tenant_id,
                case_id=case_id,
                job_id=parent_id,
                indicator_count=len(report.indicators),
                timeline_entries=len(report.timeline),
            ),
            ReportGenerated(
                tenant_id=tenant_id,
                case_id=case_id,
                report_id=report.report_id,
                version=report.version,
                formats=FORMATS,
            ),
        ]

    def _parent_of(self, tenant_id: str, case_id: str, job_id: str | None) -> str | None:
        if job_id is None:
            return None
        job = self._jobs.get(Scope.for_case(tenant_id, case_id, ACTOR), job_id)
        if job is None:
            return None
        return job.parent_job_id or job.id
