"""A real OpenID provider for the sign-in tests: node-oidc-provider (tests/web/oidc/provider.mjs,
installed by ``make test-tools`` from its lock file) on loopback, stopped with SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

FOLDER = Path(__file__).parent / "oidc"
CLIENT_ID = "aima-web"
CLIENT_SECRET = "aima-web-test-secret"
AUDIENCE = "urn:aima:api"
NOT_INSTALLED = "the test OpenID provider is not installed: run `make test-tools` (npm ci in tests/web/oidc)"


@dataclass
class OidcProvider:
    """node-oidc-provider with one confidential client whose callback is ``redirect_uri``."""

    port: int
    redirect_uri: str
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gateway_env(self) -> dict[str, str]:
        """The gateway's settings for signing in through this provider."""
        return {
            "AIMA_OIDC_ISSUER": self.issuer,
            "AIMA_OIDC_JWKS_URL": f"{self.issuer}/jwks",
            "AIMA_OIDC_AUDIENCE": AUDIENCE,
            "AIMA_OIDC_ALGORITHMS": '["RS256"]',
            "AIMA_OIDC_CLIENT_ID": CLIENT_ID,
            "AIMA_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "AIMA_OIDC_DISPLAY_NAME": "Test Identity Provider",
        }

    @classmethod
    def start(cls, port: int, redirect_uri: str, log: Path, timeout: float = 20.0) -> OidcProvider:
        node = shutil.which("node")
        if node is None or not (FOLDER / "node_modules" / "oidc-provider").is_dir():
            pytest.fail(NOT_INSTALLED)
        provider = cls(port, redirect_uri, log)
        with log.open("wb") as out:
            provider.process = subprocess.Popen(
                [node, str(FOLDER / "provider.mjs"), str(port), redirect_uri],
                cwd=FOLDER,
                env={**os.environ, "NODE_ENV": "test"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if provider.process.poll() is not None:
                pytest.fail(f"the OpenID provider exited:\n{log.read_text(errors='replace')}")
            try:
                if (
                    httpx.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=2).status_code
                    == 200
                ):
                    return provider
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        provider.stop()
        pytest.fail(
            f"the OpenID provider did not answer within {timeout:.0f} s:\n{log.read_text(errors='replace')}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
