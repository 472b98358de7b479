"""Fixtures of the operator's tests: the gateway's job routes and a `JobClient` on them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from operators.analysisjob.client import BearerToken, JobClient
from tests.operators.gateway import TOKEN, FakeGateway
from tests.operators.support import CASE_ID


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(cases={CASE_ID})  # TODO real API


@pytest.fixture
async def client(gateway: FakeGateway) -> AsyncIterator[JobClient]:
    client = JobClient("http://aima-api:8080", BearerToken(TOKEN), transport=gateway.transport())
    yield client
    await client.aclose()
