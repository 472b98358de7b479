"""The AnalysisJob resource's names and what the operator needs of the Kubernetes API.

`PERMISSIONS` is the one declaration of the operator's access: ``main.py`` configures Kopf so that it
needs nothing more (standalone, no cluster scanning, its state in annotations, only warnings posted
as events), registers every handler for `GROUP`/`VERSION`/`PLURAL`, and the tests compare this set
with the rules of the Helm chart's role.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GROUP = "aima.io"
VERSION = "v1alpha1"
PLURAL = "analysisjobs"
KIND = "AnalysisJob"

APPROVAL_ANNOTATION = "aima.io/approved"
"""``"true"`` approves the job's estimated cost, as ``spec.approval.approved: true`` does."""
FINALIZER = "aima.io/analysisjob-operator"
STORAGE_PREFIX = "operator.aima.io"
"""Kopf keeps its progress and the last handled spec in annotations under this prefix (the status
is structural, so a ``status.kopf`` stanza would be pruned)."""

FOLDER = Path(__file__).resolve().parent
CRD_FILE = FOLDER / "crd.yaml"


@dataclass(frozen=True)
class Permission:
    """One verb on one resource (``group`` ``""`` is the core API), and why it is needed."""

    group: str
    resource: str
    verb: str
    why: str


PERMISSIONS: tuple[Permission, ...] = (
    Permission(GROUP, PLURAL, "list", "Kopf lists the AnalysisJobs it serves when its watch starts"),
    Permission(GROUP, PLURAL, "watch", "Kopf watches them for changes"),
    Permission(GROUP, PLURAL, "patch", "Kopf's finalizer and its state annotations (operator.aima.io/...)"),
    Permission(GROUP, f"{PLURAL}/status", "patch", "the handlers' status patches (a status subresource)"),
    Permission("", "events", "create", "Kopf posts the handlers' warnings and errors as events"),
)
