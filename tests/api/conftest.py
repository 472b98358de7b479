"""The gateway on real stores: a tenant with one user per kind of caller, a shared case, tokens from
``POST /auth/token``, and one prepared request per route (`CALLS`) that the route tests share. The
gateway reaches a real ingest app (same stores, its own MemoryBus) through ``httpx.ASGITransport``."""

from __future__ import annotations

import asyncio
import inspect
import io
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aima.access.scope import Scope
from aima.domain import Job, JobPhase
from aima.identity.model import UserRecord
from aima.samples import write_pattern_png
from aima.settings import Settings, load_settings
from aima.storage.jobs import JobOptions, JobRepository
from aima.storage.retention import PROBES
from aima.storage.transcripts import TranscriptRepository
from aima.transcripts import SpeechSegment, Transcript, segment_id
from events.bus_memory import MemoryBus
from functions.api.app import create_app
from functions.api.services import ApiServices
from functions.ingest.spec import app as ingest_app
from functions.runtime.deps import Deps
from tests.api.report_seed import ensure_report
from tests.persons.seed import person_request
from tests.reviews.seed import review_request
from tests.speakers.seed import speaker_request
from tests.support import add_media

PASSWORD = "correct horse battery staple"
CALLERS = (
    "admin",
    "owner",
    "analyst",
    "viewer",
    "nonmember",
    "guest_member",
    "guest_nonmember",
    "other_admin",
    "anonymous",
)
ROLES = {
    "admin": "admin",
    "owner": "user",
    "analyst": "user",
    "viewer": "user",
    "nonmember": "user",
    "guest_member": "guest",
    "guest_nonmember": "guest",
    "other_admin": "admin",
}
MEMBERS = {"analyst": "analyst", "viewer": "viewer", "guest_member": "viewer"}  # plus the owner


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Embedded settings under ``tmp_path`` with limits no test reaches, plus ``overrides``. Readiness
    checks may take long: the first one opens Milvus Lite (the app's lifespan would have, see
    `ApiServices.start`)."""
    options: dict[str, Any] = {
        "rate_limit_per_user": 100_000,
        "rate_limit_per_address": 100_000,
        "health_timeout": 30.0,
    }
    return load_settings(profile="embedded", data_dir=tmp_path / "aima", **(options | overrides))


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """The token pair of a successful ``POST /auth/token``."""
    response = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


@dataclass
class World:
    """Two tenants, one user per caller kind, a case of the owner shared as `MEMBERS` says, tokens."""

    services: ApiServices
    client: httpx.AsyncClient
    tenant: str
    other_tenant: str
    users: dict[str, UserRecord] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    case_id: str = ""
    target: UserRecord | None = None  # a user of the tenant that sharing routes act on
    probed: str = ""  # a probed file of the shared case, for the image routes (`_image`)

    @classmethod
    async def build(cls, services: ApiServices, client: httpx.AsyncClient) -> World:
        directory = services.directory
        world = cls(
            services,
            client,
            directory.ensure_tenant(unique("acme")),
            directory.ensure_tenant(unique("umbrella")),
        )
        # Argon2 dominates: hash and verify the passwords in parallel
        created = await asyncio.gather(
            *(
                asyncio.to_thread(
                    directory.create_user,
                    world.other_tenant if caller == "other_admin" else world.tenant,
                    unique(caller),
                    PASSWORD,
                    role,
                )
                for caller, role in ROLES.items()
            )
        )
        world.users = dict(zip(ROLES, created, strict=True))
        pairs = await asyncio.gather(*(login(client, user.username) for user in created))
        world.tokens = {caller: pair["access_token"] for caller, pair in zip(ROLES, pairs, strict=True)}
        world.target = directory.create_user(world.tenant, unique("target"), None, "user", kind="service")
        world.case_id = world.new_case()
        return world

    def new_case(self, name: str = "Harbour fire") -> str:
        """A case of the owner, shared with the analyst, the viewer and the guest member (via the kernel)."""
        cases = self.services.cases
        scope = Scope.for_tenant(self.tenant, "test")
        case_id = str(cases.create(scope, name, self.users["owner"].id)["id"])
        for caller, role in MEMBERS.items():
            cases.share(scope, case_id, self.users[caller].id, role)
        return case_id

    def service_account(self) -> UserRecord:
        return self.services.directory.create_user(self.tenant, unique("svc"), None, "user", kind="service")

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def call(self, caller: str, call: Call | Awaitable[Call]) -> httpx.Response:
        call = await prepared(call)
        return await self.client.request(
            call.method,
            call.path,
            headers=self.headers(caller) | (call.headers or {}),
            json=call.json,
            data=call.data,
            params=call.params,
            content=call.content,
        )

    async def open_upload(self, length: int) -> str:
        """A resumable upload of the shared case, opened on ingest directly (no gateway audit record)."""
        answer = await self.services.ingest.send(
            "POST",
            f"/cases/{self.case_id}/uploads",
            tenant_id=self.tenant,
            actor=self.users["owner"].id,
            request_id=None,
            headers={"Upload-Length": str(length), "Tus-Resumable": "1.0.0"},
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["upload_id"])


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None


async def prepared(call: Call | Awaitable[Call]) -> Call:
    """A route's call; the upload routes prepare theirs asynchronously (they open an upload first)."""
    return await call if inspect.isawaitable(call) else call


