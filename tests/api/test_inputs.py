"""What the gateway does with awkward input: it answers with a documented problem, never a 500."""

from __future__ import annotations

from tests.api.conftest import World


async def test_a_wrong_method_lists_every_method_of_the_path(world: World) -> None:
    response = await world.client.request(
        "POST", f"/api/v1/cases/{world.case_id}", headers=world.headers("owner")
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PATCH"


async def test_malformed_ids_name_nothing(world: World) -> None:
    for caller in ("admin", "owner"):
        response = await world.client.get("/api/v1/cases/%00", headers=world.headers(caller))
        assert response.status_code == 404, caller
    too_long = await world.client.delete(f"/api/v1/cases/{'x' * 37}", headers=world.headers("admin"))
    assert too_long.status_code == 404


async def test_values_postgresql_cannot_store_are_refused(world: World) -> None:
    admin = world.headers("admin")
    config = await world.client.put(
        "/api/v1/config/phrases", headers=admin, json={"distress": {"en": ["a\x00b"]}}
    )
    assert (config.status_code, config.json()["type"]) == (422, "urn:aima:problem:invalid-config")
    case = await world.client.post("/api/v1/cases", headers=admin, json={"name": "a\x00b"})
    assert case.status_code == 422
    audit = await world.client.get("/api/v1/audit", headers=admin, params={"actor": "a\x00b"})
    assert audit.status_code == 422
    login = await world.client.post("/api/v1/auth/token", data={"username": "a\x00b", "password": "whatever"})
    assert login.status_code == 401


async def test_times_are_iso_8601_with_an_offset(world: World) -> None:
    admin = world.headers("admin")
    for bad in ("0.5", "1700000000", "2026-01-01T00:00:00"):
        response = await world.client.get("/api/v1/audit", headers=admin, params={"since": bad})
        assert response.status_code == 422, bad
    good = await world.client.get(
        "/api/v1/audit", headers=admin, params={"since": "2026-01-01T00:00:00+00:00"}
    )
    assert good.status_code == 200


async def test_config_values_are_validated_naming_the_field(world: World) -> None:
    response = await world.client.put(
        "/api/v1/config/thresholds", headers=world.headers("admin"), json={"face_match": 7}
    )
    body = response.json()
    assert (response.status_code, body["fields"]) == (422, ["thresholds.face_match"])
    unknown = await world.client.put("/api/v1/config/nonsense", headers=world.headers("admin"), json={})
    assert unknown.status_code == 404


async def test_user_bodies_follow_the_kernel_rules(world: World) -> None:
    admin = world.headers("admin")
    for body in (
        {"username": " padded", "password": "long enough password"},
        {"username": "short-password", "password": "short"},
        {"username": "svc-with-password", "kind": "service", "password": "long enough password"},
        {"username": "human-without-password"},
    ):
        response = await world.client.post("/api/v1/users", headers=admin, json=body)
        assert response.status_code == 422, body
    taken = await world.client.post(
        "/api/v1/users", headers=admin, json={"username": world.users["viewer"].username, "kind": "service"}
    )
    assert taken.status_code == 409
    created = await world.client.post(
        "/api/v1/users", headers=admin, json={"username": "new-analyst", "password": "long enough password"}
    )
    assert (created.status_code, created.json()["role"], created.json()["kind"]) == (201, "user", "human")


async def test_guests_can_only_be_viewers_and_strangers_not_members(world: World) -> None:
    owner = world.headers("owner")
    guest = world.users["guest_nonmember"].id
    members = f"/api/v1/cases/{world.case_id}/members"
    assert (
        await world.client.put(f"{members}/{guest}", headers=owner, json={"role": "analyst"})
    ).status_code == 422
    assert (
        await world.client.put(f"{members}/{guest}", headers=owner, json={"role": "viewer"})
    ).status_code == 200
    stranger = world.users["other_admin"].id  # a user of another tenant
    assert (
        await world.client.put(f"{members}/{stranger}", headers=owner, json={"role": "viewer"})
    ).status_code == 404


async def test_an_unknown_query_parameter_is_refused_and_declared_ones_pass(world: World) -> None:
    owner = world.headers("owner")
    misspelt = await world.client.get(
        f"/api/v1/cases/{world.case_id}/search", headers=owner, params={"q": "film", "lmit": "3"}
    )
    assert misspelt.status_code == 422
    assert misspelt.json()["type"] == "urn:aima:problem:unknown-query-parameter"
    assert "'lmit'" in misspelt.json()["detail"]
    audit = await world.client.get("/api/v1/audit", headers=world.headers("admin"), params={"limit": "5"})
    assert audit.status_code == 200
