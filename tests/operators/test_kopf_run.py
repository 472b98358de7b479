"""``kopf run`` as the Deployment runs it, a process against a Kubernetes API on loopback
(`FakeApiServer`) and the real gateway (uvicorn on loopback): an AnalysisJob is submitted, polled,
approved by annotation and cancelled on deletion, every patch fits the CRD's schema, and the
requests the operator made are within its RBAC. About 10 s: the timer's first poll is 5 s in."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from aima.domain import JobPhase
from operators.analysisjob.resource import FINALIZER, GROUP, PERMISSIONS, PLURAL, STORAGE_PREFIX
from tests.operators.apiserver import BASE, DISCOVERY, FakeApiServer
from tests.operators.gateway import Gateway, gateway_on
from tests.operators.support import NAMESPACE, analysis_job
from tests.support import serve

ROOT = Path(__file__).resolve().parents[2]
KOPF = Path(sys.executable).parent / "kopf"
WAIT, STEP = 30.0, 0.1


async def serve_api(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def eventually(check: Callable[[], Any], what: str, log: Path) -> None:
    """Wait up to `WAIT` seconds for ``check()``; else fail with the end of kopf's log."""
    for _ in range(int(WAIT / STEP)):
        if check():
            return
        await asyncio.sleep(STEP)
    tail = await asyncio.to_thread(log.read_text)
    raise AssertionError(f"not within {WAIT} s: {what}\n--- kopf's log ---\n{tail[-6000:]}")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[FakeApiServer, Gateway, Path]]:
    api = FakeApiServer()
    api_runner, api_url = await serve_api(api.app())
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator"}}],
                "clusters": [{"name": "test", "cluster": {"server": api_url}}],
                "users": [{"name": "operator", "user": {"token": "k8s-token"}}],
            }
        )
    )
    log = tmp_path / "kopf.log"
    async with gateway_on(tmp_path / "gateway") as gateway, serve(gateway.app) as gateway_url:
        env = {name: value for name, value in os.environ.items() if not name.startswith(("AIMA_", "KUBE"))}
        env.update(
            KUBECONFIG=str(kubeconfig),
            HOME=str(tmp_path),
            AIMA_OPERATOR_API_URL=gateway_url,
            AIMA_OPERATOR_TOKEN=gateway.token,
        )
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                str(KOPF),
                "run",
                "--standalone",
                "--all-namespaces",
                "-m",
                "operators.analysisjob.main",
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            yield api, gateway, log
        finally:
            api.close()
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            await api_runner.cleanup()


def verbs(api: FakeApiServer) -> set[tuple[str, str, str]]:
    """The (API group, resource, verb) of every request that was not discovery."""
    found: set[tuple[str, str, str]] = set()
    for method, path, query in api.requests:
        if path in DISCOVERY:
            continue
        if method == "GET" and path == f"{BASE}/{PLURAL}":
            found.add((GROUP, PLURAL, "watch" if "watch=true" in query else "list"))
        elif method == "PATCH" and path.startswith(f"{BASE}/namespaces/"):
            found.add((GROUP, f"{PLURAL}/status" if path.endswith("/status") else PLURAL, "patch"))
        elif method == "POST" and path == f"/api/v1/namespaces/{NAMESPACE}/events":
            found.add(("", "events", "create"))
        else:
            found.add(("?", path, method))
    return found


async def test_kopf_run_serves_an_analysisjob_from_creation_to_deletion(
    cluster: tuple[FakeApiServer, Gateway, Path],
) -> None:
    api, gateway, log = cluster
    await eventually(lambda: api.watchers, "kopf watches AnalysisJobs", log)

    api.create(
        analysis_job(
            caseId=gateway.case_id,
            media={"ids": gateway.media_ids},
            approval={"required": True, "approved": False},
        )
    )
    key = (NAMESPACE, "harbour-fire")

    def status() -> dict[str, Any]:
        return dict(api.objects[key].get("status") or {})

    await eventually(lambda: status().get("jobId"), "the job is submitted", log)
    job_id = status()["jobId"]
    body = api.objects[key]
    assert FINALIZER in body["metadata"]["finalizers"]
    assert any(name.startswith(f"{STORAGE_PREFIX}/") for name in body["metadata"]["annotations"])
    assert gateway.job(job_id).reference == f"{NAMESPACE}/harbour-fire/{body['metadata']['uid']}"

    gateway.move(job_id, JobPhase.ESTIMATING, JobPhase.AWAITING_APPROVAL)
    gateway.estimate(job_id)
    await eventually(lambda: status().get("phase") == "AwaitingApproval", "the poll sees the phase", log)
    assert status()["estimate"]["costText"] == "12.40 EUR"
    api.update(*key, {"metadata": {"annotations": {"aima.io/approved": "true"}}})
    await eventually(
        lambda: gateway.job(job_id).approved_by == gateway.operator_id, "the annotation approves", log
    )
    await eventually(
        lambda: any(
            c["type"] == "Approved" and c["status"] == "True" for c in status().get("conditions", [])
        ),
        "the status shows the approval",
        log,
    )

    api.delete(*key)
    await eventually(lambda: key not in api.objects, "the finalizer is released", log)
    assert gateway.job(job_id).phase is JobPhase.CANCELLED
    assert len(gateway.parents()) == 1

    assert api.refused == []  # every patch fitted the CRD's schema
    used = verbs(api)
    assert used <= {(p.group, p.resource, p.verb) for p in PERMISSIONS}, used
    assert {(GROUP, PLURAL, "list"), (GROUP, PLURAL, "watch"), (GROUP, PLURAL, "patch")} <= used
    assert (GROUP, f"{PLURAL}/status", "patch") in used
