"""The fuse function: when a job's files are done, the case's timeline, persons, indicators, gaps,
narrative and chain of custody, as the next signed report version."""

from __future__ import annotations

from aima.access.scope import Scope
from aima.domain import ModelRef
from aima.reports.custody import sign
from aima.reports.model import CaseReport, NarrativeSection
from aima.storage.cases import CaseRepository
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.ocr import OcrRepository
from aima.storage.outcomes import OutcomeRepository
from aima.storage.persons import PersonRepository
from aima.storage.reports import ReportRepository
from aima.storage.reviews import ReviewRepository
from aima.storage.sensitivity import SensitivityRepository
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.storage.vision import VisionRepository
from events.catalogue import (
    AudioExtracted,
    FacesDetected,
    FramesExtracted,
    FusionCompleted,
    JobFinished,
    JobProgressed,
    MediaFailed,
    MediaProbed,
    PersonsClustered,
    PhrasesMatched,
    PoseEstimated,
    ReportGenerated,
    ReportRequested,
    SensitivityScored,
    SpeakersCompleted,
    TextRecognized,
    TranscriptCompleted,
    VisionDescribed,
)
from functions.fuse import narrative, picture
from functions.fuse.core import FuseCore, Pipeline
from functions.fuse.finish import JobFinisher
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources, discover
from inference.errors import ModelError
from inference.tasks.text import Narrator

ACTOR = "function:fuse"
PROBES = "probes"


def pipeline_of(specs: dict[str, FunctionSpec]) -> Pipeline:
    """The analysis steps' graph from their specs (fuse itself left out)."""
    steps = [spec for spec in specs.values() if spec.analysis and spec.name != SPEC.name]
    return Pipeline(
        consumes={spec.name: frozenset(p.TYPE for p in spec.consumes) for spec in steps},
        emits={spec.name: frozenset(p.TYPE for p in spec.emits) for spec in steps},
    )


class ReportBuilder:
    """Reads a case's stored results, builds the report, writes its narrative, signs and stores it."""

    def __init__(self, deps: Deps, pipeline: Pipeline) -> None:
        self._deps = deps
        self._pipeline = pipeline
        stores = deps.stores
        self.outcomes = OutcomeRepository(stores.documents)
        self.reports = ReportRepository(stores.documents)

    def extracted(self, tenant_id: str, case_id: str, media_id: str) -> set[str] | None:
        """The event types the probe extracted for the file (None before it stored its result)."""
        doc = self._deps.stores.documents.find_one(
            PROBES, {"_id": media_id, "tenant_id": tenant_id, "case_id": case_id}
        )
        if doc is None:
            return None
        found = set()
        if doc.get("frames"):
            found.add(FramesExtracted.TYPE)
        if doc.get("audio") is not None:
            found.add(AudioExtracted.TYPE)
        return found

    def facts(self, tenant_id: str, case_id: str, job_id: str | None) -> picture.CaseFacts:
        stores = self._deps.stores
        docs = stores.documents
        scope = Scope.for_case(tenant_id, case_id, ACTOR)
        case = CaseRepository(stores.db).get(scope, case_id)
        if case is None:
            raise LookupError(f"case {case_id} not found")
        files = MediaRepository(stores.db).list(scope, case_id)
        outcomes = self.outcomes.for_case(tenant_id, case_id)
        expected = {}
        for media in files:
            extracted = self.extracted(tenant_id, case_id, media.id)
            probe = outcomes.get(media.id, {}).get("probe")
            if probe is not None and probe.status == "failed":
                expected[media.id] = {"probe"}
            else:
                expected[media.id] = self._pipeline.expected(extracted or set(), outcomes.get(media.id, {}))
        transcripts = {t.media_id: t for t in TranscriptRepository(docs).latest_for_case(tenant_id, case_id)}
        speakers = CaseSpeakerRepository(docs)
        persons = PersonRepository(docs)
        threshold = self._deps.config.effective(tenant_id).thresholds.sensitive_blur
        sensitivity = SensitivityRepository(docs)
        probes = {
            str(doc["_id"]): doc for doc in docs.find(PROBES, {"tenant_id": tenant_id, "case_id": case_id})
        }
        head = self._deps.audit.head(tenant_id)
        return picture.CaseFacts(
            tenant_id=tenant_id,
            case_id=case_id,
            case_name=str(case["name"]),
            context=case.get("context"),
            job_id=job_id,
            files=files,
            outcomes=outcomes,
            expected=expected,
            transcripts=transcripts,
            speakers=speakers.speakers(tenant_id, case_id, merged=True),
            speaker_resolution=speakers.resolution(tenant_id, case_id),
            persons=persons.persons(tenant_id, case_id, merged=True),
            person_resolution=persons.resolution(tenant_id, case_id),
            tracks=persons.tracks(tenant_id, case_id),
            findings=picture.read_findings(docs, tenant_id, case_id),
            reviews=ReviewRepository(docs).for_case(tenant_id, case_id),
            ocr=OcrRepository(docs).latest_for_case(tenant_id, case_id),
            vision=VisionRepository(docs).latest_for_case(tenant_id, case_id),
            sensitive={
                m.id
                for m in files
                if sensitivity.media_verdict(tenant_id, case_id, m.id, threshold).sensitive
            },
            thumbnails={
                media_id: str(doc["thumbnail"]) for media_id, doc in probes.items() if doc.get("thumbnail")
            },
            audit_head=(tenant_id, *head),
        )

    def build(self, tenant_id: str, case_id: str, job_id: str | None) -> CaseReport:
        """Build, narrate, sign and store the case's next report version."""
        facts = self.facts(tenant_id, case_id, job_id)

        def make(version: int) -> CaseReport:
            report = picture.build(facts, version)
            report = report.model_copy(update={"narrative": self.narrate(report)})
            return sign(report, self._deps.keyring)

        return self.reports.add(tenant_id, case_id, make)

    def narrate(self, report: CaseReport) -> NarrativeSection:
        """The narrator's sentences where one is configured and answers, else the deterministic ones."""
        try:
            model = self._deps.models.get(Narrator)
            ref = ModelRef(name=model.name, version=model.version or "unknown", backend=model.backend)
            return narrative.from_model(report, model.predict, ref)
        except ModelError as exc:
            section = narrative.deterministic(report)
            if exc.outcome.value == "not_run":
                return section
            return section.model_copy(update={"note": f"the narrator did not answer: {exc.reason}"})


def build(deps: Deps) -> FuseCore:
    """A core on the process's stores; the pipeline graph comes from the installed function specs."""
    pipeline = pipeline_of(discover())
    builder = ReportBuilder(deps, pipeline)
    return FuseCore(
        builder.outcomes,
        JobRepository(deps.stores.db),
        pipeline,
        extracted=builder.extracted,
        build_report=builder.build,
        finish_job=JobFinisher(deps).finish,
    )


SPEC = FunctionSpec(
    name="fuse",
    description="when a job's files are done: timeline, persons, indicators, gaps, narrative, signed report",
    consumes=(
        MediaProbed,
        FramesExtracted,
        AudioExtracted,
        MediaFailed,
        TranscriptCompleted,
        SpeakersCompleted,
        PhrasesMatched,
        TextRecognized,
        FacesDetected,
        PersonsClustered,
        PoseEstimated,
        SensitivityScored,
        VisionDescribed,
        ReportRequested,
        JobProgressed,
        JobFinished,
    ),
    emits=(FusionCompleted, ReportGenerated),
    build=build,
    needs=("database", "documents", "bus"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=1, timeout_s=900, max_scale=2),
    port=8093,
    analysis=True,
)
