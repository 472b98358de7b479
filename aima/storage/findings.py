"""Findings in the document store: indicators for human review, per media file and pipeline step.

Collection ``findings``: ``_id`` = the finding's id; besides the `aima.domain.Finding` fields every
document carries ``media_id`` and ``run`` (what produced it, e.g. the handled event's id). A step
may store a subclass of `Finding` with fields of its own (the spoken cues store which cue matched
and how); a reader that asks for plain `Finding` gets those fields left out.

`FindingRepository.replace_media` is how a step re-analyses a file: it writes the run's findings
(deterministic ids: a redelivered run writes the same documents again) and then drops that file's
findings of the step from any other run, so readers never see two runs mixed for long and a crash
half-way leaves the older findings rather than none. Every read is scoped by tenant and case;
deleting a case removes its findings with its other documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from aima.domain import Finding, Step
from aima.storage.documents import DocumentStore

FINDINGS = "findings"
_KEYS = ("_id", "tenant_id", "case_id")

F = TypeVar("F", bound=Finding)


class FindingRepository:
    """Findings of the steps, scoped by tenant and case (see module docstring)."""

    def __init__(self, documents: DocumentStore) -> None:
        self._docs = documents

    def replace_media(
        self,
        tenant_id: str,
        case_id: str,
        media_id: str,
        step: Step,
        findings: Sequence[Finding],
        *,
        run: str,
    ) -> int:
        """Make ``findings`` the step's findings of the media; returns how many older ones were dropped."""
        for finding in findings:
            if (finding.tenant_id, finding.case_id, finding.step) != (tenant_id, case_id, step):
                raise ValueError(f"finding {finding.id} belongs to another case or step")
            doc = finding.model_dump(mode="json")
            fields = {key: value for key, value in doc.items() if key not in _KEYS}
            where = {"tenant_id": tenant_id, "case_id": case_id, "_id": finding.id}
            self._docs.update_one(
                FINDINGS, where, {"$set": {**fields, "media_id": media_id, "run": run}}, upsert=True
            )
        stale = {
            "tenant_id": tenant_id,
            "case_id": case_id,
            "media_id": media_id,
            "step": step.value,
            "run": {"$ne": run},
        }
        return self._docs.delete_many(FINDINGS, stale)

    def list(
        self,
        tenant_id: str,
        case_id: str,
        *,
        media_id: str | None = None,
        step: Step | None = None,
        model: type[F] = Finding,  # type: ignore[assignment]
    ) -> list[F]:
        """The case's findings (of one media file, of one step), by confidence, highest first."""
        where: dict[str, Any] = {"tenant_id": tenant_id, "case_id": case_id}
        if media_id is not None:
            where["media_id"] = media_id
        if step is not None:
            where["step"] = step.value
        docs = self._docs.find(FINDINGS, where, sort=[("confidence", -1), ("_id", 1)])
        return [_finding(doc, model) for doc in docs]

    def delete_media(self, tenant_id: str, case_id: str, media_id: str) -> int:
        """Remove every finding of the media file."""
        return self._docs.delete_many(
            FINDINGS, {"tenant_id": tenant_id, "case_id": case_id, "media_id": media_id}
        )


def _finding(doc: Mapping[str, Any], model: type[F]) -> F:
    return model.model_validate({key: value for key, value in doc.items() if key in model.model_fields})
