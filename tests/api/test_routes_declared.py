"""Every route declares its action (authorisation in one place); an undeclared route stops the app."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI

from aima.access.policy import Action
from functions.api.security import (
    ACTION_KEY,
    Access,
    UndeclaredRoute,
    api_route,
    api_routes,
    assert_routes_declared,
    route_action,
)

OAUTH2 = "OAuth2PasswordBearer"


def test_every_route_of_the_app_declares_its_action(app: FastAPI) -> None:
    routes = api_routes(app)
    assert len(routes) >= 30
    assert_routes_declared(app)
    operations = app.openapi()["paths"]
    for path, route in routes:
        action = route_action(route)
        assert action is not None, path
        for method in route.methods or ():
            operation = operations[path][method.lower()]
            assert operation[ACTION_KEY] == action.value
            secured = operation.get("security") == [{OAUTH2: []}]
            assert secured is (action is not Action.PUBLIC), (method, path)


def test_only_sign_in_refresh_keys_and_probes_are_public(app: FastAPI) -> None:
    public = {path for path, route in api_routes(app) if route_action(route) is Action.PUBLIC}
    assert public == {
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/jwks.json",
        "/api/v1/auth/jwks.json",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        # OIDC sign-in (docs/security.md): the redirect to the issuer, its callback, the hand-over
        "/api/v1/auth/providers",
        "/api/v1/auth/oidc/login",
        "/api/v1/auth/oidc/callback",
        "/api/v1/auth/oidc/session",
        # a media file's bytes for the player, authenticated by the playback ticket in its URL
        "/api/v1/cases/{case_id}/media/{media_id}/content",
    }


def test_a_route_added_without_an_action_stops_the_app(app: FastAPI) -> None:
    @app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(UndeclaredRoute, match=r"GET /api/v1/forgotten"):
        assert_routes_declared(app)


def test_an_included_router_is_checked_too(app: FastAPI) -> None:
    router = APIRouter()

    @api_route(router, "GET", "/declared", action=Action.CASE_LIST)
    def declared(access: Access) -> dict[str, str]:
        return {}

    @router.get("/undeclared")
    def undeclared() -> dict[str, str]:
        return {}

    app.include_router(router, prefix="/api/v1/extra")
    with pytest.raises(UndeclaredRoute) as raised:
        assert_routes_declared(app)
    assert "/api/v1/extra/undeclared" in str(raised.value)
    assert "/declared" not in str(raised.value)


def test_a_hand_written_marker_is_not_a_declaration() -> None:
    app = FastAPI()
    app.add_api_route("/sneaky", lambda: {}, openapi_extra={ACTION_KEY: "case.read"})
    with pytest.raises(UndeclaredRoute, match="/sneaky"):
        assert_routes_declared(app)


def test_protected_endpoints_must_take_the_access() -> None:
    router = APIRouter()
    with pytest.raises(TypeError, match="access"):

        @api_route(router, "GET", "/cases", action=Action.CASE_LIST)
        def no_access() -> None:
            return None
