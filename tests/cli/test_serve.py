"""`aima serve`: on the embedded profile a lone function is refused (its events would go nowhere), and
`aima serve all` carries an upload through the gateway, ingest and probe in one process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aima.samples import generate
from functions.runtime.spec import discover
from tests.support import free_port, wait_ready

PASSWORD = "correct horse battery staple"


def aima_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}
    return (
        env
        | {"AIMA_PROFILE": "embedded", "AIMA_DATA_DIR": str(data_dir), "AIMA_LOG_LEVEL": "WARNING"}
        | extra
    )


@pytest.mark.parametrize("name", ["probe", "ingest", "api", "retention"])
def test_a_lone_function_on_the_in_process_bus_is_refused_with_one_line(tmp_path: Path, name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aima.cli", "serve", name],
        env=aima_env(tmp_path / "aima"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"aima: {name} alone cannot share events")
    assert "aima serve all" in line
    assert "AIMA_BUS=nats" in line


def test_an_unknown_function_is_named_with_the_known_ones(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aima.cli", "serve", "nope"],
        env=aima_env(tmp_path / "aima"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"aima: no function 'nope'; this installation has: {', '.join(sorted(discover()))}, all"
    )


def test_serve_all_carries_an_upload_through_to_the_probe(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = aima_env(
        tmp_path / "aima", AIMA_BOOTSTRAP_ADMIN_USERNAME="root", AIMA_BOOTSTRAP_ADMIN_PASSWORD=PASSWORD
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "aima.cli", "serve", "all", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(url, server)
        login = httpx.post(f"{url}/api/v1/auth/token", data={"username": "root", "password": PASSWORD})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        case = httpx.post(f"{url}/api/v1/cases", json={"name": "Dock"}, headers=auth)
        assert case.status_code == 201, case.text
        case_id = case.json()["id"]
        png = next(path for path in generate(tmp_path / "samples") if path.suffix == ".png")
        upload = httpx.post(
            f"{url}/api/v1/cases/{case_id}/media",
            content=png.read_bytes(),
            headers={**auth, "X-AIMA-Filename": png.name, "Content-Type": "application/octet-stream"},
            timeout=60,
        )
        assert upload.status_code == 201, upload.text
        media_id = upload.json()["media_id"]
        deadline = time.monotonic() + 60
        while True:  # the probe runs on the in-process bus of the same process
            listed = httpx.get(f"{url}/api/v1/cases/{case_id}/media", headers=auth).json()
            status = {item["id"]: item["status"] for item in listed}[media_id]
            if status != "stored":
                break
            assert time.monotonic() < deadline, "the upload was never probed"
            time.sleep(0.2)
        assert status == "probed"
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr:
            server.stderr.close()
