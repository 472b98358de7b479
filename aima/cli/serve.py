"""``aima serve NAME``: run one function (or ``all``) under uvicorn, from its spec.

The names are the function specs found on this installation (`functions.runtime.spec.discover`),
so a new function package is servable without touching the CLI. Delivery follows
``AIMA_DELIVERY`` (see `functions.runtime.host`).

The in-process bus of the embedded profile does not cross processes, so on it a single function
is refused with one line saying what to use instead: ``aima serve all`` runs the gateway and every
function in one process (the gateway calls ingest in-process, events flow on the in-process bus),
or ``AIMA_BUS=nats`` lets separate processes share NATS JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import click
import uvicorn

from aima.settings import Settings, load_settings
from aima.telemetry.logging import setup_logging
from aima.telemetry.tracing import setup_tracing
from functions.runtime.deps import Deps
from functions.runtime.host import CannotServe, Host
from functions.runtime.spec import FunctionSpec, discover, load

ALL = "all"


def choose(name: str, settings: Settings) -> list[FunctionSpec]:
    """The specs ``aima serve NAME`` runs; raises `CannotServe` with what to do instead."""
    if name == ALL:
        # functions with an HTTP API of their own first: the gateway calls ingest in-process
        return sorted(discover().values(), key=lambda s: (s.public, s.app is None, s.name))
    spec = load(name)  # imports this function only: a cold start pays for nothing else
    if spec is None:
        known = ", ".join(sorted(discover()))
        raise CannotServe(f"no function {name!r}; this installation has: {known}, {ALL}")
    if settings.bus == "memory":
        raise CannotServe(
            f"{name} alone cannot share events with other processes on the embedded in-process bus: "
            f"run every function in one process with `aima serve {ALL}`, or set AIMA_BUS=nats"
        )
    return [spec]


def front_of(chosen: Sequence[FunctionSpec]) -> FunctionSpec:
    """The function whose app listens on the port: the gateway when it runs, else the only one."""
    return next((s for s in chosen if s.public), chosen[0])


async def serve(host: Host, chosen: Sequence[FunctionSpec], address: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM: the first chosen spec's app on ``port`` (``all``: the gateway's),
    every chosen event function's consumer, the relay; then stop them."""
    apps = {spec.name: host.app(spec) for spec in chosen}
    front = front_of(chosen)
    server = uvicorn.Server(
        uvicorn.Config(apps[front.name], host=address, port=port, log_config=None, access_log=False)
    )
    await host.start()
    try:
        await server.serve()
    finally:
        with contextlib.suppress(Exception):
            await host.stop()


@click.command("serve")
@click.argument("name")
@click.option("--host", "address", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Default: the function's own (api 8080, ingest 8081, probe 8082, retention 8083).",
)
def serve_command(name: str, address: str, port: int | None) -> None:
    """Run the function NAME (or `all` of them in one process) under uvicorn, from AIMA_* settings."""
    from aima.cli import CliError

    settings = load_settings()
    try:
        chosen = choose(name, settings)
    except CannotServe as exc:
        raise CliError(str(exc)) from exc
    setup_logging(settings.log_level, settings.log_json, service=name)
    setup_tracing(settings.service_name)
    front = front_of(chosen)
    host = Host(Deps(settings), chosen)
    asyncio.run(serve(host, chosen, address, front.port if port is None else port))