def unique_png() -> bytes:
    """A small PNG made unique by trailing bytes (ingest types files by their head), so no upload is a
    duplicate of another."""
    with tempfile.TemporaryDirectory() as folder:
        png = write_pattern_png(Path(folder) / "p.png", width=16, height=12).read_bytes()
    return png + uuid.uuid4().bytes


def _upload(world: World) -> Call:
    path = f"/api/v1/cases/{world.case_id}/media"
    return Call("POST", path, content=unique_png(), headers={"X-AIMA-Filename": "scene%201.png"})


BOUNDARY = "aima-test-boundary"


def _bulk(world: World) -> Call:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + unique_png()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return Call("POST", f"/api/v1/cases/{world.case_id}/media:bulk", content=body, headers=headers)


def _begin(world: World) -> Call:
    path = f"/api/v1/cases/{world.case_id}/uploads"
    headers = {"Upload-Length": "100000", "X-AIMA-Filename": "later.png", "Tus-Resumable": "1.0.0"}
    return Call("POST", path, headers=headers)


async def _upload_call(world: World, method: str) -> Call:
    png = unique_png()
    upload_id = await world.open_upload(len(png))
    path = f"/api/v1/cases/{world.case_id}/uploads/{upload_id}"
    if method != "PATCH":
        return Call(method, path, headers={"Tus-Resumable": "1.0.0"})
    headers = {
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
        "Tus-Resumable": "1.0.0",
    }
    return Call("PATCH", path, content=png, headers=headers)


def _share_target(world: World) -> Call:
    assert world.target is not None
    return Call("PUT", f"/api/v1/cases/{world.case_id}/members/{world.target.id}", json={"role": "viewer"})


def _unshare_target(world: World) -> Call:
    assert world.target is not None
    world.services.cases.share(
        Scope.for_tenant(world.tenant, "test"), world.case_id, world.target.id, "viewer"
    )
    return Call("DELETE", f"/api/v1/cases/{world.case_id}/members/{world.target.id}")


def _refresh(world: World) -> Call:
    principal = world.services.directory.principal(world.users["viewer"].id)
    return Call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": world.services.tokens.issue_refresh(principal)}
    )


def _transcript(suffix: str) -> Callable[[World], Call]:
    """A transcript of the shared case (stored on first use): read as JSON, its versions, or exported as
    .vtt or .srt."""

    def call(world: World) -> Call:
        media_id, transcripts = "transcribed", TranscriptRepository(world.services.stores.documents)
        if transcripts.latest(world.tenant, world.case_id, media_id) is None:
            said = SpeechSegment(
                id=segment_id(media_id, 0.5), start=0.5, end=2.0, text="Hello.", language="en"
            )
            transcripts.add(
                Transcript(
                    tenant_id=world.tenant,
                    case_id=world.case_id,
                    media_id=media_id,
                    version=1,
                    segments=[said],
                )
            )
        return Call("GET", f"/api/v1/cases/{world.case_id}/media/{media_id}/transcript{suffix}")

    return call


FRAME_ID = "frame-1"


