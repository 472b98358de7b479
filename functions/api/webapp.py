"""The review workspace's files, served by the gateway under ``/`` (``functions/api/web``, docs/web.md).

The web app is a static single-page application built by Vite into ``functions/api/web/dist``
(``make web``); it talks to the gateway only through the public API (``/api/v1``), with the same
tokens as any other client. This module serves its files: hashed assets under ``/assets`` with a
long cache lifetime, and ``index.html`` for every other path outside the API (the app routes in the
browser), with a Content-Security-Policy that allows nothing but the gateway's own origin. It is
the router's fallback, so it sees only requests no route matched (a wrong method on an API route
stays a 405): an unknown path under ``/api/`` stays the router's 404 problem, never the page.
Without a build, ``/`` answers 404 naming ``make web``.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from functions.runtime.problems import problem_response

DIST = Path(__file__).resolve().parent / "web" / "dist"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Only the gateway's own origin: no CDN, no font service, no inline script."""


class WebApp:
    """ASGI app for the built files in ``dist`` (see module docstring)."""

    def __init__(self, fallback: ASGIApp, dist: Path = DIST, *, api_prefix: str = "/api/") -> None:
        self.fallback = fallback
        self.dist = dist
        self.api_prefix = api_prefix
        self.assets = StaticFiles(directory=dist / "assets", check_dir=False)

    @property
    def built(self) -> bool:
        return (self.dist / "index.html").is_file()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        response: Response
        if (
            scope["type"] != "http"
            or path.startswith(self.api_prefix)
            or scope["method"] not in {"GET", "HEAD"}
        ):
            await self.fallback(scope, receive, send)  # the router's own 404 problem
            return
        if not self.built:
            response = problem_response(
                404, "web-app-not-built", "Web app not built", "build it with `make web` (functions/api/web)"
            )
        elif path.startswith("/assets/"):
            sub = dict(scope, path=path.removeprefix("/assets"), root_path="")
            await self.assets(sub, receive, _cache_forever(send))
            return
        else:
            name = path.lstrip("/")
            candidate = (self.dist / name).resolve()
            if name and candidate.is_file() and candidate.is_relative_to(self.dist.resolve()):
                response = FileResponse(candidate)
            else:
                response = FileResponse(self.dist / "index.html", headers={"Cache-Control": "no-cache"})
            response.headers["Content-Security-Policy"] = CSP
        await response(scope, receive, send)


def _cache_forever(send: Send) -> Send:
    """Hashed asset names never change content: let the browser keep them."""

    async def wrapped(message: dict) -> None:  # type: ignore[type-arg]
        if message["type"] == "http.response.start" and message.get("status") == 200:
            message["headers"] = [
                *message.get("headers", []),
                (b"cache-control", b"public, max-age=31536000, immutable"),
            ]
        await send(message)

    return wrapped  # type: ignore[return-value]
