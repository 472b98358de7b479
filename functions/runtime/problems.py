"""RFC 9457 problem details as every function answers errors: ``application/problem+json`` with
``type`` = ``urn:aima:problem:<kind>``, ``title``, ``status`` and usually ``detail`` and ``instance``
(the request id)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

from aima.storage import outages

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:aima:problem:"


class Problem(Exception):
    """An error answered as problem details; ``headers`` go on the response, ``extensions`` into the body."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {kind}: {detail or title}")
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.kind

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem-details members; ``instance`` is the request id."""
        return problem_body(
            self.status, self.kind, self.title, self.detail, instance=instance, extensions=self.extensions
        )

    def to_response(self, instance: str | None = None) -> JSONResponse:
        """This problem as a response; ``instance`` is the request id."""
        return JSONResponse(
            self.body(instance), status_code=self.status, headers=self.headers, media_type=PROBLEM_JSON
        )


def problem_body(
    status: int,
    kind: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Problem-details members; those that are None are left out, and ``extensions`` never override
    the standard members."""
    body: dict[str, Any] = {"type": TYPE_PREFIX + kind, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    for key, value in (extensions or {}).items():
        body.setdefault(key, value)
    return body


def problem_response(
    status: int,
    kind: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An ``application/problem+json`` response (see `problem_body`)."""
    problem = Problem(status, kind, title, detail, headers=headers, extensions=extensions)
    return problem.to_response(instance)


# --- outages: a store or the bus cannot be reached --------------------------------------------


def outage_problem(exc: BaseException) -> Problem | None:
    """503 ``service-unavailable`` with ``Retry-After`` if ``exc`` is, or was caused by, a store or
    the bus being unreachable (`aima.storage.outages`); None for any other error.

    The detail names the component (as ``/readyz`` does) and nothing of the error itself.
    """
    component = outages.outage_of(exc)
    if component is None:
        return None
    seconds = outages.RETRY_AFTER_S
    detail = f"The {component} is unavailable right now; send the request again in {seconds} s."
    return Problem(
        503,
        "service-unavailable",
        "Service unavailable",
        detail,
        headers={"Retry-After": str(seconds)},
        extensions={"component": component},
    )
