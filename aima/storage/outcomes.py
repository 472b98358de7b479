"""What each pipeline step did with each file, and which jobs were fused: the fuse step's ledger.

Collection ``step_outcomes``: one document per (media file, step), ``_id = {media_id}:{step}``, with
the step's latest outcome (``succeeded``, ``failed`` or ``not_run``), the reason, the model and the
version of the stored result, the job whose event reported it and when. A re-analysis overwrites it.

Collection ``fusions``: one document per fused job, ``_id = {job_id}``, inserted before its report
is built, so two fuse processes that see a job complete at the same moment build one report.
Every document carries ``tenant_id`` and ``case_id``: deleting the case removes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import ModelRef, utcnow
from aima.storage.documents import DocumentStore, DuplicateDocument

OUTCOMES = "step_outcomes"
FUSIONS = "fusions"
Status = Literal["succeeded", "failed", "not_run", "cancelled"]


class Outcome(BaseModel):
    """One step's latest outcome for one file."""

    model_config = ConfigDict(extra="ignore")

    media_id: str
    step: str
    status: Status
    reason: str | None = None
    model: ModelRef | None = None
    version: int | None = Field(default=None, ge=1)
    job_id: str | None = None
    event_id: str | None = None
    at: datetime = Field(default_factory=utcnow)


class OutcomeRepository:
    """The ledger of step outcomes and fused jobs, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        self._docs = documents

    def record(self, tenant_id: str, case_id: str, outcome: Outcome) -> None:
        """Make ``outcome`` the step's latest for its file."""
        where = {"_id": f"{outcome.media_id}:{outcome.step}", "tenant_id": tenant_id, "case_id": case_id}
        fields = outcome.model_dump(mode="json")
        self._docs.update_one(OUTCOMES, where, {"$set": fields}, upsert=True)

    def forget_unfinished(self, tenant_id: str, case_id: str, media_id: str, step: str) -> None:
        """Drop the step's ``cancelled`` or ``failed`` outcome for the file: it is to run again (a
        resumed job). A finished one stays: its event was handled, and a rerun emits the same id."""
        where = {"_id": f"{media_id}:{step}", "tenant_id": tenant_id, "case_id": case_id}
        self._docs.delete_many(OUTCOMES, where | {"status": {"$in": ["cancelled", "failed"]}})

    def for_media(self, tenant_id: str, case_id: str, media_id: str) -> dict[str, Outcome]:
        """The file's outcomes by step."""
        docs = self._docs.find(OUTCOMES, {"tenant_id": tenant_id, "case_id": case_id, "media_id": media_id})
        return {doc["step"]: _outcome(doc) for doc in docs}

    def for_case(self, tenant_id: str, case_id: str) -> dict[str, dict[str, Outcome]]:
        """Every file's outcomes: media id → step → outcome."""
        found: dict[str, dict[str, Outcome]] = {}
        for doc in self._docs.find(OUTCOMES, {"tenant_id": tenant_id, "case_id": case_id}):
            found.setdefault(doc["media_id"], {})[doc["step"]] = _outcome(doc)
        return found

    def claim_fusion(self, tenant_id: str, case_id: str, job_id: str) -> bool:
        """True for the first caller that claims ``job_id``; False if it was fused (or is being fused)."""
        doc = {"_id": job_id, "tenant_id": tenant_id, "case_id": case_id, "at": utcnow()}
        try:
            self._docs.insert_one(FUSIONS, doc)
        except DuplicateDocument:
            return False
        return True

    def release_fusion(self, tenant_id: str, case_id: str, job_id: str) -> None:
        """Undo a claim whose report could not be built, so a redelivery tries again."""
        self._docs.delete_many(FUSIONS, {"_id": job_id, "tenant_id": tenant_id, "case_id": case_id})

    def fused(self, tenant_id: str, case_id: str, job_id: str) -> bool:
        return self._docs.count(FUSIONS, {"_id": job_id, "tenant_id": tenant_id, "case_id": case_id}) > 0


def _outcome(doc: Mapping[str, Any]) -> Outcome:
    return Outcome.model_validate(doc)