def _image(suffix: str) -> Callable[[World], Call]:
    """An image route of a probed file of the shared case: its frame, thumbnail, preview and a face crop
    stored on first use, as the probe (and the faces step) store them; no scores: served as they are."""

    def call(world: World) -> Call:
        if not world.probed:
            stores = world.services.stores
            scope = Scope.for_case(world.tenant, world.case_id, "test")
            media_id, base = add_media(
                stores.objects,  # type: ignore[arg-type]
                world.services.media,
                scope,
                world.case_id,
                unique_png(),
                content_type="image/png",
                filename="still.png",
            )
            for name in ("frames/0000000000.jpg", "thumb.jpg", "preview.jpg", f"crops/{FRAME_ID}/face-0.jpg"):
                stores.objects.put(f"{base}/{name}", io.BytesIO(unique_png()), content_type="image/png")
            frame = {"frame_id": FRAME_ID, "object_key": f"{base}/frames/0000000000.jpg", "timestamp_s": 0.0}
            doc = {"frames": [frame], "thumbnail": f"{base}/thumb.jpg", "preview": f"{base}/preview.jpg"}
            where = {"_id": media_id, "tenant_id": world.tenant, "case_id": world.case_id}
            stores.documents.update_one(PROBES, where, {"$set": doc}, upsert=True)
            world.probed = media_id
        return Call(
            "GET", f"/api/v1/cases/{world.case_id}/media/{world.probed}/{suffix.format(frame=FRAME_ID)}"
        )

    return call


def _playback(world: World) -> Call:
    probed = _image("frames")(world)
    return Call("POST", probed.path.removesuffix("/frames") + "/playback", json={})


def _content(world: World) -> Call:
    """The content URL with a ticket of the viewer's: the ticket is the credential, any bearer token
    sent along is ignored."""
    probed = _image("frames")(world)
    principal = world.services.directory.principal(world.users["viewer"].id)
    ticket = world.services.playback.issue(principal, world.case_id, world.probed, opened=False)
    return Call("GET", probed.path.removesuffix("/frames") + "/content", params={"ticket": ticket.token})


def _speakers(world: World, route: str) -> Call:
    stores = world.services.stores
    method, path, body = speaker_request(stores.documents, stores.vectors, world.tenant, world.case_id, route)
    return Call(method, path, json=body)


def _persons(world: World, route: str) -> Call:
    method, path, body = person_request(world.services.stores.documents, world.tenant, world.case_id, route)
    return Call(method, path, json=body)


def _review(world: World) -> Call:
    method, path, body = review_request(world.services.stores.documents, world.tenant, world.case_id)
    return Call(method, path, json=body)


def _report(suffix: str) -> Callable[[World], Call]:
    """A report route of the shared case, its sample report stored on first use."""

    def call(world: World) -> Call:
        ensure_report(world.services.stores.documents, world.tenant, world.case_id)
        return Call("GET", f"/api/v1/cases/{world.case_id}/reports{suffix}")

    return call


def _ask_for_report(world: World) -> Call:
    _image("thumbnail")(world)  # a file to report on
    return Call("POST", f"/api/v1/cases/{world.case_id}/reports")


def seed_job(world: World, phase: JobPhase = JobPhase.QUEUED, options: JobOptions | None = None) -> Job:
    """A job of the shared case on its probed file (`_image`), made and moved to ``phase`` through the
    kernel's repository (no scheduler runs in the gateway tests)."""
    _image("thumbnail")(world)
    jobs = JobRepository(world.services.stores.db)
    scope = Scope.for_case(world.tenant, world.case_id, "test")
    job = jobs.create_parent(scope, world.case_id, ["probe", "faces"], options)
    jobs.create_child(scope, world.case_id, job.id, world.probed)
    path = {
        JobPhase.QUEUED: [],
        JobPhase.AWAITING_APPROVAL: [JobPhase.ESTIMATING, JobPhase.AWAITING_APPROVAL],
        JobPhase.RUNNING: [JobPhase.ESTIMATING, JobPhase.RUNNING],
        JobPhase.SUCCEEDED: [JobPhase.ESTIMATING, JobPhase.RUNNING, JobPhase.SUCCEEDED],
    }
    if phase is JobPhase.CANCELLED:
        return jobs.cancel(scope, job.id, by="test")
    for step in path[phase]:
        job = jobs.move(scope, job.id, step)
    return job


def _job_route(
    suffix: str, method: str = "POST", phase: JobPhase = JobPhase.QUEUED
) -> Callable[[World], Call]:
    """A route of a fresh job of the shared case in ``phase`` (so that every call finds it there)."""

    def call(world: World) -> Call:
        job = seed_job(world, phase)
        return Call(method, f"/api/v1/cases/{world.case_id}/jobs/{job.id}{suffix}")

    return call


def _submit(world: World) -> Call:
    _image("thumbnail")(world)  # a file to analyse
    return Call("POST", f"/api/v1/cases/{world.case_id}/jobs", json={"media_ids": [world.probed]})


def _estimate(world: World) -> Call:
    _image("thumbnail")(world)
    return Call("POST", f"/api/v1/cases/{world.case_id}/jobs/estimate", json={"media_ids": [world.probed]})


