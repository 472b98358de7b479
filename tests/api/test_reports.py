"""The report routes on the real gateway and real stores (reports stored by hand as fuse stores them, no
analysis): who may read, export and ask for a version, one audit record per call, every export format
with its type and file name, unknown versions and formats, and a request announced through the outbox."""

from __future__ import annotations

import csv
import io
import json

from aima.access.scope import Scope
from aima.reports.model import CaseReport
from aima.storage.outbox import Outbox
from events.bus import Subscription
from events.catalogue import ReportRequested
from events.envelope import CloudEvent
from tests.api.conftest import World
from tests.api.report_seed import store_report
from tests.support import CORRECTING_ROLES, add_media, eventually, last_seq, records_since

PROBLEM = "application/problem+json"


def reports_path(world: World, case_id: str | None = None) -> str:
    return f"/api/v1/cases/{case_id or world.case_id}/reports"


def stored(world: World, case_id: str | None = None) -> CaseReport:
    return store_report(world.services.stores.documents, world.tenant, case_id or world.case_id)


def with_a_file(world: World) -> None:
    """A media file in the shared case: something to report on."""
    scope = Scope.for_case(world.tenant, world.case_id, "test")
    objects = world.services.stores.objects
    media = world.services.media
    add_media(objects, media, scope, world.case_id, b"jpeg", content_type="image/jpeg", filename="a.jpg")  # type: ignore[arg-type]


def requested(world: World) -> list[CloudEvent]:
    pending = Outbox(world.services.stores.db).pending()
    return [p.event for p in pending if p.event.type == ReportRequested.TYPE]


async def test_members_read_analysts_and_owners_export_and_ask(world: World) -> None:
    stored(world)
    with_a_file(world)
    for caller, (read, change) in CORRECTING_ROLES.items():
        headers = world.headers(caller)
        reads = [
            await world.client.get(reports_path(world), headers=headers),
            await world.client.get(f"{reports_path(world)}/1", headers=headers),
            await world.client.get(f"{reports_path(world)}/latest", headers=headers),
        ]
        exported = await world.client.get(
            f"{reports_path(world)}/1/export", headers=headers, params={"format": "csv-indicators"}
        )
        asked = await world.client.post(reports_path(world), headers=headers)
        assert [r.status_code for r in reads] == [read] * 3, caller
        assert exported.status_code == change, (caller, exported.text)
        assert asked.status_code == (202 if change == 200 else change), (caller, asked.text)
        for answer in [*reads, exported, asked]:
            if answer.status_code >= 400:
                assert answer.headers["content-type"].startswith(PROBLEM), caller
    asked_by = {e.data["requested_by"] for e in requested(world) if e.data}
    assert asked_by == {world.users[c].id for c in ("admin", "owner", "analyst")}


async def test_versions_and_reads_with_their_audit(world: World) -> None:
    first, second = stored(world), stored(world)
    viewer = world.headers("viewer")
    before = last_seq(world)

    listed = await world.client.get(reports_path(world), headers=viewer)
    assert listed.status_code == 200, listed.text
    assert listed.json()["reports"] == [
        {
            "version": report.version,
            "report_id": report.report_id,
            "created_at": report.created_at.isoformat().replace("+00:00", "Z"),
            "job_id": "job-1",
            "files": 1,
            "persons": 1,
            "indicators": 1,
            "gaps": 1,
            "partial": report.version == 1,
        }
        for report in (first, second)
    ]
    one = await world.client.get(f"{reports_path(world)}/1", headers=viewer)
    assert one.status_code == 200
    assert CaseReport.model_validate(one.json()) == first
    latest = await world.client.get(f"{reports_path(world)}/latest", headers=viewer)
    assert CaseReport.model_validate(latest.json()) == second

    records = records_since(world, before)
    assert [(r["action"], r["object"], r["outcome"], r["actor"]) for r in records] == [
        ("case.read", f"case/{world.case_id}/reports", "allowed", world.users["viewer"].id),
        ("case.read", f"case/{world.case_id}/report/v1", "allowed", world.users["viewer"].id),
        ("case.read", f"case/{world.case_id}/report/v2", "allowed", world.users["viewer"].id),
    ]
    assert records[0]["detail"]["versions"] == 2
    assert [r["detail"]["version"] for r in records[1:]] == [1, 2]
    assert {r["case_id"] for r in records} == {world.case_id}

    empty = world.new_case("Empty")
    none = await world.client.get(reports_path(world, empty), headers=viewer)
    assert none.json() == {"reports": []}


