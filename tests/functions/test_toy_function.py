"""A function declared in a temporary package, with no other file edited, is discovered, served over
HTTP and as `aima serve`, consumes over both buses, reports readiness and is counted by `aima analyze`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import functions
from aima.cli.analyze import run_analysis
from aima.samples import write_pattern_png, write_tone_wav
from aima.settings import Settings, load_settings
from events.bus import Subscription
from events.bus_memory import MemoryBus
from events.bus_nats import NatsBus
from events.catalogue import MediaProbed, SensitivityScored, make_event
from events.envelope import CloudEvent, derived_event_id
from events.http import to_structured
from functions.runtime.deps import Deps
from functions.runtime.host import Host
from functions.runtime.spec import discover
from tests.events.test_bus_contract import delete_streams
from tests.support import free_port, wait_ready

TOY = '''
"""A toy analysis step: marks every probed file as not scored."""

from events.catalogue import MediaProbed, ModelInfo, SensitivityScored
from functions.runtime.spec import FunctionSpec, Resources


class Toy:
    async def handle(self, data: MediaProbed, ctx: object) -> list[SensitivityScored]:
        return [
            SensitivityScored(
                tenant_id=data.tenant_id,
                case_id=data.case_id,
                media_id=data.media_id,
                job_id=data.job_id,
                model=ModelInfo(name="toy", version="0", backend="none"),
                result_count=0,
                status="not_run",
                reason="a toy",
            )
        ]


SPEC = FunctionSpec(
    name="toy",
    description="a toy step",
    consumes=(MediaProbed,),
    emits=(SensitivityScored,),
    build=lambda deps: Toy(),
    needs=("database", "bus"),
    resources=Resources(cpu="100m"),
    port=8099,
    analysis=True,
)
'''


@pytest.fixture
def toy_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with ``functions/toy/{__init__,spec}.py`` on sys.path (the repo untouched)."""
    root = tmp_path / "extra"
    package = root / "functions" / "toy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A toy function."""\n')
    (package / "spec.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(functions, "__path__", list(functions.__path__))
    yield root
    for name in [m for m in sys.modules if m == "functions.toy" or m.startswith("functions.toy.")]:
        del sys.modules[name]


def probed(tenant: str = "t1") -> CloudEvent:
    data = MediaProbed(
        tenant_id=tenant, case_id="c1", media_id=str(uuid.uuid4()), kind="image", width=1, height=1
    )
    return make_event(data, source="/aima/functions/probe")


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(profile="embedded", data_dir=tmp_path / "aima", **overrides)


def test_the_toy_is_discovered_next_to_the_functions_of_this_build(toy_path: Path) -> None:
    specs = discover()
    assert {"api", "ingest", "probe", "retention", "toy"} <= set(specs)
    assert specs["toy"].types == (MediaProbed.TYPE,)


async def test_the_toy_is_served_over_http_and_reports_readiness(toy_path: Path, tmp_path: Path) -> None:
    deps = Deps(settings_for(tmp_path, delivery="http"), bus=MemoryBus())
    host = Host(deps, [discover()["toy"]])
    app = host.app(discover()["toy"])
    await host.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://toy") as client:
            ready = await client.get("/readyz")
            event = deps.signer.sign(probed())
            headers, body = to_structured(event)
            response = await client.post("/", headers=headers, content=body)
        assert ready.status_code == 200
        assert set(ready.json()["components"]) == {"database", "bus"}
        assert response.status_code == 202
        assert response.headers["X-Emitted-Event-Ids"] == derived_event_id(
            event.id, "toy", SensitivityScored.TYPE
        )
    finally:
        await host.stop()


@pytest.fixture
async def nats_stream(nats_url: str) -> AsyncIterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    stream, root = f"TOY_{suffix}", f"toy{suffix}"
    yield stream, root
    await delete_streams(nats_url, stream, f"{stream}_DLQ")


@pytest.mark.parametrize("kind", ["memory", "nats"])
async def test_the_toy_consumes_over_both_buses(
    toy_path: Path, tmp_path: Path, kind: str, nats_url: str, nats_stream: tuple[str, str]
) -> None:
    stream, root = nats_stream
    bus = MemoryBus() if kind == "memory" else NatsBus(nats_url, stream=stream, subject_root=root)
    deps = Deps(settings_for(tmp_path, delivery="bus"), bus=bus)
    host = Host(deps, [discover()["toy"]])
    results: list[CloudEvent] = []
    arrived = asyncio.Event()

    async def record(event: CloudEvent) -> list[CloudEvent]:
        results.append(event)
        arrived.set()
        return []

    await host.start()
    try:
        await deps.bus.subscribe(Subscription("observer", (SensitivityScored.TYPE,), record))
        event = probed()
        await deps.bus.publish(event)
        async with asyncio.timeout(20):
            await arrived.wait()
        [result] = results
        assert result.id == derived_event_id(event.id, "toy", SensitivityScored.TYPE)
        deps.signer.verify(result)
    finally:
        await host.stop()


def test_aima_serve_runs_the_toy_on_nats_from_its_spec(
    toy_path: Path, tmp_path: Path, nats_url: str, nats_stream: tuple[str, str]
) -> None:
    stream, root = nats_stream
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(toy_path), str(Path(__file__).resolve().parents[2])]),
        "AIMA_PROFILE": "embedded",
        "AIMA_DATA_DIR": str(tmp_path / "aima"),
        "AIMA_BUS": "nats",
        "AIMA_NATS_URL": nats_url,
        "AIMA_NATS_STREAM": stream,
        "AIMA_NATS_SUBJECT_ROOT": root,
        "AIMA_LOG_LEVEL": "WARNING",
    }
    aima = str(Path(sys.executable).parent / "aima")
    server = subprocess.Popen([aima, "serve", "toy", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)

        settings = settings_for(
            tmp_path, bus="nats", nats_url=nats_url, nats_stream=stream, nats_subject_root=root
        )

        async def roundtrip() -> CloudEvent:
            deps = Deps(settings)
            seen: list[CloudEvent] = []
            arrived = asyncio.Event()

            async def record(event: CloudEvent) -> list[CloudEvent]:
                seen.append(event)
                arrived.set()
                return []

            await deps.bus.start()
            try:
                await deps.bus.subscribe(Subscription("observer", (SensitivityScored.TYPE,), record))
                await deps.bus.publish(probed())
                async with asyncio.timeout(20):
                    await arrived.wait()
                return seen[0]
            finally:
                await deps.bus.close()
                deps.close()

        result = asyncio.run(roundtrip())
        assert result.source == "/aima/functions/toy"
    finally:
        server.terminate()
        server.wait(timeout=30)


async def test_aima_analyze_runs_and_counts_the_toy(toy_path: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    (tmp_path / "samples").mkdir()
    files = [
        write_tone_wav(tmp_path / "samples" / "tones.wav"),
        write_pattern_png(tmp_path / "samples" / "p.png"),
    ]
    await run_analysis(settings_for(tmp_path), files, case_name="toy", echo=lines.append)
    [steps] = [line for line in lines if line.startswith("steps run:")]
    assert "probe (" in steps
    assert f"toy ({len(files)} results)" in steps
    assert sum("sensitivity: not run: a toy" in line for line in lines) == len(files)


def test_aima_analyze_without_the_toy_does_not_count_it(tmp_path: Path) -> None:
    assert "toy" not in discover()
