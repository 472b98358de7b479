"""RFC 9457 problem details: the one error format of the public gateway.

Every error body is ``application/problem+json`` with ``type`` (``urn:aima:problem:<kind>``),
``title``, ``status``, usually ``detail``, and ``instance`` = the request id, which is also the
``X-Request-ID`` response header, so a user quoting it leads to the request's log lines and trace.
Routes raise `Problem`; `install_problem_handlers` renders it and every framework error the same way.
An unexpected exception answers 500 with a generic detail: its text and traceback go to the log only.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from aima.telemetry.tracing import current_ids
from functions.runtime.problems import PROBLEM_JSON, TYPE_PREFIX, Problem, problem_body, problem_response

__all__ = [
    "INTERNAL_DETAIL",
    "PROBLEM_JSON",
    "TYPE_PREFIX",
    "FieldError",
    "Problem",
    "ProblemModel",
    "install_problem_handlers",
    "internal_error_response",
    "problem_body",
    "problem_response",
    "problem_responses",
    "request_id_of",
    "request_validation_problem",
]

INTERNAL_DETAIL = "An unexpected error occurred. Quote the request id (instance) when reporting it."

log = logging.getLogger(__name__)


def request_id_of(scope: Scope) -> str | None:
    """The request id that `RequestContextMiddleware` put in the scope's state, if any."""
    state = scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None


def internal_error_response(scope: Scope, exc: BaseException) -> JSONResponse:
    """Log ``exc`` with the request's ids and answer a generic 500 that reveals nothing of it."""
    state: dict[str, Any] = scope.get("state") or {}
    extra: dict[str, Any] = {"request_id": state.get("request_id")}
    if current_ids()[0] is None:  # outside the request's span: take its trace id from the state
        extra["trace_id"] = state.get("trace_id")
    log.error(
        "unhandled %s in %s %s",
        type(exc).__name__,
        scope.get("method"),
        scope.get("path"),
        exc_info=(type(exc), exc, exc.__traceback__),
        extra=extra,
    )
    return problem_response(
        500, "internal-error", "Internal server error", INTERNAL_DETAIL, instance=extra["request_id"]
    )


class FieldError(BaseModel):
    """One failed field of a request: where, why, and pydantic's error type."""

    loc: list[str | int]
    msg: str
    type: str


class ProblemModel(BaseModel):
    """The problem-details body, for OpenAPI ``responses=`` declarations (see `problem_responses`)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented as a `ProblemModel` in problem+json."""
    schema = {"$ref": "#/components/schemas/ProblemModel"}
    return {
        status: {
            "model": ProblemModel,  # registers the schema; FastAPI also lists it under application/json
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


def install_problem_handlers(app: FastAPI) -> None:
    """Render `Problem`, HTTP errors (404, 405, ...), validation errors (422) and anything else (500)."""
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, request_validation_problem)
    # reached only by errors no middleware turned into a response first; the server logs it again
    app.add_exception_handler(Exception, _unexpected)


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.to_response(request_id_of(request.scope))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = f"HTTP {exc.status_code}"
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    headers = exc.headers
    allowed = _allowed_methods(request) if exc.status_code == 405 else []
    if allowed:
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return problem_response(
        exc.status_code,
        _slug(phrase),
        phrase,
        detail,
        instance=request_id_of(request.scope),
        headers=headers,
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method the app's routes take at the request's path (Starlette names the first route's only)."""
    methods: set[str] = set()
    for route in request.app.routes:
        pattern, taken = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if pattern is not None and taken and pattern.match(request.scope["path"]):
            methods |= taken
    return sorted(methods)


async def request_validation_problem(request: Request, exc: Exception) -> JSONResponse:
    """422 listing each failed field; the offending input is not echoed (it may be a password)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    count = len(errors)
    return problem_response(
        422,
        "validation-failed",
        "Request validation failed",
        f"{count} field{'s' if count != 1 else ''} of the request failed validation; see errors.",
        instance=request_id_of(request.scope),
        extensions={"errors": errors},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return internal_error_response(request.scope, exc)


def _slug(phrase: str) -> str:
    return "-".join(phrase.lower().replace("'", "").split())
