"""What the browser tests share: a real gateway with every function in one process (`Server`), the
accessibility check (`axe_violations`), the small media files they upload and the interface's texts."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from aima.samples import write_clip_mp4, write_pattern_png, write_tone_wav

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "functions" / "api" / "web"
INDEX = WEB / "dist" / "index.html"
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
AXE_PATH = "/__axe-core__/axe.min.js"
"""Where the page loads axe from: a same-origin path answered by the test itself (`page.route`), so
that the page's CSP (``script-src 'self'``, no inline scripts) lets it run."""
CHROMIUM = "/usr/bin/chromium"
NOT_BUILT = "build the web app first: make web"

NOTE = "Findings are indicators for human review"
NOTE_DE = "Befunde sind Hinweise für die menschliche Prüfung"
PHASES_DONE = ("Succeeded", "PartiallySucceeded")
PHASES_FINAL = (*PHASES_DONE, "Failed", "Cancelled")

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def strong_password() -> str:
    """A password the identity policy accepts (12 to 1024 characters), new for every run."""
    return f"Review-{secrets.token_urlsafe(18)}"


@dataclass
class Server:
    """``aima serve all`` on loopback in a working directory of its own (embedded profile, its data
    under ``workdir/data``), with a bootstrap admin; stopped with SIGTERM, then killed."""

    workdir: Path
    port: int
    admin: tuple[str, str] = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        timeout: float = READY_TIMEOUT_S,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> Server:
        """Start the server (on ``port`` if given, with ``env`` added to its environment) and wait
        until ``/readyz`` answers 200; fails the test with the server's log otherwise."""
        server = cls(workdir, port or free_port(), ("admin", strong_password()))
        env = (
            {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}
            | {
                "AIMA_PROFILE": "embedded",
                "AIMA_DATA_DIR": str(workdir / "data"),
                "AIMA_BOOTSTRAP_ADMIN_USERNAME": server.admin[0],
                "AIMA_BOOTSTRAP_ADMIN_PASSWORD": server.admin[1],
                "AIMA_PUBLIC_BASE_URL": server.url,
                # a browser polls and streams; the default limits are for the open internet
                "AIMA_RATE_LIMIT_PER_USER": "100000",
                "AIMA_RATE_LIMIT_PER_ADDRESS": "100000",
                "PYTHONFAULTHANDLER": "1",
            }
            | (env or {})
        )
        argv = [
            sys.executable,
            "-m",
            "aima.cli",
            "serve",
            "all",
            "--host",
            "127.0.0.1",
            "--port",
            str(server.port),
        ]
        with server.log.open("wb") as log:
            server.process = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            server._wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.tail()}")
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=5.0)
            except httpx.HTTPError as exc:
                last = repr(exc)
            else:
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:500]}"
            time.sleep(0.3)
        pytest.fail(f"/readyz did not answer 200 within {timeout:.0f} s (last: {last}):\n{self.tail()}")

    def tail(self, size: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended after `STOP_TIMEOUT_S`."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    # --- the API ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """``method /api/v1{path}`` as the holder of ``token`` (default: the admin)."""
        token = token or self.token(*self.admin)
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=30.0, **kwargs)

    def token(self, username: str, password: str) -> str:
        """An access token from ``POST /api/v1/auth/token`` (kept for the module: a token lives
        15 minutes)."""
        key = (username, password)
        if key not in self._tokens:
            answer = httpx.post(
                f"{self.url}/api/v1/auth/token",
                data={"username": username, "password": password},
                timeout=30.0,
            )
            assert answer.status_code == 200, answer.text
            self._tokens[key] = str(answer.json()["access_token"])
        return self._tokens[key]

    def add_user(self, username: str, password: str, role: str = "user") -> dict[str, Any]:
        """A new user of the admin's tenant (``POST /api/v1/users``); its id, username and role."""
        answer = self.api("POST", "/users", json={"username": username, "password": password, "role": role})
        assert answer.status_code == 201, answer.text
        user: dict[str, Any] = answer.json()
        return user

    def create_case(self, name: str, *, token: str | None = None) -> str:
        answer = self.api("POST", "/cases", token=token, json={"name": name})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def share(self, case_id: str, user_id: str, role: str, *, token: str | None = None) -> None:
        """Make ``user_id`` a member of the case with ``role`` (owner, analyst, viewer)."""
        answer = self.api("PUT", f"/cases/{case_id}/members/{user_id}", token=token, json={"role": role})
        assert answer.status_code == 200, answer.text

    def upload(self, case_id: str, path: Path, *, token: str | None = None, analysis: str = "job") -> str:
        """Upload a file with tus in one body (``analysis``: ``job`` waits for a job, ``now`` starts
        at once); its media id."""
        data = path.read_bytes()
        metadata = f"filename {_b64(path.name)},analysis {_b64(analysis)}"
        tus = {"Tus-Resumable": "1.0.0"}
        begun = self.api(
            "POST",
            f"/cases/{case_id}/uploads",
            token=token,
            headers=tus | {"Upload-Length": str(len(data)), "Upload-Metadata": metadata},
        )
        assert begun.status_code == 201, begun.text
        location = begun.headers["location"].removeprefix("/api/v1")
        headers = tus | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
        done = self.api("PATCH", location, token=token, headers=headers, content=data)
        assert done.status_code == 204, done.text
        return done.headers["x-aima-media-id"]

    def wait_for_job(self, case_id: str, job_id: str, phases: tuple[str, ...], *, timeout: float) -> str:
        """Poll the job until its phase is one of ``phases``; that phase (fails the test after
        ``timeout`` seconds, with the server's log)."""
        deadline = time.monotonic() + timeout
        phase = "unknown"
        while time.monotonic() < deadline:
            answer = self.api("GET", f"/cases/{case_id}/jobs/{job_id}")
            assert answer.status_code == 200, answer.text
            phase = str(answer.json()["phase"])
            if phase in phases:
                return phase
            time.sleep(0.5)
        pytest.fail(f"job {job_id} is still {phase} after {timeout:.0f} s:\n{self.tail()}")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- accessibility -------------------------------------------------------------------------------


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of ``impacts`` on the page as it is now: id, impact, help and the
    targets of the nodes. axe comes from ``functions/api/web/node_modules`` and is loaded from a
    same-origin path the test answers itself (`AXE_PATH`), which the page's CSP allows."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE.relative_to(REPO)}): npm ci in functions/api/web")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        origin = page.evaluate("() => window.location.origin")
        script = f"{origin}{AXE_PATH}"
        page.route(script, lambda route: route.fulfill(path=AXE, content_type="text/javascript"))
        try:
            page.add_script_tag(url=script)
        except PlaywrightError:  # a CSP without 'self' for scripts: evaluate it through the driver
            page.evaluate(f"() => {{ {AXE.read_text()}\n }}")
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            pytest.fail("axe-core did not load into the page")
    found: list[dict[str, Any]] = page.evaluate(
        """async (impacts) => {
            const result = await window.axe.run(document, {resultTypes: ["violations"]});
            return result.violations
                .filter((v) => impacts.includes(v.impact))
                .map((v) => ({
                    id: v.id,
                    impact: v.impact,
                    help: v.help,
                    targets: v.nodes.map((n) => n.target.join(" ")),
                }));
        }""",
        list(impacts),
    )
    return found


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['impact']} {v['id']}: {v['help']} at {', '.join(v['targets'][:5])}" for v in violations
    )


# --- media ---------------------------------------------------------------------------------------


def write_media(folder: Path) -> list[Path]:
    """Three tiny files of the three kinds, quick to analyse on a CPU: a one-second tone WAV, a small
    test-pattern PNG and a two-second MP4 clip (ffmpeg)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_tone_wav(folder / "tones.wav", seconds=1.0),
        write_pattern_png(folder / "pattern.png", width=96, height=72),
        write_clip_mp4(folder / "clip.mp4", seconds=2),
    ]
