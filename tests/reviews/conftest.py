"""The gateway's fixtures, for the review route tests (test_api)."""

from __future__ import annotations

from tests.api.conftest import app, ingest_bus, services, settings, world  # noqa: F401 - fixtures
