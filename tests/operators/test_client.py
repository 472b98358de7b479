"""`JobClient`: its settings, its token, the gateway's job routes (the real gateway) and its errors."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from aima.domain import JobPhase
from aima.settings import SettingsError
from operators.analysisjob.client import BearerToken, ClientSettings, GatewayError, JobClient, JobRequest
from tests.operators.gateway import URL, Gateway


def test_settings_from_the_environment(tmp_path: Path) -> None:
    environ = {"AIMA_OPERATOR_API_URL": "http://aima-api:8080", "AIMA_OPERATOR_TOKEN": "s3cr3t"}
    settings = ClientSettings.from_env(environ)
    assert settings.api_url == "http://aima-api:8080"
    assert settings.token is not None
    assert settings.token.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)
    from_file = ClientSettings.from_env(
        {
            "AIMA_OPERATOR_API_URL": "https://aima.example.org",
            "AIMA_OPERATOR_TOKEN_FILE": str(tmp_path / "token"),
            "AIMA_OPERATOR_TIMEOUT_SECONDS": "3",
        }
    )
    assert (from_file.token_file, from_file.timeout_seconds) == (tmp_path / "token", 3.0)


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"AIMA_OPERATOR_TOKEN": "t"}, "AIMA_OPERATOR_API_URL"),
        ({"AIMA_OPERATOR_API_URL": "aima-api:8080", "AIMA_OPERATOR_TOKEN": "t"}, "AIMA_OPERATOR_API_URL"),
        ({"AIMA_OPERATOR_API_URL": "http://a"}, "AIMA_OPERATOR_TOKEN"),
        (
            {
                "AIMA_OPERATOR_API_URL": "http://a",
                "AIMA_OPERATOR_TOKEN": "t",
                "AIMA_OPERATOR_TOKEN_FILE": "/t",
            },
            "AIMA_OPERATOR_TOKEN",
        ),
        (
            {
                "AIMA_OPERATOR_API_URL": "http://a",
                "AIMA_OPERATOR_TOKEN": "t",
                "AIMA_OPERATOR_TIMEOUT_SECONDS": "0",
            },
            "AIMA_OPERATOR_TIMEOUT_SECONDS",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as raised:
        ClientSettings.from_env(environ)
    assert str(raised.value).startswith(f"invalid setting {variable}: ")
    assert "\n" not in str(raised.value)


def test_the_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    token = BearerToken(token_file=path)
    assert token.current() == "first"
    path.write_text("second\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))  # a different mtime, however fast the test
    assert token.current() == "second"
    path.unlink()
    with pytest.raises(GatewayError, match="token file"):
        token.current()


async def test_the_routes_of_the_contract(gateway: Gateway, client: JobClient) -> None:
    request = JobRequest(media_ids=gateway.media_ids, steps=["probe"], reference="ns/a/1")
    view, created = await client.submit(gateway.case_id, request)
    assert created
    assert (view.phase, view.case_id, view.files) == (JobPhase.QUEUED, gateway.case_id, 2)
    again, created = await client.submit(gateway.case_id, request)
    assert (again.id, created) == (view.id, False)
    assert [job.id for job in await client.list_jobs(gateway.case_id)] == [view.id]
    assert (await client.get(gateway.case_id, view.id)).reference == "ns/a/1"
    estimate = await client.estimate(gateway.case_id, gateway.media_ids, ["probe"])
    assert estimate.cost is not None
    assert estimate.gpu_profile
    assert (await client.cancel(gateway.case_id, view.id)).phase is JobPhase.CANCELLED
    assert (await client.resume(gateway.case_id, view.id)).phase is JobPhase.QUEUED
    await client.delete(gateway.case_id, view.id, results="keep")
    assert gateway.job(view.id).phase is JobPhase.CANCELLED
    assert gateway.submitted[0] == {
        "media_ids": gateway.media_ids,
        "sources": [],
        "steps": ["probe"],
        "priority": "normal",
        "approved": False,
        "reference": "ns/a/1",
    }


async def test_a_problem_becomes_a_gateway_error(gateway: Gateway, client: JobClient) -> None:
    view, _ = await client.submit(gateway.case_id, JobRequest(media_ids=gateway.media_ids))
    with pytest.raises(GatewayError) as raised:
        await client.approve(gateway.case_id, view.id)  # it does not await approval
    error = raised.value
    assert (error.status, error.title, error.retry_after) == (409, "Not possible now", None)
    assert error.detail == "The job is Queued; only a job awaiting approval can be approved."
    assert error.retryable
    assert str(error) == (
        f"POST /api/v1/cases/{gateway.case_id}/jobs/{view.id}/approve: 409 Not possible now: {error.detail}"
    )
    gateway.fail_next("GET", f"/jobs/{view.id}", 503, **{"Retry-After": "2"})
    with pytest.raises(GatewayError) as raised:
        await client.get(gateway.case_id, view.id)
    assert (raised.value.status, raised.value.retry_after, raised.value.retryable) == (503, 2.0, True)


async def test_a_wrong_token_is_not_retryable(gateway: Gateway) -> None:
    client = JobClient(URL, BearerToken("stolen"), transport=gateway.transport())
    with pytest.raises(GatewayError) as raised:
        await client.list_jobs(gateway.case_id)
    await client.aclose()
    assert (raised.value.status, raised.value.retryable) == (401, False)


async def test_an_answer_outside_the_contract_is_retryable() -> None:
    """A gateway of another version (simulated: no gateway answers this)."""

    def odd(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "job-1", "phase": "Exploded"})

    client = JobClient(URL, BearerToken("t"), transport=httpx.MockTransport(odd))
    with pytest.raises(GatewayError, match="unexpected answer") as raised:
        await client.get("case", "job-1")
    await client.aclose()
    assert raised.value.retryable


async def test_paths_are_quoted(gateway: Gateway, client: JobClient) -> None:
    with pytest.raises(GatewayError) as raised:
        await client.get("a/b", "../x")
    assert gateway.calls[-1][1] == "/api/v1/cases/a%2Fb/jobs/..%2Fx"
    assert raised.value.status in (404, 422)
