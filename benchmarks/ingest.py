"""Ingest throughput: a 1 GiB upload through the ingest HTTP app vs a plain file copy on the same disk.

Run ``python benchmarks/ingest.py``. The ingest app runs in a subprocess (uvicorn on loopback, the
embedded profile: SQLite, a local object folder, litemongo, the in-process bus) so that its peak
RSS (``VmHWM``) can be read. The client streams the file from disk with ``sendfile`` as one
``POST /cases/{id}/media`` with a delegation token; the time runs until the 201 arrives, so it includes
sniffing, SHA-256, writing and fsyncing the object and registering the media row. The baseline is
``shutil.copyfile`` of the same file on the same disk (no fsync, as specified). For context it also
times copy + fsync, the loopback socket alone and the object store alone (the ceilings an HTTP
upload into the store is under). Rounds are interleaved and the median of ``ROUNDS`` counts. Every
generated file is removed at the end.

Printed readably, then as the last line one JSON object with the checks; the exit code is 0 either
way. `upload_checks` is the reusable part (other measurements of this benchmark combine with it).
Set ``AIMA_BENCH_DIR`` to put the temporary files on another disk, ``AIMA_BENCH_INGEST_MIB`` to
change the file size.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MiB = 1 << 20
SIZE = int(os.environ.get("AIMA_BENCH_INGEST_MIB", "1024")) * MiB
ROUNDS = 3
RATIO_TARGET = 0.7
RSS_TARGET_MIB = 250
# an ISO BMFF header (brand isom) so that the sniffer takes the file for an MP4; the rest is random
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41"


def make_source(path: Path, size: int) -> None:
    """``size`` bytes: an MP4 header, then random blocks (incompressible)."""
    block = random.Random(42).randbytes(16 * MiB)
    with path.open("wb") as out:
        out.write(MP4_HEAD)
        written = len(MP4_HEAD)
        while written < size:
            piece = block[: size - written]
            out.write(piece)
            written += len(piece)
        out.flush()
        os.fsync(out.fileno())


def timed_copy(source: Path, target: Path, *, fsync: bool) -> float:
    """Seconds to copy ``source`` to ``target`` (then fsync it, if asked); the copy is removed."""
    started = time.perf_counter()
    shutil.copyfile(source, target)
    if fsync:
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


# --- the server subprocess ------------------------------------------------------------------------


def serve(data_dir: Path, ready_file: Path, rounds: int) -> None:
    """Set up an embedded AIMA under ``data_dir`` and serve the ingest app until terminated."""
    import uvicorn

    from aima.access.scope import Scope
    from aima.identity.tokens import TokenService
    from aima.identity.users import UserDirectory
    from aima.settings import load_settings
    from aima.storage.cases import CaseRepository
    from aima.storage.relational import Database
    from aima.telemetry.health import HealthRegistry
    from events.bus_memory import MemoryBus
    from functions.ingest.app import build_core, create_app

    settings = load_settings(profile="embedded", data_dir=data_dir, log_level="WARNING")
    db = Database.from_settings(settings)
    db.migrate()
    directory = UserDirectory(db)
    tenant_id = directory.ensure_tenant("bench")
    owner = directory.create_user(tenant_id, "bench-owner", None, "user")
    cases = CaseRepository(db)
    case_ids = [
        str(cases.create(Scope.for_tenant(tenant_id, owner.id), f"bench {i}", owner.id)["id"])
        for i in range(rounds)
    ]
    tokens = TokenService.from_settings(settings, db, directory)
    bus = MemoryBus()
    app = create_app(
        build_core(settings, bus_publish=bus.publish), tokens=tokens, health=HealthRegistry(timeout=2.0)
    )

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    info = {
        "port": sock.getsockname()[1],
        "data_dir": str(data_dir),
        "tenant_id": tenant_id,
        "actor": owner.id,
        "case_ids": case_ids,
    }
    ready_file.write_text(json.dumps(info))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])


@contextlib.contextmanager
def ingest_server(work: Path, rounds: int) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """The ingest app in a subprocess, ready to serve; yields the process and its connection details."""
    ready = work / "ready.json"
    command = [sys.executable, __file__, "--serve", str(work / "aima"), str(ready), str(rounds)]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the ingest server did not start")
            time.sleep(0.1)
        info: dict[str, Any] = json.loads(ready.read_text())
        while True:
            try:
                status, _ = http_request(info["port"], b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the ingest server does not answer /healthz")
            time.sleep(0.1)
        yield process, info
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_request(port: int, head: bytes, body: Path | None = None) -> tuple[int, bytes]:
    """Send one request (``body`` streamed from disk with sendfile) and read the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(head)
        if body is not None:
            with body.open("rb") as source:
                sock.sendfile(source)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
            header, _, rest = response.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in header.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(rest) >= length:
                break
    status = int(response.split(b" ", 2)[1])
    return status, response.partition(b"\r\n\r\n")[2]


def delegation(info: dict[str, Any], case_id: str) -> str:
    """A delegation for an upload into ``case_id``, minted as the gateway mints one (valid 90 s)."""
    from aima.identity.tokens import TokenService
    from aima.identity.users import UserDirectory
    from aima.settings import load_settings
    from aima.storage.relational import Database

    settings = load_settings(profile="embedded", data_dir=Path(info["data_dir"]), log_level="WARNING")
    db = Database.from_settings(settings)
    try:
        tokens = TokenService.from_settings(settings, db, UserDirectory(db))
        return tokens.issue_delegation(
            audience="aima-function:ingest", tenant_id=info["tenant_id"], actor=info["actor"], case_id=case_id
        )
    finally:
        db.dispose()


