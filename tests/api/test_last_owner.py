"""Through the API a case keeps its owner: the only owner leaving or being demoted answers 409
``last-owner`` (for admins too), the refusal is audited as failed, and handing ownership over works."""

from __future__ import annotations

from tests.api.conftest import World
from tests.api.test_transport import problem


async def test_the_only_owner_cannot_leave_or_step_down_until_ownership_is_handed_over(world: World) -> None:
    owner, analyst = world.users["owner"], world.users["analyst"]
    members = f"/api/v1/cases/{world.case_id}/members"
    auth = world.headers("owner")

    for caller in ("owner", "admin"):
        left = await world.client.delete(f"{members}/{owner.id}", headers=world.headers(caller))
        body = problem(left, 409, "last-owner")
        assert "only owner" in body["detail"]
        assert "owner first" in body["detail"]
        demoted = await world.client.put(
            f"{members}/{owner.id}", headers=world.headers(caller), json={"role": "viewer"}
        )
        problem(demoted, 409, "last-owner")
    listed = await world.client.get(members, headers=auth)
    assert {m["user_id"]: m["role"] for m in listed.json()}[owner.id] == "owner"
    refused = world.services.audit.query(world.tenant, action="case.share", case_id=world.case_id)
    assert [r["outcome"] for r in refused] == ["failed"] * 4
    assert {r["detail"]["error"] for r in refused} == {"last-owner"}

    handed = await world.client.put(f"{members}/{analyst.id}", headers=auth, json={"role": "owner"})
    assert handed.status_code == 200, handed.text
    stepped_down = await world.client.put(f"{members}/{owner.id}", headers=auth, json={"role": "viewer"})
    assert stepped_down.status_code == 200, stepped_down.text
    assert (
        await world.client.delete(f"{members}/{owner.id}", headers=world.headers("analyst"))
    ).status_code == 204
    last = await world.client.delete(f"{members}/{analyst.id}", headers=world.headers("analyst"))
    problem(last, 409, "last-owner")
    assert world.services.audit.verify(world.tenant) == []


async def test_the_conflict_is_documented(world: World) -> None:
    spec = (await world.client.get("/api/v1/openapi.json")).json()
    member = spec["paths"]["/api/v1/cases/{case_id}/members/{user_id}"]
    for method in ("put", "delete"):
        assert "409" in member[method]["responses"]
