"""Every route called by every kind of caller, against one explicit table of expected statuses, on
SQLite with the in-process cache and on PostgreSQL with Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from aima.settings import Settings
from functions.api.problems import PROBLEM_JSON
from functions.api.security import api_routes
from tests.api.conftest import CALLERS, CALLS, World, api_settings

# columns: admin, owner, analyst, viewer, nonmember, guest_member, guest_nonmember, other_admin, anonymous
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "200 200 200 200 200 200 200 200 200",
    ("GET", "/readyz"): "200 200 200 200 200 200 200 200 200",
    ("GET", "/metrics"): "200 200 200 200 200 200 200 200 200",
    ("GET", "/.well-known/jwks.json"): "200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/auth/jwks.json"): "200 200 200 200 200 200 200 200 200",
    ("POST", "/api/v1/auth/token"): "200 200 200 200 200 200 200 200 200",
    ("POST", "/api/v1/auth/refresh"): "200 200 200 200 200 200 200 200 200",
    ("POST", "/api/v1/auth/logout"): "204 204 204 204 204 204 204 204 401",
    ("GET", "/api/v1/auth/providers"): "200 200 200 200 200 200 200 200 200",
    # no OIDC client is configured here: tests/web/test_oidc.py signs in through a real provider
    ("GET", "/api/v1/auth/oidc/login"): "404 404 404 404 404 404 404 404 404",
    ("GET", "/api/v1/auth/oidc/callback"): "404 404 404 404 404 404 404 404 404",
    ("POST", "/api/v1/auth/oidc/session"): "404 404 404 404 404 404 404 404 404",
    ("GET", "/api/v1/me"): "200 200 200 200 200 200 200 200 401",
    ("GET", "/api/v1/users"): "200 403 403 403 403 403 403 200 401",
    ("POST", "/api/v1/users"): "201 403 403 403 403 403 403 201 401",
    ("POST", "/api/v1/users/{user_id}/disable"): "204 403 403 403 403 403 403 404 401",
    ("POST", "/api/v1/users/{user_id}/service-token"): "200 403 403 403 403 403 403 404 401",
    ("GET", "/api/v1/cases"): "200 200 200 200 200 200 200 200 401",
    ("POST", "/api/v1/cases"): "201 201 201 201 201 403 403 201 401",
    ("GET", "/api/v1/cases/{case_id}"): "200 200 200 200 404 200 404 404 401",
    ("PATCH", "/api/v1/cases/{case_id}"): "200 200 200 403 404 403 404 404 401",
    ("DELETE", "/api/v1/cases/{case_id}"): "204 204 403 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/members"): "200 200 200 200 404 200 404 404 401",
    ("PUT", "/api/v1/cases/{case_id}/members/{user_id}"): "200 200 403 403 404 403 404 404 401",
    ("DELETE", "/api/v1/cases/{case_id}/members/{user_id}"): "204 204 403 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/media"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/export"): "200 200 200 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/media/{media_id}/transcript"): "200 200 200 200 404 200 404 404 401",
    (
        "GET",
        "/api/v1/cases/{case_id}/media/{media_id}/transcript/versions",
    ): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/media/{media_id}/transcript.vtt"): "200 200 200 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/media/{media_id}/transcript.srt"): "200 200 200 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/media/{media_id}/thumbnail"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/media/{media_id}/preview"): "200 200 200 200 404 200 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/media/{media_id}/playback"): "200 200 200 200 404 200 404 404 401",
    # the ticket (the viewer's, in the URL) is the credential: whoever holds the URL plays the file
    ("GET", "/api/v1/cases/{case_id}/media/{media_id}/content"): "200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/cases/{case_id}/media/{media_id}/frames"): "200 200 200 200 404 200 404 404 401",
    (
        "GET",
        "/api/v1/cases/{case_id}/media/{media_id}/frames/{frame_id}",
    ): "200 200 200 200 404 200 404 404 401",
    (
        "GET",
        "/api/v1/cases/{case_id}/media/{media_id}/crops/{frame_id}/{name}",
    ): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/speakers"): "200 200 200 200 404 200 404 404 401",
    ("PATCH", "/api/v1/cases/{case_id}/speakers/{speaker_id}"): "200 200 200 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/speakers/{speaker_id}/merge"): "200 200 200 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/speakers/{speaker_id}/split"): "201 201 201 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/persons"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/persons/unassigned"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/persons/{person_id}"): "200 200 200 200 404 200 404 404 401",
    ("PATCH", "/api/v1/cases/{case_id}/persons/{person_id}"): "200 200 200 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/persons/{person_id}/merge"): "200 200 200 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/persons/{person_id}/split"): "201 201 201 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/findings"): "200 200 200 200 404 200 404 404 401",
    ("PUT", "/api/v1/cases/{case_id}/findings/{finding_id}/review"): "200 200 200 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/reviews"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/reports"): "200 200 200 200 404 200 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/reports"): "202 202 202 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/reports/{version}"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/reports/{version}/export"): "200 200 200 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/search"): "200 200 200 200 404 200 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/jobs"): "201 201 201 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/jobs"): "200 200 200 200 404 200 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/jobs/estimate"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/jobs/{job_id}"): "200 200 200 200 404 200 404 404 401",
    ("DELETE", "/api/v1/cases/{case_id}/jobs/{job_id}"): "204 204 204 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/jobs/{job_id}/cancel"): "200 200 200 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/jobs/{job_id}/resume"): "200 200 200 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/jobs/{job_id}/approve"): "200 200 200 403 404 403 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/jobs/{job_id}/events"): "200 200 200 200 404 200 404 404 401",
    ("GET", "/api/v1/cases/{case_id}/jobs/{job_id}/files"): "200 200 200 200 404 200 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/media"): "201 201 201 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/media:bulk"): "201 201 201 403 404 403 404 404 401",
    ("POST", "/api/v1/cases/{case_id}/uploads"): "201 201 201 403 404 403 404 404 401",
    ("OPTIONS", "/api/v1/cases/{case_id}/uploads"): "204 204 204 403 404 403 404 404 401",
    ("HEAD", "/api/v1/cases/{case_id}/uploads/{upload_id}"): "200 200 200 403 404 403 404 404 401",
    ("PATCH", "/api/v1/cases/{case_id}/uploads/{upload_id}"): "204 204 204 403 404 403 404 404 401",
    ("DELETE", "/api/v1/cases/{case_id}/uploads/{upload_id}"): "204 204 204 403 404 403 404 404 401",
    ("GET", "/api/v1/audit"): "200 403 403 403 403 403 403 200 401",
    ("GET", "/api/v1/audit/export"): "200 403 403 403 403 403 403 200 401",
    ("GET", "/api/v1/audit/verify"): "200 403 403 403 403 403 403 200 401",
    ("GET", "/api/v1/config"): "200 200 200 200 200 403 403 200 401",
    ("GET", "/api/v1/config/{key}"): "200 200 200 200 200 403 403 200 401",
    ("PUT", "/api/v1/config/{key}"): "200 403 403 403 403 403 403 200 401",
    ("GET", "/api/v1/config/{key}/history"): "200 200 200 200 200 403 403 200 401",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return api_settings(tmp_path)
    return api_settings(
        tmp_path,
        database_url=request.getfixturevalue("private_pg_database"),
        cache_url=request.getfixturevalue("redis_url"),
    )


def test_the_table_covers_every_route_of_the_app(app: FastAPI) -> None:
    routes = {(method, path) for path, route in api_routes(app) for method in route.methods or ()}
    assert routes == set(EXPECTED)
    assert set(EXPECTED) == set(CALLS)


async def test_every_route_answers_every_caller_as_the_table_says(world: World) -> None:
    mismatches = []
    for route, row in EXPECTED.items():
        for caller, expected in zip(CALLERS, map(int, row.split()), strict=True):
            response = await world.call(caller, CALLS[route](world))
            if response.status_code != expected:
                mismatches.append(f"{route} as {caller}: {response.status_code} (expected {expected})")
            elif expected >= 400:
                assert response.headers["content-type"] == PROBLEM_JSON, (route, caller)
                if expected == 401:
                    assert response.headers["www-authenticate"].startswith("Bearer"), (route, caller)
    assert mismatches == []


async def test_lists_show_only_what_the_caller_may_see(world: World) -> None:
    visible = {}
    for caller in ("admin", "owner", "guest_member", "nonmember", "guest_nonmember", "other_admin"):
        response = await world.client.get("/api/v1/cases", headers=world.headers(caller))
        visible[caller] = {case["id"] for case in response.json()}
    assert {c for c, ids in visible.items() if world.case_id in ids} == {"admin", "owner", "guest_member"}
    other = await world.client.get("/api/v1/users", headers=world.headers("other_admin"))
    assert [u["username"] for u in other.json()] == [world.users["other_admin"].username]