def timed_upload(info: dict[str, Any], case_id: str, source: Path) -> float:
    """Seconds from the first byte sent to the 201 of ``POST /cases/{case_id}/media``."""
    head = (
        f"POST /cases/{case_id}/media HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {delegation(info, case_id)}\r\n"
        f"X-AIMA-Request-ID: bench-{uuid.uuid4().hex[:8]}\r\n"
        "X-AIMA-Filename: bench.mp4\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {source.stat().st_size}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    status, body = http_request(info["port"], head, source)
    elapsed = time.perf_counter() - started
    if status != 201:
        raise RuntimeError(f"upload answered {status}: {body[:500]!r}")
    if json.loads(body)["size"] != source.stat().st_size:
        raise RuntimeError("the stored size differs from the file's")
    return elapsed


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field in bytes (e.g. VmHWM, the peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


# --- the checks -----------------------------------------------------------------------------------


def check(name: str, value: float, op: str, target: float) -> dict[str, Any]:
    ok = value >= target if op == ">=" else value < target
    return {"name": name, "value": round(value, 3), "op": op, "target": target, "ok": ok}


def loopback_seconds(source: Path) -> float:
    """Seconds to move ``source`` over a loopback TCP socket (sendfile -> recv_into): no HTTP, no disk
    writes; what any upload over loopback is bounded by on this machine."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.perf_counter()
        sender = threading.Thread(target=_send_file, args=(port, source))
        sender.start()
        connection, _ = listener.accept()
        buffer = bytearray(MiB)
        with connection:
            while connection.recv_into(buffer):
                pass
        sender.join()
        return time.perf_counter() - started


def _send_file(port: int, source: Path) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock, source.open("rb") as data:
        sock.sendfile(data)


def store_seconds(source: Path, root: Path) -> float:
    """Seconds for `LocalObjectStore.put` of ``source`` read in 1 MiB blocks (SHA-256, write, fsync):
    the object store alone, no HTTP."""
    from aima.storage.objects_local import LocalObjectStore

    store = LocalObjectStore(root, presign_secret=b"bench", public_base_url="http://127.0.0.1")
    started = time.perf_counter()
    with source.open("rb") as data:
        store.put("bench/original", data)
    elapsed = time.perf_counter() - started
    store.delete("bench/original")
    return elapsed


def upload_checks() -> list[dict[str, Any]]:
    """Measure upload vs copy throughput and the server's peak RSS; print them; return the checks."""
    base = os.environ.get("AIMA_BENCH_DIR")
    with tempfile.TemporaryDirectory(prefix="aima-bench-ingest-", dir=base) as tmp:
        work = Path(tmp)
        source = work / "source.bin"
        make_source(source, SIZE)
        mb = SIZE / 1e6
        copies: list[float] = []
        synced: list[float] = []
        loopback: list[float] = []
        stored: list[float] = []
        uploads: list[float] = []
        with ingest_server(work, ROUNDS) as (process, info):
            idle_rss = proc_status(process.pid, "VmRSS")
            for case_id in info["case_ids"]:  # interleaved rounds: every side sees the same conditions
                copies.append(timed_copy(source, work / "copy.bin", fsync=False))
                synced.append(timed_copy(source, work / "copy.bin", fsync=True))
                loopback.append(loopback_seconds(source))
                stored.append(store_seconds(source, work / "store"))
                uploads.append(timed_upload(info, case_id, source))
            peak_rss = proc_status(process.pid, "VmHWM")
    copy_mbps, synced_mbps, upload_mbps = (
        mb / statistics.median(times) for times in (copies, synced, uploads)
    )
    loopback_mbps, store_mbps = mb / statistics.median(loopback), mb / statistics.median(stored)
    ratio = upload_mbps / copy_mbps
    print(f"ingest upload of {SIZE / MiB:.0f} MiB, median of {ROUNDS} interleaved rounds")
    print(f"  shutil.copyfile          {copy_mbps:9.1f} MB/s")
    print(f"  copyfile + fsync         {synced_mbps:9.1f} MB/s  (context: the store fsyncs every object)")
    print(f"  ingest HTTP upload       {upload_mbps:9.1f} MB/s  ratio {ratio:.2f} (target >= {RATIO_TARGET})")
    print(f"  ratio vs copy + fsync    {upload_mbps / synced_mbps:9.2f}")
    print("  context: the ceilings an HTTP upload into the store is under on this machine")
    print(f"    loopback TCP alone     {loopback_mbps:9.1f} MB/s  (sendfile -> recv_into, no HTTP, no disk)")
    print(f"    object store alone     {store_mbps:9.1f} MB/s  (LocalObjectStore.put: SHA-256, write, fsync)")
    print(f"    upload / store alone   {upload_mbps / store_mbps:9.2f}")
    print(f"    CPUs                   {os.cpu_count():9d}")
    print(f"  server RSS idle          {idle_rss / MiB:9.1f} MiB")
    print(f"  server peak RSS (VmHWM)  {peak_rss / MiB:9.1f} MiB  (target < {RSS_TARGET_MIB} MiB)")
    return [
        check("upload_vs_copy_ratio", ratio, ">=", RATIO_TARGET),
        check("server_peak_rss_mib", peak_rss / MiB, "<", RSS_TARGET_MIB),
    ]


def frame_checks() -> list[dict[str, Any]]:
    """Frame extraction against a bare ffmpeg decode (benchmarks/_frame_sampling.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _frame_sampling import frame_checks as measure

    return list(measure())


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return
    checks = upload_checks() + frame_checks()
    print(json.dumps({"benchmark": "ingest", "checks": checks}))


if __name__ == "__main__":
    main()
