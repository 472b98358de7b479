"""OIDC sign-in for the review workspace (docs/security.md, *OIDC sign-in*): which sign-ins there
are, the redirect to the issuer, its callback, and the hand-over of AIMA's session to the page.

The gateway runs the authorization code flow with PKCE itself (`aima.identity.oidc_signin`), so the
workspace's pages talk to no other origin and its CSP stays same-origin. The pending sign-in lives in
an HttpOnly cookie scoped to these routes; after the callback, the new session's refresh token waits
in another HttpOnly cookie (SameSite=Strict, one minute) until the page takes it with
``POST /auth/oidc/session``, which rotates it, so the token that crossed the redirect is spent.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Cookie, Query, Request, Response
from fastapi.responses import RedirectResponse

from aima.access.policy import Action
from aima.identity.errors import InvalidToken
from aima.identity.oidc_signin import PENDING_TTL_S, OidcSignIn, SignInFailed
from functions.api.problems import Problem, problem_responses
from functions.api.schemas import SignInOptions, SignInProvider, TokenPair
from functions.api.security import ANONYMOUS, ANONYMOUS_TENANT, Gate, RequestInfo, RouteTable, api_route

LOGIN = "auth.login"
BASE = "/api/v1/auth/oidc"
PENDING_COOKIE = "aima_oidc_pending"
SESSION_COOKIE = "aima_oidc_session"
SESSION_TTL_S = 60
MAX_PARAM = 4096

router = RouteTable(tags=["auth"])


@api_route(router, "GET", "/auth/providers", action=Action.PUBLIC)
def providers(request: Request) -> SignInOptions:
    """The sign-ins this gateway offers: password, and OIDC where ``AIMA_OIDC_CLIENT_ID`` is set."""
    signin = Gate.of(request).services.signin
    if signin is None:
        return SignInOptions()
    return SignInOptions(oidc=SignInProvider(name=signin.display_name, login_url=f"{BASE}/login"))


@api_route(
    router, "GET", "/auth/oidc/login", action=Action.PUBLIC, status_code=302, responses=problem_responses(404)
)
def oidc_login(
    request: Request, return_to: Annotated[str | None, Query(max_length=2000)] = None
) -> RedirectResponse:
    """Start a sign-in at the issuer: a redirect there, with the pending sign-in kept in a cookie.
    ``return_to`` is the workspace path to open afterwards."""
    signin = _signin(request)
    try:
        url, sealed = signin.begin(_redirect_uri(request), return_to)
    except SignInFailed as exc:
        return _back_to_login(exc.reason)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        PENDING_COOKIE,
        sealed,
        max_age=PENDING_TTL_S,
        path=BASE,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@api_route(
    router,
    "GET",
    "/auth/oidc/callback",
    action=Action.PUBLIC,
    status_code=303,
    responses=problem_responses(404),
)
def oidc_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=MAX_PARAM)] = None,
    state: Annotated[str | None, Query(max_length=MAX_PARAM)] = None,
    error: Annotated[str | None, Query(max_length=MAX_PARAM)] = None,
    error_description: Annotated[str | None, Query(max_length=MAX_PARAM)] = None,
    error_uri: Annotated[str | None, Query(max_length=MAX_PARAM)] = None,
    iss: Annotated[str | None, Query(max_length=MAX_PARAM)] = None,
    session_state: Annotated[str | None, Query(max_length=MAX_PARAM)] = None,
    pending: Annotated[str | None, Cookie(alias=PENDING_COOKIE)] = None,
) -> RedirectResponse:
    """Where the issuer sends the browser back: the code is exchanged, the issuer's tokens checked,
    and AIMA's session handed to the workspace (a redirect to ``/signed-in``); any failure goes back
    to the sign-in page with the reason, and is audited."""
    del error_uri, session_state  # declared so that issuers that send them are not refused
    signin = _signin(request)
    gate, info = Gate.of(request), RequestInfo.of(request)
    try:
        if error is not None:
            raise SignInFailed(
                f"the issuer answered {error}" + (f": {error_description}" if error_description else "")
            )
        if iss is not None and iss != signin.issuer.issuer:
            raise SignInFailed("the answer comes from another issuer")
        principal, sealed = signin.finish(pending, state, code)
    except SignInFailed as exc:
        gate.record(
            info,
            tenant_id=ANONYMOUS_TENANT,
            actor=ANONYMOUS,
            action=LOGIN,
            outcome="denied",
            detail={"method": "oidc", "reason": exc.reason},
        )
        response = _back_to_login(exc.reason)
        response.delete_cookie(PENDING_COOKIE, path=BASE)
        return response
    request.state.user_id = principal.user_id
    refresh_token = gate.services.tokens.issue_refresh(principal)
    gate.record(
        info,
        tenant_id=principal.tenant_id,
        actor=principal.user_id,
        action=LOGIN,
        outcome="allowed",
        object=f"user/{principal.user_id}",
        detail={"method": "oidc", "issuer": signin.issuer.issuer},
    )
    response = RedirectResponse(f"/signed-in?{urlencode({'return_to': sealed.return_to})}", status_code=303)
    response.delete_cookie(PENDING_COOKIE, path=BASE)
    response.set_cookie(
        SESSION_COOKIE,
        refresh_token,
        max_age=SESSION_TTL_S,
        path=f"{BASE}/session",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@api_route(router, "POST", "/auth/oidc/session", action=Action.PUBLIC, responses=problem_responses(401, 404))
def oidc_session(
    request: Request, response: Response, session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None
) -> TokenPair:
    """The session a sign-in just made, for the page that the callback opened: the refresh token
    waiting in the cookie is rotated (so it is spent) and the new pair returned; the cookie goes."""
    _signin(request)
    response.delete_cookie(SESSION_COOKIE, path=f"{BASE}/session")
    if not session:
        raise Problem(401, "unauthorized", "Unauthorized", "No sign-in is waiting to be taken over.")
    gate = Gate.of(request)
    try:
        access_token, refresh_token, principal = gate.services.tokens.refresh(session)
    except InvalidToken as exc:
        raise Problem(401, "unauthorized", "Unauthorized", f"Sign-in refused: {exc.reason}.") from None
    request.state.user_id = principal.user_id
    return TokenPair(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=gate.services.settings.access_token_ttl,
    )


def _signin(request: Request) -> OidcSignIn:
    signin = Gate.of(request).services.signin
    if signin is None:
        raise Problem(404, "not-found", "Not Found", "OIDC sign-in is not configured (AIMA_OIDC_CLIENT_ID).")
    return signin


def _redirect_uri(request: Request) -> str:
    configured = Gate.of(request).services.settings.oidc_redirect_url
    return configured or f"{str(request.base_url).rstrip('/')}{BASE}/callback"


def _back_to_login(reason: str) -> RedirectResponse:
    return RedirectResponse(f"/login?sso_error={quote(reason[:300])}", status_code=303)
