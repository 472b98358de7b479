"""The price of authentication, authorisation and audit: ``GET /api/v1/cases/{id}`` with and without.

Run ``python benchmarks/auth.py``. The real gateway runs twice, each in a server subprocess of its
own (uvicorn, one worker, on loopback): ``create_app(services)`` (token check, rate limit, policy,
scope guard, one audit record committed per request) and ``create_app(services, auth=False)`` (the
baseline: every request acts as the embedded local owner, no token, no audit). Both use the embedded
profile on one temporary SQLite database (WAL), set up here first: an admin, a member user (viewer)
and a case, in the local owner's tenant so both variants read the same row. The authenticated
variant reads as the member, so its membership lookup and case-confined scope are on the path.

The load generator (a minimal keep-alive HTTP/1.1 client on asyncio streams, ``CONCURRENCY``
requests in flight, ``REQUESTS`` per round after a warm-up) runs in this process and shares the
machine's cores with the server under test; it spends about 0.05 ms of CPU a request, so the server
gets the cores (httpx spent about 1.5 ms, as much as the server itself). Only one server is loaded at
a time. Each round measures both variants back to back (alternating which goes first), so the
ratios are taken per round, between measurements seconds apart, and the median of ``ROUNDS`` rounds
counts: this machine's speed drifts by a third over minutes. The servers' CPU time per request is
printed too. Printed readably, then as the last line one JSON object with the checks; the exit code
is 0 either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONCURRENCY = int(os.environ.get("AIMA_BENCH_CONCURRENCY", "32"))
REQUESTS = int(os.environ.get("AIMA_BENCH_REQUESTS", "3000"))
WARMUP = 300
ROUNDS = 5
P50_RATIO_TARGET = 1.3
THROUGHPUT_TARGET = 0.6
READS_TARGET = 500
VARIANTS = ("auth", "noauth")


def settings_for(data_dir: Path) -> Any:
    from aima.settings import load_settings

    return load_settings(
        profile="embedded",
        data_dir=data_dir,
        log_level="WARNING",
        rate_limit_per_user=10**9,
        rate_limit_per_address=10**9,
    )


def prepare(data_dir: Path) -> dict[str, str]:
    """Migrate the database and create the admin, the member, the case and the member's token."""
    from aima.access.scope import Scope
    from functions.api.services import ApiServices

    services = ApiServices.open(settings_for(data_dir))
    try:
        directory = services.directory
        tenant = directory.ensure_local_owner().tenant_id
        admin = directory.create_user(tenant, "bench-admin", None, "admin")
        member = directory.create_user(tenant, "bench-member", None, "user")
        scope = Scope.for_tenant(tenant, admin.id)
        case_id = str(services.cases.create(scope, "Benchmark case", admin.id)["id"])
        services.cases.share(scope, case_id, member.id, "viewer")
        token = services.tokens.issue_access(directory.principal(member.id))
        return {"case_id": case_id, "token": token}
    finally:
        asyncio.run(services.close())


# --- the server subprocess ------------------------------------------------------------------------


