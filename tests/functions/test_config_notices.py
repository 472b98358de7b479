"""A configuration change reaches every process at once (``config.changed`` is a broadcast), not after the
configuration cache's minute."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aima.identity.users import UserDirectory
from aima.settings import load_settings
from events.bus_nats import NatsBus
from functions.runtime.deps import Deps
from functions.runtime.host import Host
from tests.events.test_bus_contract import delete_streams
from tests.support import eventually


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    yield f"CFG_{suffix}", f"cfg{suffix}"
    await delete_streams(nats_url, f"CFG_{suffix}", f"CFG_{suffix}_DLQ")


async def test_every_process_sees_a_lowered_upload_limit_at_once(
    tmp_path: Path, nats_url: str, stream: tuple[str, str]
) -> None:
    name, root = stream
    settings = load_settings(profile="embedded", data_dir=tmp_path / "aima")
    # two processes: one database, each with its own in-process configuration cache, one NATS
    gateway = Deps(settings, bus=NatsBus(nats_url, stream=name, subject_root=root))
    ingest = Deps(settings, bus=NatsBus(nats_url, stream=name, subject_root=root))
    hosts = [Host(gateway, []), Host(ingest, [])]
    tenant = UserDirectory(gateway.db).ensure_tenant("acme")
    for host in hosts:
        await host.start()
    try:
        before = ingest.config.effective(tenant).limits.max_upload_bytes
        assert ingest.config.effective(tenant).limits.max_upload_bytes == before  # now cached there

        lowered = before // 2
        await asyncio.to_thread(
            gateway.config.set,
            "limits",
            {"max_upload_bytes": lowered},
            actor="admin",
            tenant_id=tenant,
            audit_tenant_id=tenant,
        )
        # the cache alone would keep the old value for 60 s
        await eventually(lambda: ingest.config.effective(tenant).limits.max_upload_bytes == lowered)
        await eventually(lambda: gateway.outbox.pending() == [])  # published, not left behind
    finally:
        for host in hosts:
            await host.stop()
