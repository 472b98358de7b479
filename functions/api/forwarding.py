"""The gateway's HTTP client of the ingest function: delegation tokens, streamed bodies.

The gateway never imports a function; it calls ingest at ``settings.function_urls["ingest"]`` with
one `httpx.AsyncClient` per process (a composition root may hand it a transport, e.g.
``httpx.ASGITransport`` in tests).

Every call carries a **delegation token** (`TokenService.issue_delegation`, see
``docs/security.md``), minted only after the gateway authorised ``media.upload`` on the case for
the user: audience `AUDIENCE`, bound to the tenant, the actor (the user) and the case, valid
`DELEGATION_TTL` seconds, signed by the same key ring as every other token. Ingest takes the acting
context from that token alone, so a caller that reaches ingest directly cannot choose a tenant,
actor or case by sending headers. Minting is cheap, but a token is reused for the same (tenant,
actor, case) for `REUSE_FOR` seconds, well within its lifetime, so a client sending many parts
does not cost a signature each. The request id travels in ``X-AIMA-Request-ID``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterable, Mapping

import httpx

from aima.expiring import ExpiringMap
from aima.identity.tokens import TokenService
from aima.settings import Settings

log = logging.getLogger(__name__)

FUNCTION = "ingest"
DEFAULT_URL = "http://aima-ingest"
AUDIENCE = f"aima-function:{FUNCTION}"
"""The audience of the delegations the gateway mints for ingest."""
DELEGATE = "aima-gateway"
"""Who delegates, as the tokens' ``act`` claim says."""
SCOPE = "media.upload"
DELEGATION_TTL = 90
"""Seconds a delegation is valid (at most ``MAX_DELEGATION_TTL_S``, two minutes)."""
REUSE_FOR = 45.0
"""Seconds a minted delegation is reused for the same tenant, actor and case."""
REQUEST_ID = "X-AIMA-Request-ID"
TIMEOUT = httpx.Timeout(30.0, read=300.0, write=300.0)
"""Reading waits for ingest to store a whole body; a write waits for the client's next bytes."""
_CASE_PATH = re.compile(r"/cases/([^/]+)(/.*)?")


class IngestUnavailable(Exception):
    """Ingest could not be reached, or refused the gateway's own credentials."""


class IngestClient:
    """Calls the ingest function on behalf of an authorised user (see module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        tokens: TokenService,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), transport=transport, timeout=TIMEOUT)
        self._tokens = tokens
        self._delegations: ExpiringMap[tuple[str, str, str], str] = ExpiringMap(REUSE_FOR)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        tokens: TokenService,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> IngestClient:
        return cls(settings.function_urls.get(FUNCTION, DEFAULT_URL), tokens=tokens, transport=transport)

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
        case_id: str | None = None,
    ) -> httpx.Response:
        """``method path`` on ingest for ``actor`` of ``tenant_id`` on ``case_id`` (default: the case
        the path ``/cases/{case_id}/...`` names), with ``headers`` and the body streamed from
        ``content``; the answer is read whole (ingest answers small JSON). Only call it for what the
        gateway authorised: the delegation it mints says so. Raises `IngestUnavailable`."""
        case_id = case_id or _case_of(path)
        key = (tenant_id, actor, case_id)
        context = {REQUEST_ID: request_id} if request_id else {}
        for attempt in (1, 2):
            token = await self._delegation(key)
            sent = {**headers, **context, "Authorization": f"Bearer {token}"}
            try:
                response = await self._http.request(method, path, headers=sent, content=content)
            except httpx.TransportError as exc:
                log.warning("ingest unreachable: %s", exc, extra={"path": path})
                raise IngestUnavailable(f"ingest unreachable: {type(exc).__name__}") from exc
            if response.status_code != 401:
                return response
            self._delegations.invalidate(key)  # refused (a rotated key, say): a new token once
            if content is not None or attempt == 2:
                break
        log.error("ingest refused the gateway's delegation", extra={"path": path})
        raise IngestUnavailable("ingest refused the gateway's delegation")

    async def close(self) -> None:
        await self._http.aclose()

    async def _delegation(self, key: tuple[str, str, str]) -> str:
        token = self._delegations.get(key)
        if token is None:
            token = await asyncio.to_thread(self._mint, *key)
            self._delegations.put(key, token)
        return token

    def _mint(self, tenant_id: str, actor: str, case_id: str) -> str:
        return self._tokens.issue_delegation(
            audience=AUDIENCE,
            tenant_id=tenant_id,
            actor=actor,
            case_id=case_id,
            scope=SCOPE,
            ttl=DELEGATION_TTL,
            delegate=DELEGATE,
        )


def _case_of(path: str) -> str:
    match = _CASE_PATH.fullmatch(path)
    if match is None:
        raise ValueError(f"no case in {path!r}: every call to ingest acts on one case")
    return match.group(1)
