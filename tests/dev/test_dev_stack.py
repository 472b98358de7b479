"""`aima dev up|down|status`: every function its own process on the cluster profile (PostgreSQL, NATS
JetStream, Redis, moto's S3 server, a Milvus Lite server, a shared litemongo folder).

One stack is started for the whole module (about 30-50 s on two cores) and stopped by its last
test; each stack gets a database, a JetStream stream and a Redis database of its own, removed
afterwards. On it, `aima analyze --profile cluster` gives the report the embedded profile gives."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import nats
import pytest
import redis

from aima.access.scope import Scope
from aima.cli.dev import DevStack, read_state
from aima.cli.devstack import DevProcess, start_time_of, write_state
from aima.identity.users import UserDirectory
from aima.reports.model import CaseReport
from aima.samples import CONVERSATION, write_notice_png, write_pattern_png, write_script_wav
from aima.samples_faces import write_face_samples
from aima.storage.cases import CaseRepository
from aima.storage.databases import drop_database
from aima.storage.factory import Stores
from functions.runtime.spec import discover
from tests.conftest import NATS_URL, PG_ADMIN_DSN
from tests.support import comparable, run_aima

pytestmark = pytest.mark.services

PASSWORD = "correct horse battery staple"
REDIS_DB = 8  # the xdist workers take 15 downwards (tests/conftest.py)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    """A running stack, the environment it was started with, and a user with a case in it."""

    stack: DevStack
    env: dict[str, str]
    token: str
    case_id: str


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | {"AIMA_LOG_LEVEL": "WARNING"}


def stack_env(tag: str) -> dict[str, str]:
    """Stores of the stack's own: a database, a stream and subjects, a Redis database."""
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].removeprefix("postgresql://")
    return base_env() | {
        "AIMA_DATABASE_URL": f"postgresql+psycopg://{base}/aima_dev_{tag}",
        "AIMA_NATS_URL": NATS_URL,
        "AIMA_NATS_STREAM": f"AIMA_DEV_{tag.upper()}",
        "AIMA_NATS_SUBJECT_ROOT": f"aimadev{tag}",
        "AIMA_CACHE_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
    }


