"""A step the bus gives up on tells the file's other steps: ``io.aima.media.failed.v1`` with its name."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from aima.settings import load_settings
from events.bus import Subscription
from events.bus_memory import MemoryBus
from events.catalogue import MediaFailed, MediaProbed, SensitivityScored, make_event, parse_data
from events.envelope import CloudEvent, derived_event_id
from functions.runtime.deps import Deps
from functions.runtime.dispatch import StepFailed
from functions.runtime.host import Host
from functions.runtime.spec import FunctionSpec
from tests.support import eventually


class Broken:
    """Fails every time: a transient-looking error, or one that can never succeed."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def handle(self, data: MediaProbed, ctx: object) -> list[SensitivityScored]:
        self.calls += 1
        raise self.error


def spec_for(core: Broken) -> FunctionSpec:
    return FunctionSpec(
        name="broken",
        description="always fails",
        consumes=(MediaProbed,),
        emits=(SensitivityScored,),
        build=lambda deps: core,
        needs=("database", "bus"),
        analysis=False,
    )


@pytest.mark.parametrize(
    ("error", "attempts"), [(RuntimeError("disk on fire"), 3), (StepFailed("broken: failed: bad model"), 1)]
)
async def test_the_last_failure_becomes_media_failed_once(
    tmp_path: Path, error: Exception, attempts: int
) -> None:
    settings = load_settings(
        profile="embedded", data_dir=tmp_path / "aima", delivery="bus", bus_max_deliver=3, bus_backoff=[0.01]
    )
    deps = Deps(settings, bus=MemoryBus())
    core = Broken(error)
    host = Host(deps, [spec_for(core)])
    failed: list[CloudEvent] = []
    await host.start()
    try:
        await deps.bus.subscribe(Subscription("observer", (MediaFailed.TYPE,), lambda e: _keep(failed, e)))
        data = MediaProbed(
            tenant_id="t1", case_id="c1", media_id=str(uuid.uuid4()), job_id="j1", kind="image"
        )
        event = make_event(data, source="/aima/functions/probe")
        await deps.bus.publish(event)
        await eventually(lambda: bool(failed), timeout=20)
        await asyncio.sleep(0.2)  # nothing more arrives
    finally:
        await host.stop()
    [sent] = failed
    payload = parse_data(sent)
    assert isinstance(payload, MediaFailed)
    assert (payload.media_id, payload.job_id, payload.step) == (data.media_id, "j1", "broken")
    assert payload.reason.startswith("gave up after repeated failures: ")
    assert str(error) in payload.reason
    assert sent.id == derived_event_id(event.id, "broken", MediaFailed.TYPE)
    assert core.calls == attempts
    deps.signer.verify(sent)


async def _keep(into: list[CloudEvent], event: CloudEvent) -> list[CloudEvent]:
    into.append(event)
    return []
