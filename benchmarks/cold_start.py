"""Cold start of a function: ``aima serve probe`` from exec to a 200 on ``/readyz``, without models.

Knative scales functions to zero, so every first event after a quiet spell waits for this. The
process runs on embedded stores that exist already (as a replica starts against a database that
``aima migrate`` brought up to date) and on NATS JetStream (a lone function needs a shared bus),
with its own stream. The very first start on an empty folder, migrations included, is printed
too. The baseline, measured in the same run and alternating with it,
is a bare uvicorn app with one route started the same way: the ratio shows what AIMA adds on top of
Python, FastAPI and uvicorn themselves. Each figure is the median of ``ROUNDS`` starts.

The last line is one JSON object with the checks; the exit code is 0 either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import nats

ROOT = Path(__file__).resolve().parents[1]
NATS_URL = "nats://127.0.0.1:4222"
ROUNDS = 5
TARGET_S = 2.0
RATIO_TARGET = 3.0
"""What AIMA may add to a bare FastAPI app's start: stores opened and migrated, the bus connected."""
BARE = """
import uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/readyz")
def ready() -> dict[str, str]:
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_to_ready(command: list[str], env: dict[str, str], port: int) -> float:
    """Seconds from exec until ``/readyz`` answers 200; the process is stopped afterwards."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(timeout=0.5) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        return time.perf_counter() - started
                if process.poll() is not None:
                    error = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"{command[:3]} exited: {error[-2000:]}")
                if time.perf_counter() - started > 60:
                    raise RuntimeError(f"{command[:3]} not ready after 60 s")
                time.sleep(0.01)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


def probe_start(data_dir: Path, stream: str) -> float:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | {
        "AIMA_PROFILE": "embedded",
        "AIMA_DATA_DIR": str(data_dir),
        "AIMA_BUS": "nats",
        "AIMA_NATS_URL": NATS_URL,
        "AIMA_NATS_STREAM": stream,
        "AIMA_NATS_SUBJECT_ROOT": stream.lower(),
        "AIMA_LOG_LEVEL": "WARNING",
    }
    aima = str(Path(sys.executable).parent / "aima")
    return time_to_ready([aima, "serve", "probe", "--port", str(port)], env, port)


def bare_start() -> float:
    port = free_port()
    return time_to_ready([sys.executable, "-c", BARE.replace("{port}", str(port))], dict(os.environ), port)


async def delete_streams(*names: str) -> None:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    for name in names:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await nc.close()


def main() -> None:
    stream = f"COLD_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="aima-cold-"))
    probe: list[float] = []
    bare: list[float] = []
    try:
        data_dir = work / "aima"
        first = probe_start(data_dir, stream)  # an empty folder: stores created, schema migrated
        print(f"first start on an empty folder (migrations included): {first:.2f} s", flush=True)
        for round_ in range(ROUNDS):
            pair = [("probe", lambda: probe_start(data_dir, stream)), ("bare", bare_start)]
            for name, start in pair if round_ % 2 == 0 else reversed(pair):
                (probe if name == "probe" else bare).append(start())
            print(f"round {round_ + 1}: probe {probe[-1]:.2f} s, bare uvicorn {bare[-1]:.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        asyncio.run(delete_streams(stream, f"{stream}_DLQ"))
    probe_s, bare_s = statistics.median(probe), statistics.median(bare)
    ratio = probe_s / bare_s
    print(
        f"median: aima serve probe {probe_s:.2f} s to ready; bare uvicorn app {bare_s:.2f} s ({ratio:.2f}x)"
    )
    checks = [
        {"name": "probe_exec_to_ready_s", "value": round(probe_s, 3), "op": "<=", "target": TARGET_S},
        {"name": "probe_vs_bare_uvicorn_ratio", "value": round(ratio, 2), "op": "<=", "target": RATIO_TARGET},
    ]
    for check in checks:
        check["ok"] = check["value"] <= check["target"]
    print(json.dumps({"benchmark": "cold_start", "checks": checks}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
