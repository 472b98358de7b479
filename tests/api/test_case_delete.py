"""Deleting a case through the API removes every trace of it from every store (objects, vectors,
documents, cache, rows), leaves other cases alone, keeps its audit records and announces it."""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from aima.access.scope import Scope
from aima.settings import Settings
from aima.storage.factory import case_cache_prefix, case_object_prefix
from aima.storage.findings import FINDINGS
from aima.storage.schema import audit_log, case_members, cases, media
from aima.storage.speakers import CASE_SPEAKERS, FILE_SPEAKERS, NUMBERS, PINS
from aima.storage.transcripts import CHUNKS, TRANSCRIPTS
from aima.storage.vectors import COLLECTIONS, VectorRecord
from events.bus import Subscription
from events.envelope import CloudEvent
from tests.api.conftest import World, api_settings

RNG = random.Random(7)
COLLECTIONS_OF_DOCUMENTS = (
    TRANSCRIPTS,
    CHUNKS,
    FINDINGS,
    CASE_SPEAKERS,
    NUMBERS,
    FILE_SPEAKERS,
    PINS,
    "probes",
)
"""Every collection the analysis steps write: transcripts and their checkpoints, findings, speakers."""


@pytest.fixture(params=["memory", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The in-process cache, and Redis (whose prefix deletion scans keys)."""
    if request.param == "memory":
        return api_settings(tmp_path)
    return api_settings(tmp_path, cache_url=request.getfixturevalue("redis_url"))


def unit(dim: int) -> list[float]:
    values = [RNG.gauss(0, 1) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def fill(world: World, case_id: str) -> None:
    """A media row, an object, vectors in every collection, documents and a cache entry for the case."""
    stores = world.services.stores
    content = f"evidence of {case_id}".encode()
    media_id = str(uuid.uuid4())
    key = f"{case_object_prefix(case_id)}media/{media_id}/original.bin"
    stores.objects.put(key, [content], content_type="application/octet-stream")
    stores.objects.put(f"{case_object_prefix(case_id)}media/{media_id}/thumb.jpg", [b"jpeg"])
    world.services.media.add(
        Scope.for_case(world.tenant, case_id, "test"),
        case_id=case_id,
        media_id=media_id,
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        content_type="application/octet-stream",
        kind="video",
        filename="clip.mp4",
        object_key=key,
    )
    for collection, dim in COLLECTIONS.items():
        stores.vectors.upsert(
            collection,
            [
                VectorRecord(uuid.uuid4().hex, world.tenant, case_id, media_id, unit(dim), "ref")
                for _ in range(2)
            ],
        )
    for collection in COLLECTIONS_OF_DOCUMENTS:
        stores.documents.insert_one(
            collection, {"tenant_id": world.tenant, "case_id": case_id, "text": "..."}
        )
    stores.cache.set(f"{case_cache_prefix(case_id)}summary", b"cached")


def traces(world: World, case_id: str) -> dict[str, Any]:
    """What every store still holds of the case."""
    stores = world.services.stores
    with stores.db.engine.connect() as c:
        rows = {
            table.name: c.execute(
                select(func.count()).select_from(table).where(column == case_id)
            ).scalar_one()
            for table, column in (
                (cases, cases.c.id),
                (media, media.c.case_id),
                (case_members, case_members.c.case_id),
            )
        }
    return {
        "objects": [info.key for info in stores.objects.list(case_object_prefix(case_id))],
        "vectors": {name: stores.vectors.count(name, case_id=case_id) for name in COLLECTIONS},
        "documents": {
            name: stores.documents.count(name, {"case_id": case_id}) for name in COLLECTIONS_OF_DOCUMENTS
        },
        "cache": stores.cache.get(f"{case_cache_prefix(case_id)}summary"),
        "rows": rows,
    }


NOTHING: dict[str, Any] = {
    "objects": [],
    "vectors": dict.fromkeys(COLLECTIONS, 0),
    "documents": dict.fromkeys(COLLECTIONS_OF_DOCUMENTS, 0),
    "cache": None,
    "rows": {"cases": 0, "media": 0, "case_members": 0},
}


async def test_deleting_a_case_removes_it_from_every_store(world: World) -> None:
    created = await world.client.post(
        "/api/v1/cases", headers=world.headers("owner"), json={"name": "Doomed"}
    )
    assert created.status_code == 201
    doomed, kept = created.json()["id"], world.case_id
    for case_id in (doomed, kept):
        fill(world, case_id)
    assert (
        await world.client.get(f"/api/v1/cases/{doomed}", headers=world.headers("owner"))
    ).status_code == 200
    before = traces(world, kept)
    assert traces(world, doomed) != NOTHING
    events: list[CloudEvent] = []

    async def collect(event: CloudEvent) -> list[CloudEvent]:
        events.append(event)
        return []

    await world.services.bus.subscribe(Subscription("test", ("io.aima.case.*",), collect))

    response = await world.client.delete(f"/api/v1/cases/{doomed}", headers=world.headers("owner"))
    assert response.status_code == 204, response.text

    assert traces(world, doomed) == NOTHING
    assert traces(world, kept) == before  # another case is untouched
    assert (
        await world.client.get(f"/api/v1/cases/{doomed}", headers=world.headers("owner"))
    ).status_code == 404
    assert (
        await world.client.delete(f"/api/v1/cases/{doomed}", headers=world.headers("admin"))
    ).status_code == 404

    with world.services.stores.db.engine.connect() as c:
        kept_records = c.execute(
            select(audit_log.c.action, audit_log.c.outcome, audit_log.c.detail)
            .where(audit_log.c.case_id == doomed)
            .order_by(audit_log.c.seq)
        ).all()
    assert [(action, outcome) for action, outcome, _ in kept_records] == [
        ("case.create", "allowed"),
        ("case.read", "allowed"),
        ("case.delete", "allowed"),
        ("case.read", "denied"),  # the owner is no member of a case that is gone
        ("case.delete", "failed"),  # the admin found nothing to delete
    ]
    purged = {
        "objects": 2,
        "vectors": 2 * len(COLLECTIONS),
        "documents": len(COLLECTIONS_OF_DOCUMENTS),
        "cache": 1,
    }
    assert kept_records[2][2]["purged"] == purged
    assert world.services.audit.verify(world.tenant) == []

    await world.services.relay.flush()  # the app's lifespan runs the relay; these tests call routes directly
    await world.services.bus.drain()  # type: ignore[attr-defined]
    deleted = [(e.type, e.caseid, e.tenantid) for e in events if e.type == "io.aima.case.deleted.v1"]
    assert deleted == [("io.aima.case.deleted.v1", doomed, world.tenant)]
    assert ("io.aima.case.created.v1", doomed, world.tenant) in [
        (e.type, e.caseid, e.tenantid) for e in events
    ]


async def test_only_the_owner_or_an_admin_deletes_and_nothing_is_purged_otherwise(world: World) -> None:
    fill(world, world.case_id)
    before = traces(world, world.case_id)
    for caller, status in (("analyst", 403), ("viewer", 403), ("nonmember", 404), ("other_admin", 404)):
        response = await world.client.delete(f"/api/v1/cases/{world.case_id}", headers=world.headers(caller))
        assert response.status_code == status, caller
    assert traces(world, world.case_id) == before
    admin = await world.client.delete(f"/api/v1/cases/{world.case_id}", headers=world.headers("admin"))
    assert admin.status_code == 204
    assert traces(world, world.case_id) == NOTHING