async def test_every_export_format_with_its_type_name_and_audit(world: World) -> None:
    report = stored(world)
    analyst = world.headers("analyst")
    stem = f"Harbour_fire-report-v{report.version}"
    expected = {
        "json": ("application/json", f"{stem}.json"),
        "csv-timeline": ("text/csv; charset=utf-8; header=present", f"{stem}-timeline.csv"),
        "csv-indicators": ("text/csv; charset=utf-8; header=present", f"{stem}-indicators.csv"),
        "csv-persons": ("text/csv; charset=utf-8; header=present", f"{stem}-persons.csv"),
        "html": ("text/html; charset=utf-8", f"{stem}.html"),
        "pdf": ("application/pdf", f"{stem}.pdf"),
    }
    before = last_seq(world)
    bodies = {}
    for fmt, (media_type, filename) in expected.items():
        answer = await world.client.get(
            f"{reports_path(world)}/{report.version}/export", headers=analyst, params={"format": fmt}
        )
        assert answer.status_code == 200, (fmt, answer.text)
        assert answer.headers["content-type"] == media_type, fmt
        assert answer.headers["content-disposition"] == f'attachment; filename="{filename}"', fmt
        bodies[fmt] = answer.content

    assert CaseReport.model_validate(json.loads(bodies["json"])) == report
    [indicator] = list(csv.DictReader(io.StringIO(bodies["csv-indicators"].decode())))
    assert "hands behind the back" in indicator.values()
    assert len(list(csv.reader(io.StringIO(bodies["csv-timeline"].decode())))) == 2  # a header and T1
    assert b"Harbour fire" in bodies["html"]
    assert bodies["pdf"].startswith(b"%PDF")

    records = records_since(world, before)
    assert [(r["action"], r["object"], r["outcome"]) for r in records] == [
        ("case.export", f"case/{world.case_id}/report/v1", "allowed")
    ] * len(expected)
    assert [r["detail"]["format"] for r in records] == list(expected)
    assert {r["detail"]["version"] for r in records} == {1}


async def test_unknown_versions_and_formats(world: World) -> None:
    stored(world)
    owner = world.headers("owner")
    empty = world.new_case("Empty")
    before = last_seq(world)
    missing = [
        await world.client.get(f"{reports_path(world)}/7", headers=owner),
        await world.client.get(f"{reports_path(world, empty)}/latest", headers=owner),
        await world.client.get(f"{reports_path(world)}/7/export", headers=owner, params={"format": "html"}),
    ]
    for answer in missing:
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
    assert [a.json()["detail"] for a in missing] == [
        "No such report version.",
        "No such report.",
        "No such report version.",
    ]
    invalid = [
        await world.client.get(f"{reports_path(world)}/1/export", headers=owner, params={"format": "docx"}),
        await world.client.get(f"{reports_path(world)}/1/export", headers=owner),
        await world.client.get(f"{reports_path(world)}/0", headers=owner),
        await world.client.get(f"{reports_path(world)}/newest", headers=owner),
    ]
    for answer in invalid:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
    records = records_since(world, before)
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("case.read", "failed"),
        ("case.read", "failed"),
        ("case.export", "failed"),
        ("case.export", "failed"),
        ("case.export", "failed"),
        ("case.read", "failed"),
        ("case.read", "failed"),
    ]
    assert [r["detail"]["error"] for r in records] == ["not-found"] * 3 + ["validation-failed"] * 4


async def test_asking_for_a_version_is_audited_and_announced_through_the_outbox(world: World) -> None:
    stored(world)
    with_a_file(world)
    services = world.services
    viewer_before = last_seq(world)
    refused = await world.client.post(reports_path(world), headers=world.headers("viewer"))
    assert refused.status_code == 403
    assert [(r["action"], r["outcome"]) for r in records_since(world, viewer_before)] == [
        ("case.update", "denied")
    ]
    assert requested(world) == []

    before = last_seq(world)
    asked = await world.client.post(reports_path(world), headers=world.headers("analyst"))
    assert asked.status_code == 202, asked.text
    body = asked.json()
    assert asked.headers["location"] == reports_path(world) == body["location"]
    analyst = world.users["analyst"].id
    assert (body["status"], body["case_id"], body["requested_by"], body["after_version"]) == (
        "requested",
        world.case_id,
        analyst,
        1,
    )
    [event] = requested(world)
    assert event.id == body["event_id"]
    assert (event.tenantid, event.caseid, event.subject) == (
        world.tenant,
        world.case_id,
        f"case/{world.case_id}",
    )
    assert ReportRequested.model_validate(event.data) == ReportRequested(
        tenant_id=world.tenant, case_id=world.case_id, requested_by=analyst
    )
    [record] = records_since(world, before)
    assert (record["action"], record["object"], record["outcome"], record["actor"]) == (
        "case.update",
        f"case/{world.case_id}/reports",
        "allowed",
        analyst,
    )
    assert record["detail"]["event_id"] == event.id
    assert record["detail"]["after_version"] == 1

    # the relay publishes it on the bus, where the fuse function listens
    heard: list[CloudEvent] = []

    async def listen(received: CloudEvent) -> list[CloudEvent]:
        heard.append(received)
        return []

    await services.bus.start()
    await services.bus.subscribe(Subscription("fuse-stand-in", (ReportRequested.TYPE,), listen))
    await services.relay.flush()
    await eventually(lambda: bool(heard))
    assert [e.id for e in heard] == [event.id]
    assert requested(world) == []


async def test_a_case_without_files_has_nothing_to_report_on(world: World) -> None:
    before = last_seq(world)
    refused = await world.client.post(reports_path(world), headers=world.headers("owner"))
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["type"].endswith("no-media")
    [record] = records_since(world, before)
    assert (record["action"], record["outcome"], record["detail"]["error"]) == (
        "case.update",
        "failed",
        "no-media",
    )
    assert requested(world) == []
