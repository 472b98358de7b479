"""The gateway's HTTP client of the ingest function: service token, acting context, streamed bodies.

The gateway never imports a function; it calls ingest at ``settings.function_urls["ingest"]`` with
one `httpx.AsyncClient` per process (a composition root may hand it a transport, e.g.
``httpx.ASGITransport`` in tests). Calls carry a service token of the gateway's own service account
`GATEWAY_ACCOUNT` (created on first use, in the bootstrap tenant: creating it at start-up would make
the users table non-empty and refuse ``aima user add --admin``), re-issued before it expires, and the
acting context ingest trusts from a service: ``X-AIMA-Tenant``, ``X-AIMA-Actor`` and
``X-AIMA-Request-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Mapping

import httpx

from aima.identity.errors import AuthenticationFailed, UserExists
from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.settings import Settings

log = logging.getLogger(__name__)

FUNCTION = "ingest"
DEFAULT_URL = "http://aima-ingest"
GATEWAY_ACCOUNT = "aima-gateway"
TOKEN_TTL = 3600
RENEW_BEFORE = 300
"""Seconds before expiry at which the service token is re-issued."""
TENANT = "X-AIMA-Tenant"
ACTOR = "X-AIMA-Actor"
REQUEST_ID = "X-AIMA-Request-ID"
TIMEOUT = httpx.Timeout(30.0, read=300.0, write=300.0)
"""Reading waits for ingest to store a whole body; a write waits for the client's next bytes."""


class IngestUnavailable(Exception):
    """Ingest could not be reached, or refused the gateway's own credentials."""


class IngestClient:
    """Calls the ingest function on behalf of an authorised user (see module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        directory: UserDirectory,
        tokens: TokenService,
        tenant_name: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), transport=transport, timeout=TIMEOUT)
        self._directory = directory
        self._tokens = tokens
        self._tenant_name = tenant_name
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        directory: UserDirectory,
        tokens: TokenService,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> IngestClient:
        return cls(
            settings.function_urls.get(FUNCTION, DEFAULT_URL),
            directory=directory,
            tokens=tokens,
            tenant_name=settings.bootstrap_tenant,
            transport=transport,
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        tenant_id: str,
        actor: str,
        request_id: str | None,
        headers: Mapping[str, str],
        content: AsyncIterable[bytes] | None = None,
    ) -> httpx.Response:
        """``method path`` on ingest with ``headers`` and the body streamed from ``content``; the answer
        is read whole (ingest answers small JSON). Raises `IngestUnavailable`."""
        context = {TENANT: tenant_id, ACTOR: actor, **({REQUEST_ID: request_id} if request_id else {})}
        for attempt in (1, 2):
            token = await self._service_token()
            sent = {**headers, **context, "Authorization": f"Bearer {token}"}
            try:
                response = await self._http.request(method, path, headers=sent, content=content)
            except httpx.TransportError as exc:
                log.warning("ingest unreachable: %s", exc, extra={"path": path})
                raise IngestUnavailable(f"ingest unreachable: {type(exc).__name__}") from exc
            if response.status_code != 401:
                return response
            self._token = None  # refused (a rotated key, a reset database): a new token once
            if content is not None or attempt == 2:
                break
        log.error("ingest refused the gateway's service token", extra={"path": path})
        raise IngestUnavailable("ingest refused the gateway's service token")

    async def close(self) -> None:
        await self._http.aclose()

    async def _service_token(self) -> str:
        async with self._lock:
            if self._token is None or self._token[1] - time.monotonic() < RENEW_BEFORE:
                token = await asyncio.to_thread(self._issue)
                self._token = (token, time.monotonic() + TOKEN_TTL)
            return self._token[0]

    def _issue(self) -> str:
        record = self._directory.by_username(GATEWAY_ACCOUNT)
        if record is None:
            tenant_id = self._directory.ensure_tenant(self._tenant_name)
            with contextlib.suppress(UserExists):  # created concurrently by another replica
                self._directory.create_user(tenant_id, GATEWAY_ACCOUNT, None, "user", kind="service")
            record = self._directory.by_username(GATEWAY_ACCOUNT)
        try:
            if record is None:
                raise AuthenticationFailed()
            return self._tokens.issue_service_token(self._directory.principal(record.id), TOKEN_TTL)
        except (AuthenticationFailed, ValueError) as exc:
            raise IngestUnavailable(f"the service account {GATEWAY_ACCOUNT} is unusable: {exc}") from exc