def serve(data_dir: Path, variant: str, ready_file: Path) -> None:
    """Serve the gateway (``variant`` auth or noauth) on a free loopback port until terminated."""
    import uvicorn

    from functions.api.app import create_app
    from functions.api.services import ApiServices

    services = ApiServices.open(settings_for(data_dir))
    app = create_app(services, auth=variant == "auth")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    ready_file.write_text(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid()}))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", workers=1)
    uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def server(data_dir: Path, variant: str) -> Iterator[tuple[int, int]]:
    """The gateway in a subprocess, answering; yields its port and process id."""
    ready = data_dir.parent / f"ready-{variant}.json"
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir), variant, str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {variant} server did not start")
            time.sleep(0.1)
        announced = json.loads(ready.read_text())
        port = int(announced["port"])
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port, int(announced["pid"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the load generator ---------------------------------------------------------------------------


async def load(port: int, path: str, headers: dict[str, str], count: int) -> tuple[list[float], float]:
    """``count`` GETs of ``path`` over ``CONCURRENCY`` keep-alive connections: each latency (s) and the
    wall time. A minimal HTTP/1.1 client on asyncio streams, so the load generator leaves the cores to
    the server under test (a general client such as httpx spends more CPU per request than the server)."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    ).encode()
    latencies: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = _status_and_length(head)
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status} {body.decode(errors='replace')}")
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies, time.perf_counter() - started


def _status_and_length(head: bytes) -> tuple[int, int]:
    """The status code and ``Content-Length`` of a response head (the gateway always sends one)."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise RuntimeError(f"response without Content-Length: {lines[0]!r}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure() -> list[dict[str, dict[str, float]]]:
    """Per round and variant: p50 latency (ms), throughput (requests/s) and server CPU ms a request."""
    with tempfile.TemporaryDirectory(prefix="aima-bench-auth-") as work:
        data_dir = Path(work) / "aima"
        setup = prepare(data_dir)
        path = f"/api/v1/cases/{setup['case_id']}"
        headers = {"auth": {"Authorization": f"Bearer {setup['token']}"}, "noauth": {}}
        rounds: list[dict[str, dict[str, float]]] = []
        with server(data_dir, "auth") as auth, server(data_dir, "noauth") as noauth:
            servers = {"auth": auth, "noauth": noauth}
            for variant in VARIANTS:
                asyncio.run(load(servers[variant][0], path, headers[variant], WARMUP))
            for round_ in range(ROUNDS):
                order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
                figures: dict[str, dict[str, float]] = {}
                for variant in order:
                    port, pid = servers[variant]
                    cpu_before = cpu_seconds(pid)
                    latencies, wall = asyncio.run(load(port, path, headers[variant], REQUESTS))
                    figures[variant] = {
                        "p50_ms": statistics.median(latencies) * 1000,
                        "rate": len(latencies) / wall,
                        "cpu_ms": (cpu_seconds(pid) - cpu_before) / len(latencies) * 1000,
                    }
                    print(
                        f"round {round_ + 1} {variant:>6}: p50 {figures[variant]['p50_ms']:7.2f} ms, "
                        f"{figures[variant]['rate']:7.0f} req/s, server CPU "
                        f"{figures[variant]['cpu_ms']:.2f} ms a request"
                    )
                rounds.append(figures)
        return rounds


def check(name: str, value: float, op: str, target: float) -> dict[str, Any]:
    ok = value <= target if op == "<=" else value >= target
    return {"name": name, "value": round(value, 3), "op": op, "target": target, "ok": ok}


def main() -> None:
    print(
        f"GET /api/v1/cases/{{id}}: {REQUESTS} requests per round, {CONCURRENCY} in flight, median of "
        f"{ROUNDS} rounds of both variants back to back; each gateway in its own server subprocess "
        f"(uvicorn, 1 worker), "
        f"embedded profile on a temporary SQLite database; the load generator shares the "
        f"{os.cpu_count()} cores with the server"
    )
    rounds = measure()

    def median(variant: str, key: str) -> float:
        return statistics.median(r[variant][key] for r in rounds)

    def median_ratio(key: str) -> float:
        return statistics.median(r["auth"][key] / r["noauth"][key] for r in rounds)

    for variant, label in (("auth", "authenticated member + audit"), ("noauth", "auth disabled")):
        print(
            f"{label:>30}: median p50 {median(variant, 'p50_ms'):.2f} ms, {median(variant, 'rate'):.0f} "
            f"req/s, server CPU {median(variant, 'cpu_ms'):.2f} ms a request"
        )
    checks = [
        check("p50_ratio_auth_vs_noauth", median_ratio("p50_ms"), "<=", P50_RATIO_TARGET),
        check("auth_vs_noauth_throughput", median_ratio("rate"), ">=", THROUGHPUT_TARGET),
        check("auth_reads_per_s", median("auth", "rate"), ">=", READS_TARGET),
    ]
    print(json.dumps({"benchmark": "auth", "checks": checks}))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    else:
        main()
