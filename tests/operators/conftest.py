"""Fixtures of the operator's tests: the real gateway (`tests.operators.gateway`) and a `JobClient`
of the operator's service account on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from operators.analysisjob.client import BearerToken, JobClient
from tests.operators.gateway import URL, Gateway, gateway_on


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with gateway_on(tmp_path) as opened:
        yield opened


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[JobClient]:
    client = JobClient(URL, BearerToken(gateway.token), transport=gateway.transport())
    yield client
    await client.aclose()
