"""Sign-in, token refresh and logout, the signing keys (JWKS) and the caller's own profile.

Login and refresh are public but audited (``auth.login``, ``auth.refresh``); a refused attempt is
recorded with actor ``anonymous`` in the tenant of the named user when there is one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from aima.access.policy import Action
from aima.identity.errors import AuthenticationFailed, InvalidToken
from aima.identity.model import Principal
from aima.identity.passwords import MAX_LENGTH
from aima.identity.users import MAX_USERNAME
from functions.api.problems import problem_responses
from functions.api.schemas import Jwks, LogoutRequest, Me, RefreshRequest, TokenPair
from functions.api.security import (
    ANONYMOUS,
    ANONYMOUS_TENANT,
    Access,
    Gate,
    RequestInfo,
    RouteTable,
    api_route,
    unauthorized,
)

LOGIN, REFRESH, LOGOUT = "auth.login", "auth.refresh", "auth.logout"
INVALID_TOKEN = 'Bearer error="invalid_token"'  # noqa: S105 - a challenge, not a secret
JWKS_CACHE = "public, max-age=60"

router = RouteTable(tags=["auth"])
well_known = RouteTable(tags=["auth"])


class PasswordGrant(OAuth2PasswordRequestForm):
    """The OAuth2 password grant's form (what the docs' Authorize dialog sends); the schema says that
    username and password cannot be empty, as validation does."""

    def __init__(
        self,
        *,
        username: Annotated[str, Form(min_length=1, max_length=MAX_USERNAME)],
        password: Annotated[
            str, Form(min_length=1, max_length=MAX_LENGTH, json_schema_extra={"format": "password"})
        ],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form()] = "",
    ) -> None:
        super().__init__(grant_type=grant_type, username=username, password=password, scope=scope)


@api_route(router, "POST", "/auth/token", action=Action.PUBLIC, responses=problem_responses(401))
def login(form: Annotated[PasswordGrant, Depends()], request: Request) -> TokenPair:
    """Exchange a username and password (OAuth2 password grant) for an access and a refresh token."""
    gate = Gate.of(request)
    directory = gate.services.directory
    info = RequestInfo.of(request)
    try:
        if "\x00" in form.username:  # no such user can exist (and PostgreSQL cannot compare it)
            raise AuthenticationFailed()
        principal = directory.authenticate(form.username, form.password)
    except AuthenticationFailed:
        known = None if "\x00" in form.username else directory.by_username(form.username)
        gate.record(
            info,
            tenant_id=known.tenant_id if known else ANONYMOUS_TENANT,
            actor=ANONYMOUS,
            action=LOGIN,
            outcome="denied",
            object=f"user/{known.id}" if known else None,
            detail={"reason": "invalid username or password"},
        )
        raise unauthorized("Invalid username or password.") from None
    request.state.user_id = principal.user_id
    tokens = gate.services.tokens
    pair = TokenPair(
        access_token=tokens.issue_access(principal),
        refresh_token=tokens.issue_refresh(principal),
        expires_in=gate.services.settings.access_token_ttl,
    )
    _record_success(gate, info, principal, LOGIN)
    return pair


@api_route(router, "POST", "/auth/refresh", action=Action.PUBLIC, responses=problem_responses(401))
def refresh(body: RefreshRequest, request: Request) -> TokenPair:
    """Use a refresh token once: a new access token and the next refresh token. Presenting a used
    refresh token again revokes its whole family (every session descended from the same login)."""
    gate = Gate.of(request)
    info = RequestInfo.of(request)
    try:
        access_token, refresh_token, principal = gate.services.tokens.refresh(body.refresh_token)
    except InvalidToken as exc:
        gate.record(
            info,
            tenant_id=ANONYMOUS_TENANT,
            actor=ANONYMOUS,
            action=REFRESH,
            outcome="denied",
            detail={"reason": exc.reason},
        )
        raise unauthorized(f"Refresh refused: {exc.reason}.", INVALID_TOKEN) from None
    request.state.user_id = principal.user_id
    _record_success(gate, info, principal, REFRESH)
    return TokenPair(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=gate.services.settings.access_token_ttl,
    )


@api_route(router, "POST", "/auth/logout", action=Action.AUTHENTICATED, status_code=204)
def logout(access: Access, body: LogoutRequest | None = None) -> Response:
    """End the session of ``refresh_token`` (its whole family), or every session of the caller.

    Access tokens already issued stay valid until they expire (at most the access token lifetime).
    """
    tokens = access.services.tokens
    if body is not None and body.refresh_token is not None:
        tokens.logout(body.refresh_token)
    else:
        tokens.revoke_user(access.subject.user_id)
    ended = "session" if body is not None and body.refresh_token is not None else "all sessions"
    access.audit(action=LOGOUT, object=f"user/{access.subject.user_id}", detail={"ended": ended})
    return Response(status_code=204)


@api_route(well_known, "GET", "/.well-known/jwks.json", action=Action.PUBLIC)
@api_route(router, "GET", "/auth/jwks.json", action=Action.PUBLIC)
def jwks(request: Request, response: Response) -> Jwks:
    """The public keys that verify AIMA's access tokens (every key that still verifies, newest first)."""
    response.headers["Cache-Control"] = JWKS_CACHE
    return Jwks.model_validate(Gate.of(request).services.keyring.jwks())


@api_route(router, "GET", "/me", action=Action.AUTHENTICATED)
def me(access: Access) -> Me:
    """Who the token belongs to."""
    principal = access.principal
    return Me(
        user_id=principal.user_id,
        tenant_id=principal.tenant_id,
        username=principal.username,
        role=principal.role.value,
        kind=principal.kind,
        auth=principal.auth,
    )


def _record_success(gate: Gate, info: RequestInfo, principal: Principal, action: str) -> None:
    gate.record(
        info,
        tenant_id=principal.tenant_id,
        actor=principal.user_id,
        action=action,
        outcome="allowed",
        object=f"user/{principal.user_id}",
    )
