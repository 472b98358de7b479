"""Helpers several test groups share."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi import FastAPI

from aima.access.scope import Scope
from aima.identity.users import UserDirectory
from aima.reports.model import CaseReport
from aima.storage.cases import CaseRepository
from aima.storage.documents import DocumentStore
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.relational import Database


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own, on a fixed free port, that the test can stop and restart
    (without persistence, so a restart comes back empty)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--daemonize", "no"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert self.process.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not answer"
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill it abruptly, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


async def eventually(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.05) -> None:  # noqa: ASYNC109
    """Wait until ``check()`` is true (polling: the condition lives in another process or thread)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(interval)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in this event loop; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def wait_ready(
    url: str, process: subprocess.Popen[bytes], *, path: str = "/readyz", timeout: float = 60
) -> None:
    """Wait until ``url + path`` answers 200; fail with the server's stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"{url} exited: {process.stderr.read().decode() if process.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}{path} did not answer 200 within {timeout} s")
        time.sleep(0.1)


@dataclass
class CaseStores:
    """Embedded stores in a folder, with a tenant, its owner and one case in them."""

    db: Database
    objects: LocalObjectStore
    documents: DocumentStore
    tenant_id: str
    case_id: str


@contextmanager
def case_stores(folder: Path, name: str) -> Iterator[CaseStores]:
    """SQLite (migrated), a local object folder and litemongo under ``folder``, with a fresh tenant
    ``{name}-…``, its owner and a case made through the repositories; closed afterwards."""
    db = Database(f"sqlite:///{folder / 'aima.db'}")
    db.migrate()
    objects = LocalObjectStore(
        folder / "objects", presign_secret=b"s" * 32, public_base_url="http://aima.test"
    )
    documents = DocumentStore.from_uri(f"litemongo://{folder / 'documents'}", "aima")
    directory = UserDirectory(db)
    suffix = uuid.uuid4().hex[:8]
    tenant_id = directory.ensure_tenant(f"{name}-{suffix}")
    owner = directory.create_user(tenant_id, f"owner-{suffix}", None, "user")
    case = CaseRepository(db).create(Scope.for_tenant(tenant_id, owner.id), f"{name} case", owner.id)
    try:
        yield CaseStores(db, objects, documents, tenant_id, str(case["id"]))
    finally:
        documents.close()
        db.dispose()


def add_media(
    objects: LocalObjectStore,
    media: MediaRepository,
    scope: Scope,
    case_id: str,
    content: bytes,
    *,
    content_type: str,
    filename: str,
) -> tuple[str, str]:
    """Store ``content`` (followed by the new media id, so that no call is a duplicate of another)
    as a media file's original and register its row the way ingest does; returns the media id and
    the object prefix its derived files go under."""
    media_id = str(uuid.uuid4())
    base = f"cases/{case_id}/media/{media_id}"
    original = content + media_id.encode()
    stored = objects.put(f"{base}/original", io.BytesIO(original), content_type=content_type)
    assert stored.sha256 is not None
    media.add(
        scope,
        case_id=case_id,
        media_id=media_id,
        sha256=stored.sha256,
        size=stored.size,
        content_type=content_type,
        kind=None,
        filename=filename,
        object_key=f"{base}/original",
    )
    return media_id, base


def last_seq(world: Any) -> int:
    """The newest audit record's sequence number in a gateway test's database (0: none)."""
    from sqlalchemy import func, select

    from aima.storage.schema import audit_log

    with world.services.stores.db.engine.connect() as c:
        return int(c.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar_one())


def records_since(world: Any, seq: int) -> list[dict[str, Any]]:
    """The audit records written after ``seq``, oldest first."""
    from sqlalchemy import select

    from aima.storage.schema import audit_log

    with world.services.stores.db.engine.connect() as c:
        rows = c.execute(select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq))
        return [dict(row._mapping) for row in rows]


CORRECTING_ROLES: dict[str, tuple[int, int]] = {
    "admin": (200, 200),
    "owner": (200, 200),
    "analyst": (200, 200),
    "viewer": (200, 403),
    "guest_member": (200, 403),
    "nonmember": (404, 404),
    "guest_nonmember": (404, 404),
    "other_admin": (404, 404),
    "anonymous": (401, 401),
}
"""Caller -> (status of a read, status of a correction) on a case's routes: members read, analysts
and owners correct (the gateway tests' callers, `tests/api/conftest.py`)."""


def run_aima(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 240.0
) -> subprocess.CompletedProcess[str]:
    """``python -m aima.cli ARGS`` with the environment's ``AIMA_*`` settings removed (``env`` adds its
    own). Should it outlive ``timeout``, every thread's stack is dumped (faulthandler, SIGABRT) and the
    test fails with the command's output, so a hang in CI shows where it hung."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | (env or {})
    full["PYTHONFAULTHANDLER"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "aima.cli", *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate(timeout=30)
        pytest.fail(
            f"aima {' '.join(args)} did not finish in {timeout:.0f} s; its stacks:\n"
            f"{err[-20000:]}\n{out[-4000:]}"
        )
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# --- comparing reports of two runs --------------------------------------------------------------

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?")
VOLATILE = {
    "report_id",
    "created_at",
    "job_id",
    "uploaded_at",
    "signed_at",
    "signature",
    "key_id",
    "audit_head",
    "indicator_key",  # a digest over the media id, among others
}


def comparable(report: CaseReport) -> Any:
    """The report without what differs between any two runs: ids, times, the signature."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return TIME.sub("<time>", UUID.sub("<id>", value))
        return value

    return clean(json.loads(report.model_dump_json()))