CASE = "/api/v1/cases/{case_id}"
CALLS: dict[tuple[str, str], Callable[[World], Call | Awaitable[Call]]] = {
    ("GET", "/healthz"): lambda w: Call("GET", "/healthz"),
    ("GET", "/readyz"): lambda w: Call("GET", "/readyz"),
    ("GET", "/metrics"): lambda w: Call("GET", "/metrics"),
    ("GET", "/.well-known/jwks.json"): lambda w: Call("GET", "/.well-known/jwks.json"),
    ("GET", "/api/v1/auth/jwks.json"): lambda w: Call("GET", "/api/v1/auth/jwks.json"),
    ("POST", "/api/v1/auth/token"): lambda w: Call(
        "POST", "/api/v1/auth/token", data={"username": w.users["viewer"].username, "password": PASSWORD}
    ),
    ("POST", "/api/v1/auth/refresh"): _refresh,
    ("POST", "/api/v1/auth/logout"): lambda w: Call("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/providers"): lambda w: Call("GET", "/api/v1/auth/providers"),
    ("GET", "/api/v1/auth/oidc/login"): lambda w: Call("GET", "/api/v1/auth/oidc/login?return_to=/cases"),
    ("GET", "/api/v1/auth/oidc/callback"): lambda w: Call("GET", "/api/v1/auth/oidc/callback?code=c&state=s"),
    ("POST", "/api/v1/auth/oidc/session"): lambda w: Call("POST", "/api/v1/auth/oidc/session"),
    ("GET", "/api/v1/me"): lambda w: Call("GET", "/api/v1/me"),
    ("GET", "/api/v1/users"): lambda w: Call("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"): lambda w: Call(
        "POST", "/api/v1/users", json={"username": unique("new"), "kind": "service"}
    ),
    ("POST", "/api/v1/users/{user_id}/disable"): lambda w: Call(
        "POST", f"/api/v1/users/{w.service_account().id}/disable"
    ),
    ("POST", "/api/v1/users/{user_id}/service-token"): lambda w: Call(
        "POST", f"/api/v1/users/{w.service_account().id}/service-token", json={"ttl": 600}
    ),
    ("GET", "/api/v1/cases"): lambda w: Call("GET", "/api/v1/cases"),
    ("POST", "/api/v1/cases"): lambda w: Call("POST", "/api/v1/cases", json={"name": "Warehouse"}),
    ("GET", CASE): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}"),
    ("PATCH", CASE): lambda w: Call("PATCH", f"/api/v1/cases/{w.case_id}", json={"name": "Harbour fire II"}),
    ("DELETE", CASE): lambda w: Call("DELETE", f"/api/v1/cases/{w.new_case()}"),
    ("GET", CASE + "/members"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/members"),
    ("PUT", CASE + "/members/{user_id}"): _share_target,
    ("DELETE", CASE + "/members/{user_id}"): _unshare_target,
    ("GET", CASE + "/media"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/media"),
    ("GET", CASE + "/export"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/export"),
    ("GET", CASE + "/media/{media_id}/transcript"): _transcript(""),
    ("GET", CASE + "/media/{media_id}/transcript/versions"): _transcript("/versions"),
    ("GET", CASE + "/media/{media_id}/transcript.vtt"): _transcript(".vtt"),
    ("GET", CASE + "/media/{media_id}/transcript.srt"): _transcript(".srt"),
    ("GET", CASE + "/media/{media_id}/thumbnail"): _image("thumbnail"),
    ("GET", CASE + "/media/{media_id}/preview"): _image("preview"),
    ("GET", CASE + "/media/{media_id}/frames"): _image("frames"),
    ("GET", CASE + "/media/{media_id}/frames/{frame_id}"): _image("frames/{frame}"),
    ("GET", CASE + "/media/{media_id}/crops/{frame_id}/{name}"): _image("crops/{frame}/face-0.jpg"),
    ("POST", CASE + "/media/{media_id}/playback"): _playback,
    ("GET", CASE + "/media/{media_id}/content"): _content,
    ("GET", CASE + "/speakers"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/speakers"),
    ("PATCH", CASE + "/speakers/{speaker_id}"): lambda w: _speakers(w, "rename"),
    ("POST", CASE + "/speakers/{speaker_id}/merge"): lambda w: _speakers(w, "merge"),
    ("POST", CASE + "/speakers/{speaker_id}/split"): lambda w: _speakers(w, "split"),
    ("GET", CASE + "/persons"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/persons"),
    ("GET", CASE + "/persons/unassigned"): lambda w: Call(
        "GET", f"/api/v1/cases/{w.case_id}/persons/unassigned"
    ),
    ("GET", CASE + "/persons/{person_id}"): lambda w: _persons(w, "gallery"),
    ("PATCH", CASE + "/persons/{person_id}"): lambda w: _persons(w, "rename"),
    ("POST", CASE + "/persons/{person_id}/merge"): lambda w: _persons(w, "merge"),
    ("POST", CASE + "/persons/{person_id}/split"): lambda w: _persons(w, "split"),
    ("GET", CASE + "/findings"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/findings"),
    ("PUT", CASE + "/findings/{finding_id}/review"): _review,
    ("GET", CASE + "/reviews"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/reviews"),
    ("GET", CASE + "/reports"): _report(""),
    ("POST", CASE + "/reports"): _ask_for_report,
    ("GET", CASE + "/reports/{version}"): _report("/latest"),
    ("GET", CASE + "/reports/{version}/export"): _report("/1/export?format=csv-timeline"),
    ("GET", CASE + "/search"): lambda w: Call("GET", f"{CASE.format(case_id=w.case_id)}/search?q=fire"),
    ("POST", CASE + "/jobs"): _submit,
    ("GET", CASE + "/jobs"): lambda w: Call("GET", f"/api/v1/cases/{w.case_id}/jobs"),
    ("POST", CASE + "/jobs/estimate"): _estimate,
    ("GET", CASE + "/jobs/{job_id}"): _job_route("", "GET"),
    ("DELETE", CASE + "/jobs/{job_id}"): _job_route("", "DELETE"),
    ("POST", CASE + "/jobs/{job_id}/cancel"): _job_route("/cancel"),
    ("POST", CASE + "/jobs/{job_id}/resume"): _job_route("/resume", phase=JobPhase.CANCELLED),
    ("POST", CASE + "/jobs/{job_id}/approve"): _job_route("/approve", phase=JobPhase.AWAITING_APPROVAL),
    ("GET", CASE + "/jobs/{job_id}/events"): _job_route("/events", "GET", JobPhase.CANCELLED),
    ("GET", CASE + "/jobs/{job_id}/files"): _job_route("/files", "GET"),
    ("POST", CASE + "/media"): _upload,
    ("POST", CASE + "/media:bulk"): _bulk,
    ("POST", CASE + "/uploads"): _begin,
    ("OPTIONS", CASE + "/uploads"): lambda w: Call("OPTIONS", f"/api/v1/cases/{w.case_id}/uploads"),
    ("HEAD", CASE + "/uploads/{upload_id}"): lambda w: _upload_call(w, "HEAD"),
    ("PATCH", CASE + "/uploads/{upload_id}"): lambda w: _upload_call(w, "PATCH"),
    ("DELETE", CASE + "/uploads/{upload_id}"): lambda w: _upload_call(w, "DELETE"),
    ("GET", "/api/v1/audit"): lambda w: Call("GET", "/api/v1/audit", params={"limit": "5"}),
    ("GET", "/api/v1/audit/export"): lambda w: Call("GET", "/api/v1/audit/export", params={"format": "csv"}),
    ("GET", "/api/v1/audit/verify"): lambda w: Call("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/config"): lambda w: Call("GET", "/api/v1/config"),
    ("GET", "/api/v1/config/{key}"): lambda w: Call("GET", "/api/v1/config/thresholds"),
    ("PUT", "/api/v1/config/{key}"): lambda w: Call(
        "PUT", "/api/v1/config/thresholds", json={"face_match": 0.55}
    ),
    ("GET", "/api/v1/config/{key}/history"): lambda w: Call("GET", "/api/v1/config/thresholds/history"),
}
"""One request per route, prepared afresh for each call (deletions get a case of their own)."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path)


@pytest.fixture
async def ingest_bus() -> AsyncIterator[MemoryBus]:
    """The bus the ingest app publishes on."""
    bus = MemoryBus()
    yield bus
    await bus.close()


@pytest.fixture
async def services(settings: Settings, ingest_bus: MemoryBus) -> AsyncIterator[ApiServices]:
    ingest = ingest_app(Deps(settings, bus=ingest_bus))
    opened = ApiServices.open(settings, ingest_transport=httpx.ASGITransport(app=ingest))
    yield opened
    await opened.close()


@pytest.fixture
def app(services: ApiServices) -> FastAPI:
    return create_app(services)


@pytest.fixture
async def world(services: ApiServices, app: FastAPI) -> AsyncIterator[World]:
    async with client_for(app) as client:
        yield await World.build(services, client)
