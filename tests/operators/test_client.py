"""`JobClient`: its settings, its token, the contract's routes and shapes, and its errors.

TODO real API: the routes are `tests.operators.gateway.FakeGateway` (an httpx MockTransport)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from aima.settings import SettingsError
from operators.analysisjob.client import BearerToken, ClientSettings, GatewayError, JobClient, JobRequest
from tests.operators.gateway import TOKEN, FakeGateway
from tests.operators.support import CASE_ID, MEDIA_IDS


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


async def test_the_routes_of_the_contract(gateway: FakeGateway, client: JobClient) -> None:
    view, created = await client.submit(CASE_ID, JobRequest(media_ids=MEDIA_IDS, reference="ns/a/1"))
    assert created
    assert (view.phase, view.case_id) == ("Queued", CASE_ID)
    again, created = await client.submit(CASE_ID, JobRequest(media_ids=MEDIA_IDS, reference="ns/a/1"))
    assert (again.id, created) == (view.id, False)
    assert [job.id for job in await client.list_jobs(CASE_ID)] == [view.id]
    assert (await client.get(CASE_ID, view.id)).estimate is not None
    estimate = await client.estimate(CASE_ID, MEDIA_IDS, ["probe"])
    assert (estimate.cost, estimate.currency) == (12.4, "EUR")
    assert (await client.cancel(CASE_ID, view.id)).phase == "Cancelled"
    await client.delete(CASE_ID, view.id, results="keep")
    assert gateway.deleted == [(view.id, "keep")]
    assert gateway.requests[0] == {
        "media_ids": MEDIA_IDS,
        "sources": [],
        "priority": "normal",
        "approved": False,
        "reference": "ns/a/1",
    }


async def test_a_problem_becomes_a_gateway_error(gateway: FakeGateway, client: JobClient) -> None:
    gateway.fail_next("POST", "/cancel", 409, "the job is Succeeded", **{"Retry-After": "2"})
    with pytest.raises(GatewayError) as raised:
        await client.cancel(CASE_ID, "job-9")
    error = raised.value
    assert (error.status, error.title, error.detail, error.retry_after) == (
        409,
        "Conflict",
        "the job is Succeeded",
        2.0,
    )
    assert error.retryable
    assert str(error) == f"POST /api/v1/cases/{CASE_ID}/jobs/job-9/cancel: 409 Conflict: the job is Succeeded"


async def test_a_wrong_token_is_not_retryable(gateway: FakeGateway) -> None:
    client = JobClient("http://aima-api:8080", BearerToken("stolen"), transport=gateway.transport())
    with pytest.raises(GatewayError) as raised:
        await client.get(CASE_ID, "job-1")
    await client.aclose()
    assert (raised.value.status, raised.value.retryable) == (401, False)


async def test_an_answer_outside_the_contract_is_retryable() -> None:
    def odd(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "job-1", "phase": "Exploded"})

    client = JobClient("http://aima-api:8080", BearerToken(TOKEN), transport=httpx.MockTransport(odd))
    with pytest.raises(GatewayError, match="unexpected answer") as raised:
        await client.get(CASE_ID, "job-1")
    await client.aclose()
    assert raised.value.retryable


async def test_paths_are_quoted(gateway: FakeGateway, client: JobClient) -> None:
    with pytest.raises(GatewayError):
        await client.get("a/b", "../x")
    assert gateway.calls[-1][1] == "/api/v1/cases/a%2Fb/jobs/..%2Fx"
