"""The gateway's transport middleware, as plain ASGI classes (cheap: no per-request setup).

`install_middleware` stacks them, outermost first::

    AccessLog > SecurityHeaders > RequestContext > CORS > RateLimit (per address) > BodySizeLimit > routes

so every response, including the 429, 413 and 500 answered by the middleware itself, carries the
security headers and the request id and gets one access-log line and one metric sample.
`RequestContextMiddleware` leaves ``request_id``, ``client`` and ``trace_id`` in ``scope["state"]``
(``request.state`` in routes); a later layer may add ``user_id`` there for the access log.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aima.settings import Settings
from aima.telemetry.metrics import HTTP_REQUESTS, HTTP_SECONDS
from aima.telemetry.tracing import extract, tracer
from functions.api.problems import internal_error_response, problem_response, request_id_of
from functions.api.ratelimit import RateLimiter, RateLimitMiddleware
from functions.runtime.app import REQUEST_ID as REQUEST_ID  # the header name, re-exported
from functions.runtime.problems import outage_problem

SERVICE = "api"
UNMATCHED = "unmatched"
PROBE_PATHS = ("/healthz", "/readyz", "/metrics")
DOCS_PATHS = ("/docs", "/redoc")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# what FastAPI's Swagger UI and ReDoc pages load: bundles from jsDelivr, inline bootstrap, fonts, workers
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    REQUEST_ID,
    "traceparent",
    "tracestate",
    "If-Match",
    "If-None-Match",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Tus-Resumable",
    "X-AIMA-Filename",
)
CORS_EXPOSED = (
    *(REQUEST_ID, "Retry-After", "Location", "ETag", "Upload-Length", "Upload-Offset", "Upload-Metadata"),
    *("Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm"),
    *("X-AIMA-Media-Id", "X-AIMA-SHA256", "X-AIMA-Duplicate-Of"),
)
"""What a browser may read of an answer: the tus headers and the stored file of a completed upload too."""

_REQUEST_ID_HEADER = REQUEST_ID.lower().encode()
_WELL_FORMED_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")  # as the function runtime's, on the raw bytes
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)

access_log = logging.getLogger("aima.access")
log = logging.getLogger(__name__)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/cases/{case_id}``), or ``unmatched``: never the raw path."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED


class RequestContextMiddleware:
    """Request id, client address and the request's server span, continuing the caller's ``traceparent``.

    A well-formed incoming ``X-Request-ID`` is kept, anything else replaced by a new one; it is
    echoed on the response. If an outer layer already runs a server span for the request (FastAPI's
    built-in telemetry does when a tracer provider is installed) that span is used, else one is
    started here. An exception no inner layer answered becomes a problem here, recorded on the span:
    503 ``service-unavailable`` with ``Retry-After`` when a store or the bus cannot be reached
    (`functions.runtime.problems.outage_problem`), else a 500 logged inside the span (so with its
    trace id).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = tracer("aima.api")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = trace.get_current_span()
        if current.is_recording():
            await self._serve(scope, receive, send, current, owned=False)
            return
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        parent = extract(carrier) if carrier else None
        with self.tracer.start_as_current_span(
            scope["method"],
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            await self._serve(scope, receive, send, span, owned=True, parent=parent)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        span: trace.Span,
        *,
        owned: bool,
        parent: Context | None = None,
    ) -> None:
        """Serve the request in ``span``; if ``owned`` (started here) also name it and set its outcome."""
        incoming = next((value for name, value in scope["headers"] if name == _REQUEST_ID_HEADER), b"")
        request_id = incoming.decode() if _WELL_FORMED_ID.fullmatch(incoming) else uuid.uuid4().hex
        client = scope.get("client")
        address = client[0] if client else None
        context = span.get_span_context()
        if not context.is_valid and parent is not None:  # no tracing SDK: keep the caller's trace id
            context = trace.get_current_span(parent).get_span_context()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client"] = address
        state["trace_id"] = format(context.trace_id, "032x") if context.is_valid else None
        span.set_attribute("aima.request_id", request_id)
        if address:
            span.set_attribute("client.address", address)
        echo = (_REQUEST_ID_HEADER, request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            span.record_exception(exc)
            if status:  # the response has begun: nothing left to answer with
                status = 500
                raise
            outage = outage_problem(exc)
            if outage is None:
                response = internal_error_response(scope, exc)
            else:  # a store or the bus is down: retry later (503), not a bug (500)
                log.warning(
                    "%s unavailable in %s %s: %s",
                    outage.extensions["component"],
                    scope["method"],
                    route_template(scope),
                    type(exc).__name__,
                    extra={"request_id": request_id},
                )
                response = outage.to_response(request_id)
            await response(scope, receive, send_with_id)
        finally:
            if owned:
                _finish(span, scope, status)


def _finish(span: trace.Span, scope: Scope, status: int) -> None:
    """Name a server span after its route and record the response status on it."""
    route = route_template(scope)
    if route != UNMATCHED:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status or 500)
    if not status or status >= 500:
        span.set_status(Status(StatusCode.ERROR))


