"""``aima upload`` against ``aima serve all`` (the gateway, and ingest in the same process), run on
loopback over an embedded data folder: parts, duplicates, refusals, and bodies damaged or dropped on
the way and sent again."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aima.access.scope import Scope
from aima.cli.upload import Uploader
from aima.identity.users import UserDirectory
from aima.samples import write_pattern_png, write_tone_wav
from aima.settings import load_settings
from aima.storage.cases import CaseRepository
from aima.storage.factory import Stores
from tests.support import wait_ready

PASSWORD = "correct horse battery staple"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def aima_env(data_dir: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}
    return base | {"AIMA_DATA_DIR": str(data_dir), "AIMA_LOG_LEVEL": "WARNING", **extra}


def aima(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aima.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@dataclass
class Running:
    env: dict[str, str]
    api: str
    case_id: str
    token: str


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Both services, up for the module's tests; a case of alice, and her access token."""
    data_dir = tmp_path_factory.mktemp("serve") / "aima"
    stores = Stores.open(load_settings(profile="embedded", data_dir=data_dir))
    directory = UserDirectory(stores.db)
    tenant = directory.ensure_tenant("acme")
    alice = directory.create_user(tenant, "alice", PASSWORD, "user")
    case_id = str(CaseRepository(stores.db).create(Scope.for_tenant(tenant, "test"), "Dock", alice.id)["id"])
    stores.close()

    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = aima_env(data_dir)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # the embedded profile's in-process bus: the gateway and ingest (called in-process) in one
        process = subprocess.Popen(
            [sys.executable, "-m", "aima.cli", "serve", "all", "--port", str(api_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        wait_ready(api_url, process, path="/healthz")
        login = httpx.post(f"{api_url}/api/v1/auth/token", data={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        yield Running(env, api_url, case_id, login.json()["access_token"])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
            if process.stderr:
                process.stderr.close()


def test_files_uploaded_in_parts_are_listed_with_their_checksums(running: Running, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(17 * MiB))  # three 8 MiB parts
    files = [
        write_tone_wav(tmp_path / "tone.wav", seconds=0.5),
        write_pattern_png(tmp_path / "grid.png"),
        big,
    ]
    env = running.env | {"AIMA_TOKEN": running.token}
    result = aima(env, "upload", running.case_id, *map(str, files), "--api", running.api)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("\t") for line in result.stdout.splitlines())
    assert set(lines) == {str(path) for path in files}

    listed = aima(running.env, "media", "list", running.case_id, "--tenant", "acme")
    assert listed.returncode == 0, listed.stderr
    rows = {row.split("\t")[0]: row.split("\t") for row in listed.stdout.splitlines()}
    for path in files:
        media_id = lines[str(path)]
        assert rows[media_id][4] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert rows[media_id][5] == path.name

    again = aima(env, "upload", running.case_id, str(files[1]), "--api", running.api)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith(f"duplicate of {lines[str(files[1])]}")


def test_a_refused_file_is_reported_and_the_exit_is_non_zero(running: Running, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not media\n")
    png = write_pattern_png(tmp_path / "small.png", width=33, height=17)
    env = running.env | {"AIMA_TOKEN": running.token}
    result = aima(env, "upload", running.case_id, str(text), str(png), "--api", running.api)
    assert result.returncode == 1
    lines = dict(line.split("\t") for line in result.stdout.splitlines())
    assert lines[str(text)].startswith("refused: ")
    assert len(lines[str(png)]) == 36  # a media id
    assert result.stderr.splitlines()[-1] == "aima: 1 of 2 files refused"


def test_a_bad_token_fails_with_one_line(running: Running, tmp_path: Path) -> None:
    png = write_pattern_png(tmp_path / "grid.png")
    env = running.env | {"AIMA_TOKEN": "not-a-token"}
    result = aima(env, "upload", running.case_id, str(png), "--api", running.api)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("aima: HTTP 401")
    assert result.stderr.count("\n") == 1


class Flaky(httpx.HTTPTransport):
    """Damages the second body on the way (one byte flipped) and drops the connection of the third."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and request.headers.get("content-length") != "0":
            self.patches += 1
            if self.patches == 2:
                body = bytearray(request.read())
                body[len(body) // 2] ^= 0xFF
                damaged = httpx.Request(
                    request.method, request.url, headers=request.headers, content=bytes(body)
                )
                return super().handle_request(damaged)
            if self.patches == 3:
                raise httpx.WriteError("connection reset by peer")
        return super().handle_request(request)


def test_a_damaged_body_and_a_dropped_connection_are_sent_again(running: Running, tmp_path: Path) -> None:
    path = tmp_path / "evidence.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(11 * MiB))
    flaky = Flaky()
    uploader = Uploader(running.api, running.token, chunk=4 * MiB, transport=flaky)
    seen: list[int] = []
    try:
        result = uploader.upload(running.case_id, path, seen.append)
    finally:
        uploader.close()
    assert flaky.patches >= 5  # three bodies, one damaged (refused: 460) and one dropped, both sent again
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.duplicate_of is None
    assert seen[-1] == path.stat().st_size
    listed = aima(running.env, "media", "list", running.case_id, "--tenant", "acme")
    row = next(line.split("\t") for line in listed.stdout.splitlines() if line.startswith(result.media_id))
    assert (row[4], row[5]) == (result.sha256, "evidence.png")
