"""TODO real API: a stand-in for the gateway's job routes (``functions/api/routes/jobs.py``, being
written) behind an `httpx.MockTransport`, keeping to the contract the operator's client is written
against: routes, JobView shapes, problem+json errors, the ``reference`` idempotency. Replace it with
the real gateway on real stores (as ``tests/api/conftest.py`` builds it) once the routes land.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

TOKEN = "operator-service-token"
ESTIMATE = {
    "model_s": 340.0,
    "wall_s": 95.0,
    "cost": 12.4,
    "currency": "EUR",
    "gpu_profile": "l4",
    "per_step": {"transcribe": {"model_s": 200.0, "cost": 7.3}},
}
FINAL = {"Succeeded", "PartiallySucceeded", "Failed", "Cancelled"}
REQUEST_FIELDS = {
    "media_ids",
    "sources",
    "steps",
    "priority",
    "context",
    "language",
    "require_approval",
    "approved",
    "hold_until",
    "reference",
}
_ROUTE = re.compile(r"^/api/v1/cases/(?P<case>[^/]+)/jobs(?:/(?P<job>[^/]+))?(?:/(?P<action>[a-z]+))?$")


@dataclass
class Failure:
    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeGateway:
    """The job routes over one in-memory table; ``calls`` lists every request as ``(method, path)``."""

    cases: set[str]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, Failure]] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def fail_next(self, method: str, suffix: str, status: int, detail: str = "", **headers: str) -> None:
        """Answer the next ``method`` request whose path ends with ``suffix`` with a problem."""
        self.failures.append((method, suffix, Failure(status, detail, headers)))

    def set(self, job_id: str, **fields: Any) -> None:
        """Move a job along, as the pipeline would."""
        self.jobs[job_id].update(fields)

    def only_job(self) -> dict[str, Any]:
        assert len(self.jobs) == 1, self.jobs
        return next(iter(self.jobs.values()))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append((request.method, request.url.raw_path.decode()))
        for index, (method, suffix, failure) in enumerate(self.failures):
            if method == request.method and path.endswith(suffix):
                del self.failures[index]
                return problem(failure.status, failure.detail, failure.headers)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return problem(401, "a bearer token is required")
        route = _ROUTE.match(path)
        if route is None:
            return problem(404, f"no route {path}")
        case_id, job_id, action = route["case"], route["job"], route["action"]
        if case_id not in self.cases:
            return problem(404, f"no case {case_id}")
        if job_id is None:
            if request.method == "POST":
                return self._submit(case_id, json.loads(request.content))
            return httpx.Response(
                200, json={"items": [j for j in self.jobs.values() if j["case_id"] == case_id]}
            )
        if job_id == "estimate" and request.method == "POST":
            return httpx.Response(200, json=ESTIMATE)
        job = self.jobs.get(job_id)
        if job is None or job["case_id"] != case_id:
            return problem(404, f"no job {job_id} in case {case_id}")
        if request.method == "GET" and action is None:
            return httpx.Response(200, json=job)
        if request.method == "DELETE" and action is None:
            results = request.url.params.get("results", "keep")
            self.deleted.append((job_id, results))
            if job["phase"] not in FINAL:
                job["phase"] = "Cancelled"
            return httpx.Response(204)
        if request.method == "POST" and action == "cancel":
            if job["phase"] in FINAL:
                return problem(409, f"the job is {job['phase']}")
            job["phase"] = "Cancelled"
            return httpx.Response(200, json=job)
        if request.method == "POST" and action == "approve":
            if job["phase"] != "AwaitingApproval":
                return problem(409, f"the job is {job['phase']}")
            job["approval"] = {
                **job["approval"],
                "approved_by": "svc-operator",
                "approved_at": "2026-03-01T10:05:00Z",
            }
            job["phase"] = "Running"
            return httpx.Response(200, json=job)
        return problem(405, f"{request.method} {path}")

    def _submit(self, case_id: str, body: dict[str, Any]) -> httpx.Response:
        unknown = set(body) - REQUEST_FIELDS
        if unknown or not (body.get("media_ids") or body.get("sources")):
            return problem(422, f"invalid job request: unknown {sorted(unknown)} or no media")
        self.requests.append(body)
        for job in self.jobs.values():
            if body.get("reference") and job["reference"] == body["reference"]:
                return httpx.Response(200, json=job)
        job_id = f"job-{len(self.jobs) + 1}"
        approved = bool(body.get("approved"))
        self.jobs[job_id] = {
            "id": job_id,
            "case_id": case_id,
            "phase": "Queued",
            "priority": body.get("priority", "normal"),
            "steps": body.get("steps") or ["probe", "transcribe", "fuse", "report"],
            "progress": 0.0,
            "eta_s": None,
            "counts": {},
            "files": len(body.get("media_ids") or []) + len(body.get("sources") or []),
            "estimate": ESTIMATE,
            "actual": None,
            "approval": {
                "required": bool(body.get("require_approval")),
                "approved_by": "svc-operator" if approved else None,
                "approved_at": "2026-03-01T10:00:01Z" if approved else None,
            },
            "report": None,
            "reason": None,
            "reference": body.get("reference"),
            "created_at": "2026-03-01T10:00:01Z",
            "started_at": None,
            "finished_at": None,
        }
        return httpx.Response(201, json=self.jobs[job_id])


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> httpx.Response:
    title = httpx.codes.get_reason_phrase(status) or "Error"
    return httpx.Response(
        status,
        json={"type": f"urn:aima:problem:{status}", "title": title, "status": status, "detail": detail},
        headers={"Content-Type": "application/problem+json", **(headers or {})},
    )
