"""A browser tus client on another origin (tus-js-client, Uppy): the preflight admits the tus request
headers, and the answer exposes the tus headers and the stored file."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.settings import Settings
from tests.api.conftest import World, api_settings, unique_png

ORIGIN = "https://review.example"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path, cors_origins=[ORIGIN])


async def test_a_browser_may_send_and_read_the_tus_headers(world: World) -> None:
    base = f"/api/v1/cases/{world.case_id}/uploads"
    preflight = await world.client.options(
        f"{base}/0123456789abcdef",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,content-type,tus-resumable,upload-offset,"
            "upload-checksum,upload-metadata,upload-length",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {
        "tus-resumable",
        "upload-offset",
        "upload-checksum",
        "upload-metadata",
        "upload-length",
    } <= allowed

    png = unique_png()
    tus = {"Origin": ORIGIN, "Tus-Resumable": "1.0.0"}
    created = await world.client.post(
        base, headers=world.headers("analyst") | tus | {"Upload-Length": str(len(png))}
    )
    patch = (
        world.headers("analyst")
        | tus
        | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    )
    done = await world.client.patch(created.headers["location"], headers=patch, content=png)
    assert done.status_code == 204
    exposed = {h.strip().lower() for h in done.headers["access-control-expose-headers"].split(",")}
    assert {"location", "upload-offset", "tus-resumable", "x-aima-media-id", "x-aima-sha256"} <= exposed