class AccessLogMiddleware:
    """One ``aima.access`` log line and one metric sample per request, labelled by route template."""

    def __init__(self, app: ASGIApp, *, service: str = SERVICE) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_template(scope)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"  # clients choose methods
        HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
        HTTP_SECONDS.labels(self.service, route).observe(seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        state = scope.get("state") or {}
        extra: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "request_id": state.get("request_id"),
            "client": state.get("client"),
            "trace_id": state.get("trace_id"),  # the request's span has ended by now
        }
        if state.get("user_id") is not None:
            extra["user_id"] = state["user_id"]
        access_log.info("%s %s %d", method, route, status, extra=extra)


class SecurityHeadersMiddleware:
    """Hardening headers on every response; a response's own CSP or Cache-Control is kept.

    The API answers only data, so its CSP forbids everything; paths under ``docs_paths`` get
    `DOCS_CSP` so the interactive docs load. HSTS is sent when the request came over https
    (directly or per ``X-Forwarded-Proto`` from the ingress).
    """

    def __init__(self, app: ASGIApp, *, docs_paths: tuple[str, ...] = DOCS_PATHS) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope["path"].startswith(self.docs_paths) else API_CSP).encode()
        https = scope.get("scheme") == "https" or _forwarded_https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(_SECURITY_HEADERS)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", csp))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append((b"strict-transport-security", HSTS.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _forwarded_https(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto: bytes = value.split(b",", 1)[0].strip().lower()
            return proto == b"https"
    return False


class _BodyTooLarge(Exception):
    """Raised from ``receive`` when the streamed body passes the limit."""


class BodySizeLimitMiddleware:
    """413 problem when a request body exceeds ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before the body is read; a chunked body
    is counted as the application reads it, and on passing the limit reading fails and whatever the
    application answers is replaced by the 413. Paths under ``exempt_prefixes`` or matching
    ``exempt_paths`` (streaming uploads, which their function limits) are not limited here.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        exempt_prefixes: tuple[str, ...] = (),
        exempt_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes
        self.exempt_paths = exempt_paths

    def _exempt(self, path: str) -> bool:
        if self.exempt_prefixes and path.startswith(self.exempt_prefixes):
            return True
        return self.exempt_paths is not None and self.exempt_paths.fullmatch(path) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if _content_length(scope) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        exceeded = started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, refused
            if exceeded and not started:  # the app answers its failed read (FastAPI: 400): send 413 instead
                if not refused:
                    refused = True
                    await self._refuse(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if started:  # the app had begun answering before the body ran over: abort
                raise
        if exceeded and not started and not refused:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"The request body exceeds the limit of {self.max_bytes} bytes."
        response = problem_response(
            413, "content-too-large", "Content too large", detail, instance=request_id_of(scope)
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def install_middleware(
    app: FastAPI,
    settings: Settings,
    *,
    rate_limiter: RateLimiter,
    body_limit_exempt: tuple[str, ...] = (),
    body_limit_exempt_paths: re.Pattern[str] | None = None,
    rate_limit_exempt: tuple[str, ...] = PROBE_PATHS,
    docs_paths: tuple[str, ...] = DOCS_PATHS,
) -> None:
    """Stack the transport middleware on ``app`` in the order the module docstring shows.

    CORS admits ``settings.cors_origins`` with credentials; a ``*`` among them admits any origin,
    but then without credentials. No origins configured: no CORS at all.
    """
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        exempt_prefixes=body_limit_exempt,
        exempt_paths=body_limit_exempt_paths,
    )
    app.add_middleware(RateLimitMiddleware, limiter=rate_limiter, exempt_prefixes=rate_limit_exempt)
    if settings.cors_origins:
        wildcard = "*" in settings.cors_origins
        app.add_middleware(
            CORSMiddleware,
            allow_origins=["*"] if wildcard else list(settings.cors_origins),
            allow_credentials=not wildcard,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=docs_paths)
    app.add_middleware(AccessLogMiddleware, service=SERVICE)
