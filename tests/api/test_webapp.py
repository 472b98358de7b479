"""The gateway serves the review workspace's built files under ``/`` (functions/api/webapp.py): the page
for every path the browser app routes, hashed assets cached for good, nothing from elsewhere allowed by
the CSP, and API paths left to the API."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from functions.api.webapp import CSP, WebApp


def app_with(dist: Path) -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/cases")
    async def cases() -> list[str]:
        return []

    app.router.default = WebApp(app.router.default, dist)
    return app


async def test_the_page_assets_and_api_paths(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>AIMA</title>")
    (tmp_path / "assets" / "app-3f2a.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    transport = httpx.ASGITransport(app=app_with(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        for path in ("/", "/cases/c1/jobs", "/login"):
            page = await client.get(path)
            assert page.status_code == 200
            assert page.text.startswith("<!doctype html>")
            assert page.headers["content-security-policy"] == CSP
            assert page.headers["cache-control"] == "no-cache"
        asset = await client.get("/assets/app-3f2a.js")
        assert asset.status_code == 200
        assert "immutable" in asset.headers["cache-control"]
        assert (await client.get("/favicon.svg")).text == "<svg/>"
        assert (await client.get("/assets/missing.js")).status_code == 404
        outside = await client.get("/../../etc/passwd")
        assert "root:" not in outside.text
        assert (await client.get("/api/v1/cases")).json() == []
        unknown = await client.get("/api/v1/nothing")
        assert unknown.status_code == 404
        assert "<!doctype" not in unknown.text
        assert (await client.post("/cases")).status_code == 404  # the page is only read
    assert "http" not in CSP.replace("https://", "")  # no outside origin: no CDN, no font service


async def test_without_a_build_the_page_names_the_command(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=app_with(tmp_path / "dist"))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        answer = await client.get("/")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert "make web" in answer.json()["detail"]