def aima(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aima.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def _delete_streams(names: list[str]) -> None:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    for name in names:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await nc.close()


@contextlib.contextmanager
def started(folder: Path, *options: str) -> Iterator[tuple[DevStack, dict[str, str]]]:
    """``aima dev up`` in ``folder``; afterwards ``dev down`` (if still up) and the stores removed."""
    env = stack_env(uuid.uuid4().hex[:8])
    try:
        began = time.monotonic()
        result = aima(env, "dev", "up", "--dir", str(folder), *options, timeout=290)
        assert result.returncode == 0, result.stderr
        print(
            f"dev up {' '.join(options)}: {time.monotonic() - began:.1f} s; {result.stdout.splitlines()[0]}"
        )
        yield read_state(folder), env
    finally:
        if (folder / "state.json").exists():
            aima(env, "dev", "down", "--dir", str(folder), "--grace", "5")
        drop_database(env["AIMA_DATABASE_URL"])
        stream = env["AIMA_NATS_STREAM"]
        asyncio.run(_delete_streams([stream, f"{stream}_DLQ"]))
        client = redis.Redis(port=6379, db=REDIS_DB)
        client.flushdb()
        client.close()


def sign_in(stack: DevStack) -> tuple[str, str]:
    """A user and a case of theirs, made through the stack's stores; their token from the gateway."""
    stores = Stores.open(stack.settings(), migrate=False)
    try:
        directory = UserDirectory(stores.db)
        tenant = directory.ensure_tenant("acme")
        alice = directory.create_user(tenant, "alice", PASSWORD, "user")
        case = CaseRepository(stores.db).create(Scope.for_tenant(tenant, "test"), "Dock", alice.id)
    finally:
        stores.close()
    login = httpx.post(
        f"{stack.gateway_url}/api/v1/auth/token", data={"username": "alice", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    return login.json()["access_token"], str(case["id"])


def upload_until_probed(stack: DevStack, token: str, case_id: str, folder: Path) -> str:
    """Upload a PNG through the gateway; wait until its status leaves ``stored``; return it."""
    auth = {"Authorization": f"Bearer {token}"}
    png = write_pattern_png(folder / f"{uuid.uuid4().hex[:6]}.png", width=64 + len(os.listdir(folder)))
    upload = httpx.post(
        f"{stack.gateway_url}/api/v1/cases/{case_id}/media",
        content=png.read_bytes(),
        headers={**auth, "X-AIMA-Filename": png.name, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    media_id = upload.json()["media_id"]
    deadline = time.monotonic() + 60
    while True:
        listed = httpx.get(f"{stack.gateway_url}/api/v1/cases/{case_id}/media", headers=auth).json()
        status = str({item["id"]: item["status"] for item in listed}[media_id])
        if status != "stored":
            return status
        assert time.monotonic() < deadline, "the upload was never probed"
        time.sleep(0.2)


def handled(process: DevProcess, outcome: str = "ok") -> float:
    """How many events the function's own process handled with ``outcome`` (its /metrics)."""
    text = httpx.get(f"{process.url}/metrics").text
    pattern = rf'^aima_events_handled_total\{{consumer="{process.name}",outcome="{outcome}",[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, flags=re.MULTILINE))


def soon(check: Callable[[], bool], timeout: float = 10) -> bool:
    """Whether ``check()`` becomes true within ``timeout`` seconds (a function counts an event once
    it has answered for it, a moment after its result is stored)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("dev") / "stack"
    with started(folder) as (stack, env):
        token, case_id = sign_in(stack)
        yield Stack(stack, env, token, case_id)


def test_every_function_runs_as_its_own_ready_process(running: Stack) -> None:
    stack = running.stack
    functions = {p.name: p for p in stack.processes if p.kind == "function"}
    assert set(functions) == set(discover())
    assert {p.name for p in stack.processes if p.kind == "helper"} == {"s3", "milvus"}
    assert (
        len({p.pid for p in stack.processes})
        == len({p.port for p in stack.processes})
        == len(stack.processes)
    )
    for process in stack.processes:
        assert process.alive(), process.name
    for name, process in functions.items():
        assert process.argv[-4:] == ("serve", name, "--port", str(process.port))
        assert httpx.get(f"{process.url}/readyz").status_code == 200, name
    assert stack.gateway_url == functions["api"].url

    status = aima(running.env, "dev", "status", "--dir", str(stack.dir))
    assert status.returncode == 0, status.stderr
    assert all(line.endswith("running") for line in status.stdout.splitlines()[1:])
    assert len(status.stdout.splitlines()) == len(stack.processes) + 1


def test_clients_get_every_setting_and_only_the_environment_file_holds_secrets(running: Stack) -> None:
    stack = running.stack
    settings = stack.settings()
    assert settings.profile == "cluster"
    assert (settings.bus, settings.delivery) == ("nats", "bus")
    assert settings.database_url == running.env["AIMA_DATABASE_URL"]
    assert settings.vector_uri == stack.process("milvus").url
    assert settings.s3_endpoint_url == stack.process("s3").url
    assert settings.function_urls["ingest"] == stack.function_url("ingest")
    assert settings.key_encryption_secret is not None
    secret = settings.key_encryption_secret.get_secret_value()
    assert secret not in (stack.dir / "state.json").read_text()
    assert "AIMA_KEY_ENCRYPTION_SECRET" not in stack.public_env
    assert (stack.dir / "env").stat().st_mode & 0o777 == 0o600
    sourced = subprocess.run(
        ["sh", "-c", f". {stack.dir / 'env'} && echo $AIMA_KEY_ENCRYPTION_SECRET $AIMA_API_URL"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout.split() == [secret, stack.gateway_url]


def test_an_upload_through_the_gateway_is_probed_by_the_probe_process(running: Stack, tmp_path: Path) -> None:
    probe = running.stack.process("probe")
    before = handled(probe)
    assert upload_until_probed(running.stack, running.token, running.case_id, tmp_path) == "probed"
    assert soon(lambda: handled(probe) == before + 1)  # in probe's own process, from its consumer
    # a client process with the stack's settings reads the same stores
    media = aima(running.stack.client_env(), "media", "list", running.case_id, "--tenant", "acme")
    assert media.returncode == 0, media.stderr
    assert [line.split("\t")[1] for line in media.stdout.splitlines()] == ["probed"]


def equal_media(folder: Path) -> list[Path]:
    folder.mkdir()
    conversation = folder / "conversation.wav"
    write_script_wav(conversation, CONVERSATION)
    notice = write_notice_png(folder / "notice.png")
    [people] = [p for p in write_face_samples(folder) if p.name == "people.jpg"]
    return [conversation, notice, people]


def test_embedded_and_dev_up_give_equal_reports(running: Stack, tmp_path: Path) -> None:
    """The same media through the embedded profile (every step in the `aima analyze` process, SQLite,
    a local folder, litemongo, Milvus Lite, the in-process bus) and through this stack (`aima analyze
    --profile cluster`: PostgreSQL, S3, NATS JetStream, one process per function) give equal reports,
    ids, times and signatures aside."""
    files = [str(p) for p in equal_media(tmp_path / "media")]
    embedded = run_aima("analyze", *files, "--case", "Equal", "--out", "embedded", cwd=tmp_path, timeout=300)
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    first = CaseReport.model_validate_json((tmp_path / "embedded" / "report.json").read_bytes())

    client = running.stack.client_env({k: v for k, v in running.env.items() if k.startswith("AIMA_")})
    cluster = run_aima(
        "analyze",
        "--profile",
        "cluster",
        *files,
        "--case",
        "Equal",
        "--out",
        "cluster",
        cwd=tmp_path,
        env=client,
        timeout=400,
    )
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    assert "cluster profile: the running functions" in cluster.stdout
    second = CaseReport.model_validate_json((tmp_path / "cluster" / "report.json").read_bytes())

    assert len(first.files) == 3
    assert first.speakers
    assert any(e.kind == "text" for e in first.timeline)
    left, right = (json.dumps(comparable(r), indent=1, sort_keys=True).splitlines() for r in (first, second))
    assert left == right, "\n".join(
        difflib.unified_diff(left, right, "embedded", "cluster", n=2, lineterm="")
    )


def test_a_second_up_in_the_same_folder_is_refused_with_one_line(running: Stack) -> None:
    again = aima(running.env, "dev", "up", "--dir", str(running.stack.dir))
    assert again.returncode == 1
    [line] = again.stderr.strip().splitlines()
    assert line.startswith(f"aima: a dev stack already runs in {running.stack.dir}")
    assert read_state(running.stack.dir).processes == running.stack.processes
    assert all(p.alive() for p in running.stack.processes)


def test_down_stops_exactly_the_processes_it_started(running: Stack) -> None:
    stack = running.stack
    # an unrelated process that now has a pid the state file records (a pid reused since)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        started_at = start_time_of(bystander.pid)
        assert started_at is not None
        ghost = DevProcess("ghost", "helper", bystander.pid, started_at - 1, 1, "/dev/null", ("sleep",))
        write_state(replace(stack, processes=(*stack.processes, ghost)))

        down = aima(running.env, "dev", "down", "--dir", str(stack.dir), "--grace", "10")
        assert down.returncode == 0, down.stderr
        assert down.stdout.startswith(f"stopped {len(stack.processes)} processes: ")
        assert not any(p.alive() for p in stack.processes)
        assert bystander.poll() is None, "an unrelated process was signalled"
        assert not (stack.dir / "state.json").exists()

        gone = aima(running.env, "dev", "status", "--dir", str(stack.dir))
        assert gone.returncode == 1
        assert gone.stderr.startswith(f"aima: no dev stack in {stack.dir}")
    finally:
        bystander.kill()
        bystander.wait()


def test_http_delivery_posts_events_to_each_function_as_a_trigger_does(tmp_path: Path) -> None:
    with started(tmp_path / "stack", "--delivery", "http", "--only", "ingest,probe") as (stack, _env):
        assert {p.name for p in stack.processes} == {"api", "ingest", "probe", "s3", "milvus", "trigger"}
        token, case_id = sign_in(stack)
        probe = stack.process("probe")
        assert upload_until_probed(stack, token, case_id, tmp_path) == "probed"
        posted = 'aima_http_requests_total{method="POST",route="/",service="probe",status="202"} 1.0'
        assert soon(lambda: posted in httpx.get(f"{probe.url}/metrics").text)
        assert handled(probe) == 1


def test_an_unknown_function_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = stack_env("unused")
    result = aima(env, "dev", "up", "--dir", str(tmp_path / "stack"), "--only", "probe,nope")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("aima: no function nope; this installation has: ")
    assert not (tmp_path / "stack" / "state.json").exists()


def test_a_stack_not_ready_in_time_is_stopped_again_with_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "stack"
    env = stack_env(uuid.uuid4().hex[:8])
    try:
        result = aima(env, "dev", "up", "--dir", str(folder), "--only", "probe", "--timeout", "0")
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("aima: not ready in time: ")
        assert not (folder / "state.json").exists()
        # every process it started ran in the folder; none is left
        assert soon(lambda: not any(working_in(pid, folder) for pid in os.listdir("/proc") if pid.isdigit()))
    finally:
        if (folder / "state.json").exists():  # it came up after all: leave no process behind
            aima(env, "dev", "down", "--dir", str(folder), "--grace", "5")
        drop_database(env["AIMA_DATABASE_URL"])
        asyncio.run(_delete_streams([env["AIMA_NATS_STREAM"], f"{env['AIMA_NATS_STREAM']}_DLQ"]))


def working_in(pid: str, folder: Path) -> bool:
    """Whether process ``pid`` runs (not a zombie) with its working directory in ``folder``."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return cwd.is_relative_to(folder) and start_time_of(int(pid)) is not None
