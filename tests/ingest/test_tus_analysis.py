"""A tus upload says when its file is analysed: the ``Upload-Metadata`` key ``analysis`` is ``now`` (the
default: ``media.uploaded`` at once) or ``job`` (stored and audited, nothing announced, until a job
submitted for the stored file starts it). Through the gateway, so the metadata is seen to pass it,
with a real ingest app behind it and the scheduler's core starting the job."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from aima.access.scope import Scope
from aima.domain import JobPhase
from aima.storage.job_queue import JobQueue
from aima.storage.job_steps import JobSteps
from aima.storage.jobs import JobRepository
from aima.storage.media import MediaRepository
from aima.storage.relational import Database
from aima.storage.schema import outbox
from events.catalogue import MediaUploaded
from events.envelope import CloudEvent
from functions.api.app import create_app
from functions.api.services import ApiServices
from functions.ingest.spec import app as ingest_app
from functions.runtime.deps import Deps
from functions.scheduler.core import SchedulerCore
from tests.api.conftest import PASSWORD, api_settings, client_for, login, unique, unique_png

from .conftest import Recorder

PROBLEM = "application/problem+json"
OFFSET_STREAM = "application/offset+octet-stream"
PER_FILE = ["probe", "transcribe", "speakers", "cues", "faces", "persons", "pose", "vision", "ocr"]


@dataclass
class Gateway:
    """The gateway (its ingest behind it publishing on the recorder's bus), a user and their case."""

    client: httpx.AsyncClient
    services: ApiServices
    tenant: str
    case_id: str
    token: str

    @property
    def db(self) -> Database:
        return self.services.stores.db

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Tus-Resumable": "1.0.0", **extra}

    @property
    def uploads(self) -> str:
        return f"/api/v1/cases/{self.case_id}/uploads"


@pytest.fixture
async def gateway(tmp_path: Any, recorder: Recorder) -> AsyncIterator[Gateway]:
    settings = api_settings(tmp_path)
    ingest = ingest_app(Deps(settings, bus=recorder.bus))
    services = ApiServices.open(settings, ingest_transport=httpx.ASGITransport(app=ingest))
    try:
        async with client_for(create_app(services)) as client:
            directory = services.directory
            tenant = directory.ensure_tenant(unique("acme"))
            owner = directory.create_user(tenant, unique("owner"), PASSWORD, "user")
            token = (await login(client, owner.username))["access_token"]
            created = services.cases.create(Scope.for_tenant(tenant, "test"), "Harbour fire", owner.id)
            yield Gateway(client, services, tenant, str(created["id"]), token)
    finally:
        await services.close()


def metadata(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


def outbox_mark(db: Database) -> int:
    with db.session(readonly=True) as session:
        return int(session.execute(select(func.coalesce(func.max(outbox.c.seq), 0))).scalar_one())


def outbox_since(db: Database, mark: int) -> list[CloudEvent]:
    with db.session(readonly=True) as session:
        rows = session.execute(select(outbox.c.body).where(outbox.c.seq > mark).order_by(outbox.c.seq))
        return [CloudEvent.from_json(row.body) for row in rows]


def uploaded(events: list[CloudEvent]) -> list[CloudEvent]:
    return [event for event in events if event.type == MediaUploaded.TYPE]


async def tus_upload(gateway: Gateway, data: bytes, sent: str | None) -> tuple[str, str]:
    """Upload ``data`` in two bodies with ``Upload-Metadata: sent``; the upload's URL and the stored
    file's media id."""
    extra = {"Upload-Length": str(len(data))} | ({"Upload-Metadata": sent} if sent is not None else {})
    begun = await gateway.client.post(gateway.uploads, headers=gateway.headers(**extra))
    assert begun.status_code == 201, begun.text
    location = begun.headers["location"]
    assert location.startswith(gateway.uploads + "/")
    offset = 0
    for body in (data[:100], data[100:]):
        headers = gateway.headers(**{"Upload-Offset": str(offset), "Content-Type": OFFSET_STREAM})
        answer = await gateway.client.patch(location, headers=headers, content=body)
        assert answer.status_code == 204, answer.text
        offset += len(body)
    assert answer.headers["upload-offset"] == str(len(data))
    assert "x-aima-duplicate-of" not in answer.headers
    return location, answer.headers["x-aima-media-id"]


async def test_analysis_job_stores_and_audits_announces_nothing_and_a_job_then_starts_the_file(
    gateway: Gateway, recorder: Recorder
) -> None:
    mark = outbox_mark(gateway.db)
    sent = metadata(filename="Hafen 1.png", analysis="job")
    location, media_id = await tus_upload(gateway, unique_png(), sent)

    scope = Scope.for_tenant(gateway.tenant, "test")
    row = MediaRepository(gateway.db).get(scope, media_id)
    assert row is not None
    assert row.filename == "Hafen 1.png"
    [record] = gateway.services.audit.query(gateway.tenant, action="media.store")
    assert record["object"] == f"media/{media_id}"
    assert uploaded(await recorder.settled()) == []  # nothing published
    assert uploaded(outbox_since(gateway.db, mark)) == []  # nor left for the relay
    head = await gateway.client.head(location, headers=gateway.headers())
    assert (head.headers["upload-metadata"], head.headers["x-aima-media-id"]) == (sent, media_id)

    # the client then submits a job for the stored file; the scheduler starts it
    submitted = await gateway.client.post(
        f"/api/v1/cases/{gateway.case_id}/jobs",
        headers={"Authorization": f"Bearer {gateway.token}"},
        json={"media_ids": [media_id], "steps": ["probe"]},
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    db = gateway.db
    jobs = JobRepository(db)
    scheduler = SchedulerCore(
        JobQueue(db), jobs, JobSteps(db), MediaRepository(db), gateway.services.config.effective, PER_FILE
    )
    scheduler.schedule(gateway.tenant)
    job = jobs.get(scope, job_id)
    assert job is not None
    assert job.phase is JobPhase.RUNNING
    [child] = jobs.children_of(scope, [job_id])[job_id]
    [started] = uploaded(outbox_since(db, mark))
    assert (started.data["media_id"], started.data["job_id"]) == (media_id, child.id)
    assert child.media_id == media_id


@pytest.mark.parametrize("value", [None, "now"], ids=["default", "now"])
async def test_analysis_now_or_no_key_announces_the_file_at_once(
    gateway: Gateway, recorder: Recorder, value: str | None
) -> None:
    pairs = {"filename": "Hafen 2.png"} | ({"analysis": value} if value is not None else {})
    _, media_id = await tus_upload(gateway, unique_png(), metadata(**pairs))
    [event] = uploaded(await recorder.settled())
    assert (event.data["media_id"], event.data["job_id"]) == (media_id, None)


@pytest.mark.parametrize("sent", [metadata(analysis="later"), metadata(analysis="JOB"), "analysis"])
async def test_an_unknown_analysis_value_is_a_400_naming_the_key(
    gateway: Gateway, recorder: Recorder, sent: str
) -> None:
    refused = await gateway.client.post(
        gateway.uploads, headers=gateway.headers(**{"Upload-Length": "300", "Upload-Metadata": sent})
    )
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert refused.headers["tus-resumable"] == "1.0.0"
    body = refused.json()
    assert body["type"] == "urn:aima:problem:invalid-header"
    assert "'analysis'" in body["detail"]
    assert body["key"] == "analysis"
    assert body["allowed"] == ["now", "job"]
    assert await recorder.settled() == []
