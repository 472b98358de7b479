"""Versioned case reports in the document store.

Collection ``reports``: one document per (case, version), ``_id = {case_id}-r{version}``; the report
itself (`aima.reports.model.CaseReport`) under ``report``. A new analysis adds the next version; older
versions stay readable. The version is taken by inserting the document under its id, so two writers
never get the same number. Deleting the case removes its reports with its other documents.
"""

from __future__ import annotations

from collections.abc import Callable

from aima.reports.model import CaseReport
from aima.storage.documents import DocumentStore, DuplicateDocument

REPORTS = "reports"
ROUNDS = 20


class ReportRepository:
    """The case's report versions, scoped by tenant and case."""

    def __init__(self, documents: DocumentStore) -> None:
        self._docs = documents

    def add(self, tenant_id: str, case_id: str, build: Callable[[int], CaseReport]) -> CaseReport:
        """Store ``build(version)`` as the next version and return it."""
        for _ in range(ROUNDS):
            version = self._newest_version(tenant_id, case_id) + 1
            report = build(version)
            if (report.tenant_id, report.case_id, report.version) != (tenant_id, case_id, version):
                raise ValueError("the report belongs to another case or version")
            doc = {
                "_id": f"{case_id}-r{version}",
                "tenant_id": tenant_id,
                "case_id": case_id,
                "version": version,
                "report_id": report.report_id,
                "created_at": report.created_at.isoformat(),
                "report": report.model_dump(mode="json"),
            }
            try:
                self._docs.insert_one(REPORTS, doc)
            except DuplicateDocument:
                continue  # another writer took the version: build the next one
            return report
        raise RuntimeError(f"could not take a report version of case {case_id} in {ROUNDS} rounds")

    def latest(self, tenant_id: str, case_id: str) -> CaseReport | None:
        docs = self._docs.find(
            REPORTS, {"tenant_id": tenant_id, "case_id": case_id}, sort=[("version", -1)], limit=1
        )
        return CaseReport.model_validate(docs[0]["report"]) if docs else None

    def get(self, tenant_id: str, case_id: str, version: int) -> CaseReport | None:
        doc = self._docs.find_one(REPORTS, {"tenant_id": tenant_id, "case_id": case_id, "version": version})
        return None if doc is None else CaseReport.model_validate(doc["report"])

    def versions(self, tenant_id: str, case_id: str) -> list[int]:
        docs = self._docs.find(REPORTS, {"tenant_id": tenant_id, "case_id": case_id}, sort=[("version", 1)])
        return [int(doc["version"]) for doc in docs]

    def _newest_version(self, tenant_id: str, case_id: str) -> int:
        versions = self.versions(tenant_id, case_id)
        return versions[-1] if versions else 0
