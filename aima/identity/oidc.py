"""An external OIDC issuer: its access tokens are verified against its JWKS and mapped to AIMA
roles, and its users are provisioned in the directory on first sight.

The JWKS is fetched over HTTP and cached for ``cache_ttl``; a token with an unknown kid causes one
refetch (at most once per ``refetch_interval``, so junk kids cannot hammer the issuer). Only
asymmetric algorithms from the configured list are accepted: never ``none``, never HMAC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import jwt

from aima.identity.errors import AuthenticationFailed, InvalidToken, decode_reason
from aima.identity.model import GlobalRole, Principal
from aima.identity.users import UserDirectory
from aima.settings import Settings, SettingsError

log = logging.getLogger(__name__)

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
LEEWAY_S = 30
HTTP_TIMEOUT_S = 5.0


class ExternalIssuer:
    """Verifies the tokens of one external issuer and turns them into principals."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str,
        audience: str,
        algorithms: Sequence[str],
        role_claim: str,
        role_map: Mapping[str, str],
        tenant_name: str,
        directory: UserDirectory,
        *,
        http: httpx.Client | None = None,
        cache_ttl: float = 300.0,
        refetch_interval: float = 30.0,
    ) -> None:
        refused = [a for a in algorithms if a not in ASYMMETRIC]
        if refused or not algorithms:
            raise ValueError(f"OIDC algorithms must be asymmetric ({sorted(ASYMMETRIC)}); refused {refused}")
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._audience = audience
        self._algorithms = list(algorithms)
        self._role_claim = role_claim
        self._role_map = {name: GlobalRole(role) for name, role in role_map.items()}
        self._tenant = tenant_name
        self._directory = directory
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=HTTP_TIMEOUT_S)
        self._cache_ttl = cache_ttl
        self._refetch_interval = refetch_interval
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] | None = None
        self._fetched_at = 0.0
        self._refetched_at: float | None = None

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; `InvalidToken` otherwise (also for a disabled user)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise InvalidToken("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("missing kid")
        jwk = self._key(kid)
        if jwk is None:
            raise InvalidToken("unknown signing key")
        if jwk.get("alg", alg) != alg:
            raise InvalidToken("algorithm does not match the key")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=LEEWAY_S,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(decode_reason(exc)) from exc
        role = self._role(claims)
        subject = str(claims["sub"])
        username = claims.get("preferred_username") or claims.get("email") or subject
        try:
            return self._directory.provision_external(self.issuer, subject, str(username), role, self._tenant)
        except AuthenticationFailed as exc:
            raise InvalidToken("user disabled") from exc

    def verify_id_token(self, token: str, client_id: str, nonce: str) -> dict[str, Any]:
        """The claims of an ID token this issuer signed for ``client_id`` with ``nonce`` (what a sign-in
        through the gateway gets back with the access token); `InvalidToken` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed ID token") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms or not isinstance(kid, str):
            raise InvalidToken("ID token algorithm not allowed or kid missing")
        jwk = self._key(kid)
        if jwk is None:
            raise InvalidToken("unknown signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                jwt.PyJWK(jwk, algorithm=alg),
                algorithms=[alg],
                audience=client_id,
                issuer=self.issuer,
                options={"require": [*REQUIRED_CLAIMS, "nonce"]},
                leeway=LEEWAY_S,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(decode_reason(exc)) from exc
        if claims["nonce"] != nonce:
            raise InvalidToken("ID token nonce does not match")
        return claims

    @property
    def http(self) -> httpx.Client:
        """The HTTP client this issuer's keys are fetched with (the sign-in reuses it)."""
        return self._http

    def close(self) -> None:
        """Close the HTTP client if this issuer created it."""
        if self._owns_http:
            self._http.close()

    def _role(self, claims: Mapping[str, Any]) -> GlobalRole:
        value = _claim(claims, self._role_claim)
        names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        mapped = [self._role_map[n] for n in names if isinstance(n, str) and n in self._role_map]
        if not mapped:
            raise InvalidToken("no AIMA role")
        return max(mapped, key=lambda role: role.rank)

    def _key(self, kid: str) -> dict[str, Any] | None:
        with self._lock:
            now = time.monotonic()
            fresh = self._keys is None or now - self._fetched_at >= self._cache_ttl
            if fresh:
                self._fetch(now)
            keys = self._keys or {}
            if (
                kid not in keys
                and not fresh
                and (self._refetched_at is None or now - self._refetched_at >= self._refetch_interval)
            ):
                self._refetched_at = now
                self._fetch(now)
                keys = self._keys or {}
            return keys.get(kid)

    def _fetch(self, now: float) -> None:
        try:
            response = self._http.get(self._jwks_url)
            response.raise_for_status()
            keys = _signing_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot fetch the OIDC JWKS", extra={"url": self._jwks_url, "error": str(exc)})
            # keep what we had; try again after refetch_interval, not on every request
            self._fetched_at = now - self._cache_ttl + self._refetch_interval
            if self._keys is None:
                raise InvalidToken("issuer keys unavailable") from exc
            return
        self._keys = keys
        self._fetched_at = now


def _signing_keys(document: object) -> dict[str, dict[str, Any]]:
    """The asymmetric signing keys of a JWKS document, by kid."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    return {
        key["kid"]: key
        for key in document["keys"]
        if isinstance(key, dict)
        and isinstance(key.get("kid"), str)
        and key.get("kty") in ("RSA", "EC", "OKP")
        and key.get("use", "sig") == "sig"
    }


def _claim(claims: Mapping[str, Any], path: str) -> object:
    """A claim by name, or by a dotted path into nested objects (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def external_issuer_from_settings(settings: Settings, directory: UserDirectory) -> ExternalIssuer | None:
    """The issuer configured by ``AIMA_OIDC_*``, or None when ``AIMA_OIDC_ISSUER`` is unset."""
    if settings.oidc_issuer is None:
        return None
    if settings.oidc_jwks_url is None:
        raise SettingsError("AIMA_OIDC_JWKS_URL", "required when AIMA_OIDC_ISSUER is set")
    if settings.oidc_audience is None:
        raise SettingsError("AIMA_OIDC_AUDIENCE", "required when AIMA_OIDC_ISSUER is set")
    if settings.oidc_issuer == settings.jwt_issuer:
        raise SettingsError("AIMA_OIDC_ISSUER", "must differ from AIMA_JWT_ISSUER")
    if not settings.oidc_algorithms or not ASYMMETRIC.issuperset(settings.oidc_algorithms):
        raise SettingsError("AIMA_OIDC_ALGORITHMS", f"must be some of {sorted(ASYMMETRIC)}")
    roles = {role.value for role in GlobalRole}
    if not roles.issuperset(settings.oidc_role_map.values()):
        raise SettingsError("AIMA_OIDC_ROLE_MAP", f"roles must be some of {sorted(roles)}")
    return ExternalIssuer(
        settings.oidc_issuer,
        settings.oidc_jwks_url,
        settings.oidc_audience,
        settings.oidc_algorithms,
        settings.oidc_role_claim,
        settings.oidc_role_map,
        settings.oidc_tenant,
        directory,
    )
