"""``aima dev up|down|status``: the cluster profile on one machine, every function its own process.

``aima dev up`` starts each function found by `functions.runtime.spec.discover` as ``aima serve
NAME`` on a port of its own, with ``AIMA_PROFILE=cluster`` against the servers of this machine:

* PostgreSQL: the database ``aima_dev`` (created if missing, migrated);
* NATS JetStream: stream ``AIMA_DEV`` under subjects ``aimadev.*``, each event function a durable
  consumer (``AIMA_DELIVERY=bus``), or, with ``--delivery http``, a trigger process that pulls
  those consumers and POSTs each event to the function's ``POST /``, as a Knative Trigger does;
* Redis database 2 for the cache and locks;
* S3: moto's S3 server, started as a helper (objects in its memory, gone at ``dev down``);
* Milvus: one Milvus Lite server on a TCP port, shared by every function like a Milvus server;
* documents: one litemongo folder, shared by every function (see docs/dev-stack.md for what that
  does and does not guarantee across processes).

Any of these is replaced by a server of the user's by its usual variable (``AIMA_DATABASE_URL``,
``AIMA_S3_ENDPOINT_URL``, ``AIMA_VECTOR_URI``, ``AIMA_DOCUMENTS_URI``, ``AIMA_CACHE_URL``,
``AIMA_NATS_URL``, ``AIMA_NATS_STREAM``, ...): dev up then starts no helper for it.

Everything lives in ``--dir`` (default ``.aima-dev``): ``state.json`` (the processes and the
settings, no secrets), ``env`` (the same settings with secrets, to source in a shell), ``logs/``,
``secret.key``, ``vectors/`` and ``documents/``. `read_state` is the Python view of a running stack.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click
import httpx

from aima.cli.devstack import (
    ENV_FILE,
    LOCK_FILE,
    LOG_DIR,
    DevProcess,
    DevStack,
    DevStackError,
    free_ports,
    is_secret,
    is_setting,
    last_line,
    port_open,
    processes_with_argument,
    read_state,
    redact_url,
    remove_state,
    secret_value,
    spawn,
    stop,
    write_state,
)

if TYPE_CHECKING:
    from functions.runtime.spec import FunctionSpec

__all__ = ["DevProcess", "DevStack", "DevStackError", "down", "read_state", "up"]

DEFAULT_DIR = Path(".aima-dev")
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/aima_dev"
DEFAULT_CACHE_URL = "redis://127.0.0.1:6379/2"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "AIMA_DEV"
DEFAULT_SUBJECT_ROOT = "aimadev"
S3_ACCESS_KEY = "aima-dev"
S3_SECRET_KEY = "aima-dev-secret"  # noqa: S105 - moto accepts any; a real S3 gets AIMA_S3_* instead
VECTORS_FILE = "vectors.db"
TRIGGER = "trigger"

Delivery = Literal["bus", "http"]


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One ``dev up`` or ``dev down`` at a time in a folder."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DevStackError(f"another `aima dev` command is working in {root}") from None
        yield


def _running_stack(root: Path) -> DevStack | None:
    try:
        stack = read_state(root)
    except DevStackError:
        return None
    return stack if stack.running() else None


class _Starter:
    """Starts the stack's processes one by one, recording each in the state file at once, so that
    ``dev down`` (or the cleanup after a failed start) finds every one of them."""

    def __init__(self, root: Path, delivery: Delivery, env: dict[str, str], gateway_url: str) -> None:
        self.root = root
        self.delivery = delivery
        self.env = env
        self.gateway_url = gateway_url
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.processes: list[DevProcess] = []
        self.transient: list[subprocess.Popen[bytes]] = []
        """Children that end by themselves (the vector collections' preparation)."""

    def stack(self) -> DevStack:
        public = {k: redact_url(v) for k, v in self.env.items() if not is_secret(k)}
        return DevStack(
            dir=self.root,
            gateway_url=self.gateway_url,
            delivery=self.delivery,
            started_at=self.started_at,
            processes=tuple(self.processes),
            public_env=public,
            env=dict(self.env),
        )

    def start(
        self,
        name: str,
        kind: Literal["function", "helper"],
        argv: Sequence[str],
        *,
        port: int,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> DevProcess:
        environment = dict(os.environ) | self.env | dict(extra_env or {})
        log = self.root / LOG_DIR / f"{name}.log"
        process = spawn(name, kind, argv, env=environment, port=port, log=log, cwd=cwd or self.root)
        self.processes.append(process)
        write_state(self.stack())
        return process

    def abort(self) -> None:
        for child in self.transient:
            if child.poll() is None:
                child.kill()
                child.wait()
        stop(self.processes, grace=5)
        remove_state(self.root)


def up(
    directory: Path | str = DEFAULT_DIR,
    *,
    delivery: Delivery = "bus",
    timeout: float = 300.0,
    port_base: int | None = None,
    only: Sequence[str] | None = None,
    echo: Callable[[str], object] | None = None,
) -> DevStack:
    """Start the stack in ``directory`` and wait until every function is ready; returns it.

    ``only`` names the functions to start (the gateway always starts); default: every one.
    Raises `DevStackError` (one line) if one is already running there, a server cannot be reached,
    or a function exits or is not ready within ``timeout`` seconds; whatever was started is stopped.
    """
    say = echo or (lambda _line: None)
    if not Path("/proc/self/stat").exists():
        raise DevStackError("aima dev needs Linux (/proc tells which processes it started)")
    root = Path(directory).absolute()
    with _locked(root):
        running = _running_stack(root)
        if running is not None:
            raise DevStackError(
                f"a dev stack already runs in {root} ({len(running.running())} processes, gateway "
                f"{running.gateway_url}); stop it first with `aima dev down --dir {root}`"
            )
        remove_state(root)
        began = time.monotonic()
        specs = _chosen(only)
        names = [spec.name for spec in specs]
        helpers = ["s3", "milvus", TRIGGER]
        if port_base is not None:
            in_order = sorted(names, key=lambda n: (next(s.port for s in specs if s.name == n), n))
            ports = {name: port_base + i for i, name in enumerate([*in_order, *helpers])}
        else:
            ports = dict(zip([*names, *helpers], free_ports(len(names) + len(helpers)), strict=True))
        gateway = next(spec.name for spec in specs if spec.public)
        gateway_url = f"http://127.0.0.1:{ports[gateway]}"
        env = _stack_env(root, delivery, gateway_url, {n: ports[n] for n in names})
        starter = _Starter(root, delivery, env, gateway_url)
        try:
            finish_stores = _prepare_stores(starter, ports)
            python = [sys.executable, "-m", "aima.cli"]

            def start(spec: FunctionSpec) -> None:
                starter.start(
                    spec.name,
                    "function",
                    [*python, "serve", spec.name, "--port", str(ports[spec.name])],
                    port=ports[spec.name],
                    extra_env={"AIMA_SERVICE_NAME": f"aima-{spec.name}"},
                )

            # the functions without vectors import while the stores are finished; those with vectors
            # start once Milvus listens (they connect as they start, and give up after 10 s)
            for spec in specs:
                if "vectors" not in spec.needs:
                    start(spec)
            finish_stores()
            for spec in specs:
                if "vectors" in spec.needs:
                    start(spec)
            functions = [p for p in starter.processes if p.kind == "function"]
            _wait_ready(functions, deadline=began + timeout)
            if delivery == "http":
                urls = {spec.name: f"http://127.0.0.1:{ports[spec.name]}" for spec in specs if spec.consumes}
                trigger = starter.start(
                    TRIGGER,
                    "helper",
                    [*python, "dev", "trigger", "--port", str(ports[TRIGGER])],
                    port=ports[TRIGGER],
                    extra_env={
                        "AIMA_SERVICE_NAME": "aima-trigger",
                        "AIMA_DEV_TRIGGER_URLS": json.dumps(urls),
                    },
                )
                _wait_ready([trigger], deadline=began + timeout)
        except BaseException:
            starter.abort()
            raise
        stack = starter.stack()
        say(
            f"aima dev: {len(functions)} functions ready in {time.monotonic() - began:.1f} s "
            f"(delivery: {delivery}; logs in {root / LOG_DIR})"
        )
        return stack


def _chosen(only: Sequence[str] | None) -> list[FunctionSpec]:
    """The specs to start, the gateway last."""
    from functions.runtime.spec import SpecError, discover

    try:
        found = discover()
    except SpecError as exc:
        raise DevStackError(str(exc)) from exc
    wanted = set(found) if only is None else {name.strip() for name in only if name.strip()}
    unknown = sorted(wanted - set(found))
    if unknown:
        raise DevStackError(
            f"no function {', '.join(unknown)}; this installation has: {', '.join(sorted(found))}"
        )
    wanted |= {spec.name for spec in found.values() if spec.public}
    return sorted((found[name] for name in wanted), key=lambda s: (s.public, s.name))


def _stack_env(root: Path, delivery: Delivery, gateway_url: str, ports: Mapping[str, int]) -> dict[str, str]:
    """The ``AIMA_*`` settings every process of the stack and every client of it shares: the
    settings given to ``dev up`` (models, a server of the user's, ...) over the stack's defaults;
    profile, bus, delivery and the functions' addresses are the stack's own."""
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    defaults = {
        "AIMA_DATA_DIR": str(root / "data"),
        "AIMA_DATABASE_URL": DEFAULT_DATABASE_URL,
        "AIMA_CACHE_URL": DEFAULT_CACHE_URL,
        "AIMA_DOCUMENTS_URI": f"litemongo://{root / 'documents'}",
        "AIMA_NATS_URL": DEFAULT_NATS_URL,
        "AIMA_NATS_STREAM": DEFAULT_STREAM,
        "AIMA_NATS_SUBJECT_ROOT": DEFAULT_SUBJECT_ROOT,
        "AIMA_OBJECT_STORE": "s3",
    }
    given = {name: value for name, value in os.environ.items() if value and is_setting(name)}
    given.pop("AIMA_SERVICE_NAME", None)  # each process gets its own
    env = defaults | given
    if "AIMA_KEY_ENCRYPTION_SECRET" not in env:
        env["AIMA_KEY_ENCRYPTION_SECRET"] = _kept_secret(root)
    return env | {
        "AIMA_PROFILE": "cluster",
        "AIMA_BUS": "nats",
        "AIMA_DELIVERY": delivery,
        "AIMA_FUNCTION_URLS": json.dumps(urls, sort_keys=True),
        "AIMA_PUBLIC_BASE_URL": gateway_url,
        "AIMA_API_URL": gateway_url,  # `aima upload --api`
    }


def _kept_secret(root: Path) -> str:
    """The key encryption secret of this folder's stack, made once (the database keeps the keys it
    encrypts across restarts)."""
    path = root / "secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _prepare_stores(starter: _Starter, ports: Mapping[str, int]) -> Callable[[], None]:
    """Create and migrate the database; start the S3 helper and the preparation of the vector
    collections unless the user named servers of their own. Returns the rest (the bucket, the
    Milvus Lite server), to be done while the functions start: they only need the addresses now."""
    env = starter.env
    _prepare_database(env["AIMA_DATABASE_URL"])
    s3: DevProcess | None = None
    if env["AIMA_OBJECT_STORE"] == "s3" and "AIMA_S3_ENDPOINT_URL" not in env:
        if find_spec("moto") is None:
            raise DevStackError(
                "no S3 server: install moto[server] (the dev extra) or set AIMA_S3_ENDPOINT_URL "
                "and its AIMA_S3_ACCESS_KEY_ID / AIMA_S3_SECRET_ACCESS_KEY"
            )
        port = ports["s3"]
        env |= {
            "AIMA_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AIMA_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AIMA_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        }
        s3 = starter.start(
            "s3",
            "helper",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            port=port,
        )
    milvus: Callable[[], None] | None = None
    if "AIMA_VECTOR_URI" not in env:
        milvus = _start_milvus(starter, ports["milvus"])
    write_state(starter.stack())

    def finish() -> None:
        if s3 is not None:
            _wait_port(s3, deadline=time.monotonic() + 60)
        if env["AIMA_OBJECT_STORE"] == "s3":
            _prepare_bucket(starter)
        if milvus is not None:
            milvus()

    return finish


def _prepare_database(url: str) -> None:
    from aima.storage.databases import ensure_database
    from aima.storage.relational import Database

    try:
        if url.startswith("postgresql"):
            ensure_database(url)
        db = Database(url)
        try:
            db.migrate()
        finally:
            db.dispose()
    except Exception as exc:
        raise DevStackError(f"database {redact_url(url)}: {_first_line(exc)}") from exc


def _prepare_bucket(starter: _Starter) -> None:
    from aima.settings import SettingsError
    from aima.storage.objects_s3 import S3ObjectStore

    try:
        settings = starter.stack().settings()
    except SettingsError as exc:  # a user's AIMA_* value: the functions would refuse it too
        raise DevStackError(str(exc)) from exc
    store = S3ObjectStore(
        endpoint_url=settings.s3_endpoint_url,
        bucket=settings.s3_bucket,
        region=settings.s3_region,
        access_key_id=secret_value(settings.s3_access_key_id),
        secret_access_key=secret_value(settings.s3_secret_access_key),
    )
    try:
        store.ensure_bucket()
    except Exception as exc:
        raise DevStackError(f"S3 at {settings.s3_endpoint_url}: {_first_line(exc)}") from exc


def _start_milvus(starter: _Starter, port: int) -> Callable[[], None]:
    """One Milvus Lite server on a TCP port, shared by every function; its address is in the
    stack's settings at once, the returned call starts it.

    Its collections are created first through Milvus Lite's embedded mode (`aima dev
    prepare-vectors`, a process of its own that ends), so they get the Lite layout (no partition
    key: Lite refuses filters on a collection that has one); the adapter, reached over ``http://``,
    reads the layout of each collection as stored and searches it by ``case_key``.
    """
    found = find_spec("milvus_lite")
    if found is None or not found.submodule_search_locations:
        raise DevStackError("no Milvus: install milvus-lite or set AIMA_VECTOR_URI to a Milvus server")
    lib = Path(next(iter(found.submodule_search_locations))) / "lib"
    folder = starter.root / "vectors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / VECTORS_FILE
    if processes_with_argument(str(path)):
        raise DevStackError(f"{path} is open in another Milvus Lite process; stop that one first")
    log = starter.root / LOG_DIR / "prepare-vectors.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        preparing = subprocess.Popen(
            [sys.executable, "-m", "aima.cli", "dev", "prepare-vectors", str(path)],
            env=dict(os.environ) | starter.env | {"AIMA_VECTOR_URI": str(path)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    starter.transient.append(preparing)
    starter.env["AIMA_VECTOR_URI"] = f"http://127.0.0.1:{port}"

    def start() -> None:
        try:
            code = preparing.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise DevStackError(f"vector collections in {path}: not created within 120 s") from None
        if code != 0:
            raise DevStackError(f"vector collections in {path}: {last_line(log)}")
        deadline = time.monotonic() + 20
        while processes_with_argument(str(path)):  # the embedded server ends after its client
            if time.monotonic() > deadline:
                raise DevStackError(f"the embedded Milvus Lite on {path} did not end")
            time.sleep(0.1)
        library_path = ":".join(filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")]))
        milvus = starter.start(
            "milvus",
            "helper",
            [str(lib / "milvus"), str(path), f"127.0.0.1:{port}", "ERROR"],
            port=port,
            extra_env={"LD_LIBRARY_PATH": library_path},
            cwd=folder,
        )
        _wait_port(milvus, deadline=time.monotonic() + 60)

    return start


def _wait_port(process: DevProcess, *, deadline: float) -> None:
    while not port_open(process.port):
        if not process.alive():
            raise DevStackError(f"{process.name} exited: {last_line(process.log)}")
        if time.monotonic() > deadline:
            raise DevStackError(f"{process.name} did not listen on port {process.port} in time")
        time.sleep(0.1)


def _wait_ready(processes: Sequence[DevProcess], *, deadline: float) -> None:
    """Wait until every one answers ``GET /readyz`` with 200; `DevStackError` naming the first that
    exits, or the ones not ready by ``deadline`` with what their last answer said."""
    pending = {p.name: p for p in processes}
    said: dict[str, str] = {}
    if time.monotonic() > deadline:  # readiness is only known once asked, and that is too late
        raise DevStackError(f"not ready in time: {', '.join(sorted(pending))} not asked before the deadline")
    with httpx.Client(timeout=5) as client:
        while pending:
            for name, process in list(pending.items()):
                try:
                    answer = client.get(f"{process.url}/readyz")
                except httpx.HTTPError as exc:
                    said[name] = type(exc).__name__
                else:
                    if answer.status_code == 200:
                        del pending[name]
                        continue
                    said[name] = _not_ready(answer)
                if not process.alive():
                    raise DevStackError(f"{name} exited: {last_line(process.log)}")
            if pending and time.monotonic() > deadline:
                waiting = "; ".join(f"{n}: {said.get(n, 'no answer')}" for n in sorted(pending))
                raise DevStackError(f"not ready in time: {waiting}")
            if pending:
                time.sleep(0.25)


def _not_ready(answer: httpx.Response) -> str:
    """What a 503 from ``/readyz`` says is down, in a few words."""
    try:
        body = answer.json()
        down = [
            f"{name} {check.get('error') or check.get('status')}"
            for name, check in body.get("components", {}).items()
            if check.get("status") != "up"
        ]
    except (ValueError, AttributeError):
        down = []
    return ", ".join(down)[:200] or f"HTTP {answer.status_code}"


def down(directory: Path | str = DEFAULT_DIR, *, grace: float = 10.0) -> list[DevProcess]:
    """Stop the processes ``aima dev up`` started in ``directory`` (functions first, then the
    helpers) and forget them; returns the ones that were still running. Any other process, even one
    that now has a recorded pid, is left alone. `DevStackError` if there is no stack there."""
    root = Path(directory).absolute()
    with _locked(root):
        stack = read_state(root)
        functions = [p for p in stack.processes if p.kind == "function"]
        helpers = [p for p in stack.processes if p.kind == "helper"]
        trigger = [p for p in helpers if p.name == TRIGGER]
        stopped = stop(trigger, grace=grace)
        stopped += stop(functions, grace=grace)
        stopped += stop([p for p in helpers if p.name != TRIGGER], grace=grace)
        remove_state(root)
        return stopped


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- the commands ----------------------------------------------------------------------------------

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DIR,
    show_default=True,
    help="The stack's folder: state, environment file, logs, data.",
)


def _fail(exc: DevStackError) -> click.ClickException:
    from aima.cli import CliError

    return CliError(str(exc))


@click.group("dev")
def dev() -> None:
    """The cluster profile on this machine: every function its own process (docs/dev-stack.md)."""


@dev.command("up")
@DIR_OPTION
@click.option(
    "--delivery",
    type=click.Choice(["bus", "http"]),
    default="bus",
    show_default=True,
    help="bus: each function pulls its JetStream consumer; http: a trigger POSTs events to each function.",
)
@click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True)
@click.option(
    "--port-base",
    type=click.IntRange(1024, 65000),
    default=None,
    help="Ports from here on, in the order of the functions' own ports, then the helpers'; default: free.",
)
@click.option(
    "--only",
    default=None,
    metavar="NAME,...",
    help="Start only these functions (and the gateway); default: every function.",
)
def up_command(
    directory: Path, delivery: Delivery, timeout: float, port_base: int | None, only: str | None
) -> None:
    """Start every function as its own process, wait until each is ready."""
    chosen = only.split(",") if only is not None else None
    try:
        stack = up(
            directory, delivery=delivery, timeout=timeout, port_base=port_base, only=chosen, echo=click.echo
        )
    except DevStackError as exc:
        raise _fail(exc) from exc
    click.echo(f"gateway: {stack.gateway_url}")
    click.echo(f"client settings: . {stack.dir / ENV_FILE}   (then e.g. `aima user add root --admin`)")
    click.echo(f"stop with: aima dev down --dir {stack.dir}")


@dev.command("down")
@DIR_OPTION
@click.option(
    "--grace", type=click.FloatRange(min=0), default=10.0, show_default=True, help="Seconds before SIGKILL."
)
def down_command(directory: Path, grace: float) -> None:
    """Stop exactly the processes `aima dev up` started in --dir."""
    try:
        stopped = down(directory, grace=grace)
    except DevStackError as exc:
        raise _fail(exc) from exc
    names = ", ".join(p.name for p in stopped) or "none was still running"
    click.echo(f"stopped {len(stopped)} processes: {names}")


@dev.command("status")
@DIR_OPTION
def status_command(directory: Path) -> None:
    """The stack's processes: name, kind, pid, port, running or not. Exit 1 if one is not running."""
    try:
        stack = read_state(directory)
    except DevStackError as exc:
        raise _fail(exc) from exc
    click.echo(f"gateway {stack.gateway_url}  delivery {stack.delivery}  started {stack.started_at}")
    stopped = 0
    for process in stack.processes:
        alive = process.alive()
        stopped += not alive
        state = "running" if alive else "stopped"
        click.echo(f"{process.name}\t{process.kind}\t{process.pid}\t{process.port}\t{state}")
    if stopped:
        from aima.cli import CliError

        raise CliError(f"{stopped} of {len(stack.processes)} processes are not running")


@dev.command("prepare-vectors", hidden=True)
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def prepare_vectors_command(path: Path) -> None:
    """Create the vector collections in a Milvus Lite file (embedded mode), then end."""
    from aima.settings import load_settings
    from aima.storage.factory import configured_dimensions
    from aima.storage.vectors_milvus import MilvusVectorStore

    store = MilvusVectorStore(str(path))
    try:
        store.ensure_collections(configured_dimensions(load_settings()))
    finally:
        store.close()


@dev.command("trigger", hidden=True)
@click.option("--port", type=click.IntRange(1, 65535), required=True)
def trigger_command(port: int) -> None:
    """Deliver each event function's JetStream consumer to its ``POST /`` (``--delivery http``)."""
    import asyncio

    from aima.cli.devtrigger import run_trigger
    from aima.settings import load_settings
    from aima.telemetry.logging import setup_logging

    urls = json.loads(os.environ.get("AIMA_DEV_TRIGGER_URLS", "{}"))
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_json, service=TRIGGER)
    asyncio.run(run_trigger(settings, {str(k): str(v) for k, v in urls.items()}, port))
