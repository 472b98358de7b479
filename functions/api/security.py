"""Authentication, authorisation and audit of the gateway's routes, in one place.

Every route is registered with `api_route`, which names its `Action`: it is kept on the OpenAPI
operation as ``x-aima-action`` and `assert_routes_declared` stops the app at start-up if a route has
none. For every action but `Action.PUBLIC` the endpoint receives an `Access`, built per request by
the `Gate` (one threadpool hop; at most two small queries, none while the caller's user record and
memberships are remembered, see ``AIMA_ACCESS_CACHE_TTL``):

1. **authentication**: the Bearer token (``OAuth2PasswordBearer``, so OpenAPI shows the scheme) is
   verified, and the user looked up: it must exist and be enabled, and its role is the one that
   counts. A missing or invalid token answers 401 with
   ``WWW-Authenticate: Bearer`` and writes one audit record (``auth.authenticate``, actor
   ``anonymous``, outcome ``denied``, in the `ANONYMOUS_TENANT` chain: no tenant can be trusted yet);
2. the per-user rate limit;
3. **authorisation**: `decide` on the subject, the action and the case named by the path's
   ``{case_id}`` with the subject's membership role on it (admins need none). Denied: one
   audit record, and 404 if the subject is no member of the case (its existence is not revealed),
   else 403;
4. **audit**: after the endpoint returned, one record (``allowed``; ``failed`` if it raised or its
   parameters were invalid) for every action of kind read, change, export or delete, unless the
   endpoint wrote it itself. A change writes it inside its own transaction
   (``audit=access.hook(...)`` on the repository call), so the change and its record commit together
   or not at all. Other records go through the batching `functions.api.auditing.AuditWriter`; the
   answer waits (on the event loop, holding no thread) until the record is committed.

Protected endpoints are plain functions (the kernel is synchronous), run in the threadpool by their
wrapper; only those that stream a body through to a function are coroutines. Route
modules declare their routes on a `RouteTable`, which `create_app` installs with the API prefix.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

import anyio.from_thread
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import OAuth2PasswordBearer
from starlette.concurrency import run_in_threadpool

from aima.access.policy import ACTION_KIND, Action, CaseRole, Decision, Resource, Subject, decide
from aima.access.scope import Scope
from aima.identity.errors import InvalidToken
from aima.identity.model import Principal
from aima.storage.audit import AuditEntry, Outcome
from aima.storage.relational import after_commit
from aima.telemetry.tracing import inject
from events.catalogue import EventData, make_event
from functions.api.middleware import PROBE_PATHS, route_template
from functions.api.problems import Problem, problem_responses, request_validation_problem
from functions.api.ratelimit import raise_for_verdict
from functions.api.services import ApiServices

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
TOKEN_URL = f"{API_PREFIX}/auth/token"
ACTION_KEY = "x-aima-action"
"""The OpenAPI operation member naming a route's action."""
ANONYMOUS = "anonymous"
AUTHENTICATE = "auth.authenticate"
"""The action of a failed authentication's audit record (the attempted action is in its detail)."""
ANONYMOUS_TENANT = "anonymous"
"""The audit chain of failed authentications: without a valid token no tenant can be trusted."""
AUDITED_KINDS = frozenset({"read", "change", "export", "delete"})
EVENT_SOURCE = "/aima/api"
ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
"""What a case or user id looks like (a UUID); anything else names nothing."""
_ACTION_ATTR = "__aima_action__"
_MAX_REQUEST_ID = 100  # the audit log's column

bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What an audit record says about the request: its ids, client and route template."""

    request_id: str | None
    client: str | None
    trace_id: str | None
    route: str

    @classmethod
    def of(cls, request: Request) -> RequestInfo:
        state = request.scope.get("state") or {}
        request_id = state.get("request_id")
        return cls(
            request_id=request_id[:_MAX_REQUEST_ID] if request_id else None,
            client=state.get("client"),
            trace_id=state.get("trace_id"),
            route=f"{request.method} {route_template(request.scope)}",
        )


class Gate:
    """Authenticates, authorises and audits the requests of one app (``app.state.gate``).

    ``auth=False`` is for the benchmark baseline only: every request acts as ``principal`` (an
    admin), without token, rate limit or audit record. Never serve such an app.
    """

    def __init__(
        self, services: ApiServices, *, auth: bool = True, principal: Principal | None = None
    ) -> None:
        if not auth and principal is None:
            raise ValueError("an app without authentication needs the principal it acts as")
        self.services = services
        self.auth = auth
        self._fixed = principal

    @staticmethod
    def of(request: Request) -> Gate:
        """The gate of the app serving ``request``."""
        gate: Gate = request.app.state.gate
        return gate

    def authorize(self, request: Request, token: str | None, action: Action) -> Access:
        """The `Access` of this request for ``action``; raises the 401/403/404/429 `Problem` otherwise."""
        info = RequestInfo.of(request)
        raw_case = request.path_params.get("case_id")
        case_id = raw_case if raw_case is not None and ID.fullmatch(raw_case) else None
        principal = self._authenticate(token, info, action, case_id)
        return self.admit(request, principal, action)

    def admit(self, request: Request, principal: Principal, action: Action) -> Access:
        """The `Access` of an authenticated ``principal`` for ``action`` on the route's case (its
        membership read now); raises the 403/404 `Problem`, audited, otherwise."""
        info = RequestInfo.of(request)
        raw_case = request.path_params.get("case_id")
        case_id = raw_case if raw_case is not None and ID.fullmatch(raw_case) else None
        request.state.user_id = principal.user_id
        subject = Subject(principal.user_id, principal.tenant_id, principal.role.value, principal.kind)
        memberships: dict[str, str] | None = None
        case_role: CaseRole | None = None
        if raw_case is not None and subject.role != "admin":
            memberships = self.services.cases.memberships(subject.tenant_id, subject.user_id)
            case_role = cast("CaseRole | None", memberships.get(raw_case))
        resource = Resource(subject.tenant_id, case_id, case_role)
        access = Access(self, action, principal, subject, resource, info, memberships)
        if raw_case is not None and case_id is None:
            decision = Decision(False, "malformed case id")
        else:
            decision = decide(subject, action, resource)
        if not decision:
            access.audit(outcome="denied", detail={"reason": decision.reason})
            if raw_case is not None and case_role is None:
                raise not_found("case")
            raise Problem(403, "forbidden", "Forbidden", f"Not allowed: {decision.reason}.")
        request.state.access = access  # for `audit_invalid_request`, should the parameters be invalid
        return access

    def record(
        self,
        info: RequestInfo,
        *,
        tenant_id: str,
        actor: str,
        action: str,
        outcome: Outcome,
        case_id: str | None = None,
        object: str | None = None,
        detail: dict[str, Any] | None = None,
        session: Any = None,
    ) -> None:
        """Write one audit record about the request: in ``session``'s transaction if given, else through
        the batching writer (returning once it is committed)."""
        entry = _entry(info, actor, action, outcome, case_id, object, detail)
        if session is None:
            self.services.audit_writer.write(tenant_id, entry)
        else:
            self.services.audit.record_many(session, tenant_id, [entry])

    def _authenticate(
        self, token: str | None, info: RequestInfo, action: Action, case_id: str | None
    ) -> Principal:
        if not self.auth:
            assert self._fixed is not None
            return self._fixed
        if token is None:
            raise self.refuse(info, action, case_id, "no bearer token", 'Bearer realm="aima"')
        try:
            principal = self.services.tokens.verify_access(token)
        except InvalidToken as exc:
            raise self.refuse(info, action, case_id, exc.reason, 'Bearer error="invalid_token"') from None
        raise_for_verdict(self.services.limiter.hit("user", principal.user_id))
        return principal

    def refuse(
        self, info: RequestInfo, action: Action, case_id: str | None, reason: str, challenge: str
    ) -> Problem:
        """The 401 problem for a request whose credentials failed, its denial audited (``anonymous``)."""
        self.record(
            info,
            tenant_id=ANONYMOUS_TENANT,
            actor=ANONYMOUS,
            action=AUTHENTICATE,
            outcome="denied",
            case_id=case_id,
            detail={"reason": reason, "attempted": action.value},
        )
        return unauthorized(f"Authentication failed: {reason}.", challenge)


class Access:
    """One authorised request: who (``subject``), what (``action``), on what (``resource``), and its audit."""

    __slots__ = (
        "_memberships",
        "_scope",
        "action",
        "audited",
        "gate",
        "info",
        "principal",
        "resource",
        "subject",
    )

    def __init__(
        self,
        gate: Gate,
        action: Action,
        principal: Principal,
        subject: Subject,
        resource: Resource,
        info: RequestInfo,
        memberships: dict[str, str] | None,
    ) -> None:
        self.gate = gate
        self.action = action
        self.principal = principal
        self.subject = subject
        self.resource = resource
        self.info = info
        self.audited = False
        self._memberships = memberships
        self._scope: Scope | None = None

    @property
    def services(self) -> ApiServices:
        return self.gate.services

    @property
    def case_id(self) -> str | None:
        """The case named by the route's ``{case_id}``, if any."""
        return self.resource.case_id

    @property
    def scope(self) -> Scope:
        """The subject's data scope: the whole tenant for admins, else its cases (read on first use)."""
        if self._scope is None:
            if self.subject.role != "admin" and self._memberships is None:
                self._memberships = self.services.cases.memberships(
                    self.subject.tenant_id, self.subject.user_id
                )
            self._scope = Scope.for_subject(self.subject, self._memberships or ())
        return self._scope

    @property
    def tenant_scope(self) -> Scope:
        """The whole tenant, acting as the subject: only for creating a case (the policy allowed it)."""
        return Scope.for_tenant(self.subject.tenant_id, self.subject.user_id)

    def require_case(self) -> str:
        """The route's case id; 404 unless the case exists in the scope (a membership shows it does)."""
        case_id = self.case_id
        if case_id is None:
            raise not_found("case")
        if self.resource.case_role is None and self.services.cases.get(self.scope, case_id) is None:
            raise not_found("case")
        return case_id

    def audit(
        self,
        session: Any = None,
        *,
        outcome: Outcome = "allowed",
        action: str | None = None,
        case_id: str | None = None,
        object: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write this request's audit record: in ``session``'s transaction if given (it counts once that
        commits), else at once. Defaults: the route's action and case."""
        if not self.gate.auth:
            self.audited = True
            return
        self.gate.record(
            self.info,
            tenant_id=self.subject.tenant_id,
            actor=self.subject.user_id,
            action=action or self.action.value,
            outcome=outcome,
            case_id=case_id or self.case_id,
            object=object,
            detail=detail,
            session=session,
        )
        if session is None:
            self.audited = True
        else:
            after_commit(session, self.mark_audited)

    async def finish(self, error: str | None = None) -> None:
        """Write the request's record unless it was written: ``allowed``, or ``failed`` with ``error``;
        only for actions of an audited kind (read, change, export, delete). Waits for its commit on
        the event loop, holding no thread."""
        if self.audited or ACTION_KIND[self.action] not in AUDITED_KINDS:
            return
        if self.gate.auth:
            outcome: Outcome = "allowed" if error is None else "failed"
            detail = None if error is None else {"error": error}
            entry = _entry(
                self.info, self.subject.user_id, self.action.value, outcome, self.case_id, None, detail
            )
            await asyncio.wrap_future(self.services.audit_writer.submit(self.subject.tenant_id, entry))
        self.audited = True

    def mark_audited(self) -> None:
        """Note that the kernel wrote this request's record itself (in the change's transaction)."""
        self.audited = True

    def hook(self, **fields: Any) -> Callable[[Any], None]:
        """An ``audit=`` hook for a kernel change: `audit` in the change's own transaction."""
        return lambda session: self.audit(session, **fields)

    def publish(self, data: EventData, subject: str | None = None) -> None:
        """Publish an event after a committed change; a bus failure is logged, the change stands."""
        event = make_event(data, source=EVENT_SOURCE, subject=subject, **inject())
        try:
            anyio.from_thread.run(self.services.bus.publish, event)
        except Exception:
            log.exception("publishing %s failed", event.type, extra={"event_id": event.id})


def _entry(
    info: RequestInfo,
    actor: str,
    action: str,
    outcome: Outcome,
    case_id: str | None,
    object: str | None,
    detail: dict[str, Any] | None,
) -> AuditEntry:
    """The audit record of a request: who, what, the outcome, and the request's ids and route."""
    return AuditEntry(
        actor=actor,
        action=action,
        outcome=outcome,
        case_id=case_id,
        object=object,
        request_id=info.request_id,
        client=info.client,
        trace_id=info.trace_id,
        detail={"route": info.route, **(detail or {})},
    )


def unauthorized(detail: str, challenge: str = 'Bearer realm="aima"') -> Problem:
    """A 401 problem with its ``WWW-Authenticate`` challenge."""
    return Problem(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def not_found(what: str) -> Problem:
    """A 404 problem for a missing (or hidden) ``what``."""
    return Problem(404, "not-found", "Not Found", f"No such {what}.")


def access_dependency(action: Action) -> Callable[..., Access]:
    """The dependency that builds the `Access` for ``action`` (runs in the threadpool)."""

    def dependency(request: Request, token: Annotated[str | None, Depends(bearer)]) -> Access:
        return Gate.of(request).authorize(request, token, action)

    dependency.__name__ = f"access_{action.name.lower()}"
    return dependency


class RouteTable:
    """Routes declared at import time and added to each app by `install`, as the app's own routes.

    So every route matches with its full path, which the access log, metrics, spans and audit
    records show (FastAPI includes routers lazily: a route of an included router reports its path
    without the prefix).
    """

    def __init__(self, **defaults: Any) -> None:
        self._defaults = defaults
        self._routes: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        """Declare a route (the signature of `fastapi.APIRouter.add_api_route`)."""
        self._routes.append((path, endpoint, self._defaults | options))

    def install(self, app: FastAPI, prefix: str = "") -> None:
        """Add every declared route to ``app`` under ``prefix``."""
        for path, endpoint, options in self._routes:
            app.add_api_route(prefix + path, endpoint, **options)


def api_route(
    router: RouteTable | APIRouter | FastAPI, method: str, path: str, *, action: Action, **options: Any
) -> Callable[[F], F]:
    """Register the decorated endpoint for ``method path`` as ``action`` (on a `RouteTable`, a router or
    an app).

    A protected endpoint takes a parameter ``access: Access``; it is injected here, and the endpoint
    is wrapped so that its audit record is written (see module docstring). Problem responses the
    gateway may answer are declared in OpenAPI; ``responses`` adds the route's own.
    """

    def register(endpoint: F) -> F:
        handler = endpoint if action is Action.PUBLIC else _guarded(endpoint, action)
        setattr(handler, _ACTION_ATTR, action)
        responses = {**_gateway_problems(endpoint, method, path, action), **options.get("responses", {})}
        router.add_api_route(
            path,
            handler,
            methods=[method],
            dependencies=[Depends(refuse_unknown_query), *options.get("dependencies", ())],
            **{k: v for k, v in options.items() if k not in ("responses", "openapi_extra", "dependencies")},
            responses=responses,
            openapi_extra={**options.get("openapi_extra", {}), ACTION_KEY: action.value},
        )
        return endpoint

    return register


def refuse_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not declare: a misspelt filter is an error, not a
    silently ignored one."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    declared = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise Problem(
            422, "unknown-query-parameter", "Unknown query parameter", f"Not a parameter here: {names}."
        )


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


def _guarded(endpoint: F, action: Action) -> F:
    """``endpoint`` with its ``access`` injected and its audit record written after it returned.

    Endpoints are plain functions (the kernel is sync), except those that stream a body through to a
    function: they are coroutines and must not block (the record is written in the threadpool)."""
    signature = inspect.signature(endpoint)
    if "access" not in signature.parameters:
        raise TypeError(f"{endpoint.__name__} needs a parameter 'access: Access' for {action}")
    injected = Annotated[Access, Depends(access_dependency(action))]
    parameters = [
        p.replace(annotation=injected) if p.name == "access" else p for p in signature.parameters.values()
    ]

    handler: Callable[..., Any]
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def handler(*args: Any, **kwargs: Any) -> Any:
            access: Access = kwargs["access"]
            try:
                result = await endpoint(*args, **kwargs)
            except Exception as exc:
                await access.finish(_error_kind(exc))
                raise
            await access.finish()
            return result

    else:

        @functools.wraps(endpoint)
        async def handler(*args: Any, **kwargs: Any) -> Any:
            access: Access = kwargs["access"]
            try:
                result = await run_in_threadpool(endpoint, *args, **kwargs)
            except Exception as exc:
                await access.finish(_error_kind(exc))
                raise
            await access.finish()
            return result

    handler.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return handler  # type: ignore[return-value]


def _error_kind(exc: Exception) -> str:
    return exc.kind if isinstance(exc, Problem) else type(exc).__name__


async def audit_invalid_request(request: Request, exc: Exception) -> Response:
    """Exception handler for invalid parameters: an authorised request that never reached its endpoint
    still gets its one record (``failed``), then the 422 problem."""
    access = getattr(request.state, "access", None)
    if isinstance(access, Access):
        await access.finish("validation-failed")
    return await request_validation_problem(request, exc)


def _gateway_problems(
    endpoint: Callable[..., Any], method: str, path: str, action: Action
) -> dict[int | str, Any]:
    """The problem responses the gateway itself may answer for this route."""
    statuses: set[int] = set()
    if path not in PROBE_PATHS:
        statuses |= {429, 503}  # rate limits (503: the limiter fails closed while its cache is down)
    if action is not Action.PUBLIC:
        statuses.add(401)
        if action is not Action.AUTHENTICATED:
            statuses.add(403)
    if "{" in path:
        statuses.add(404)
    if method in ("POST", "PUT", "PATCH"):
        statuses |= {400, 413}  # a body that cannot be parsed, or is too large
    if set(inspect.signature(endpoint).parameters) - {"access", "request", "response"}:
        statuses.add(422)
    return problem_responses(*sorted(statuses))


def route_action(route: APIRoute) -> Action | None:
    """The action a route declares, or None if it declares none (or it was not registered by `api_route`)."""
    declared = (route.openapi_extra or {}).get(ACTION_KEY)
    marked = getattr(route.endpoint, _ACTION_ATTR, None)
    if not isinstance(marked, Action) or declared != marked.value:
        return None
    return marked


class UndeclaredRoute(RuntimeError):
    """A route of the app declares no action."""


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Every API route of ``app`` with its full path, included routers too (FastAPI includes them
    lazily, so ``app.routes`` lists the routers, not their routes)."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            found.append((context.path or route.path, route))
    return found


def assert_routes_declared(app: FastAPI) -> None:
    """Raise `UndeclaredRoute` naming every API route without an action (called at start-up)."""
    missing = [
        f"{','.join(sorted(route.methods or ()))} {path}"
        for path, route in api_routes(app)
        if route_action(route) is None
    ]
    if missing:
        raise UndeclaredRoute(
            f"routes without an action (register them with api_route): {', '.join(missing)}"
        )
