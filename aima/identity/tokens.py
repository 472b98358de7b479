"""Access tokens (JWTs signed by the key ring) and rotating refresh tokens with family revocation.

A refresh token is opaque; only its SHA-256 is stored. Each use marks it used and issues the
next token of the same family, in one transaction whose conditional UPDATE lets exactly one of
two concurrent uses win. Presenting a used token again means it was stolen or replayed (or two
clients raced with one token): the whole family is revoked and `RefreshReuse` raised.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jwt

from aima.expiring import ExpiringMap
from aima.identity.errors import AuthenticationFailed, InvalidToken, RefreshReuse, decode_reason
from aima.identity.keys import KeyRing
from aima.identity.model import Principal
from aima.identity.oidc import ExternalIssuer
from aima.identity.users import UserDirectory, principal_of
from aima.storage.relational import Database
from aima.storage.schema import refresh_tokens, users, utcnow
from aima.storage.scoped import IDENTITY_LOOKUP, unscoped_session

if TYPE_CHECKING:
    from aima.settings import Settings

log = logging.getLogger(__name__)

REQUIRED_CLAIMS = ["iss", "aud", "sub", "tid", "role", "kind", "iat", "nbf", "exp", "jti"]
LEEWAY_S = 5
VERIFIED_TTL_S = 60.0
"""How long a verified access token is remembered (see `TokenService.verify_access`)."""
VERIFIED_MAX = 10_000
# every change to a family holds this lock, so a revocation cannot miss a token issued concurrently
# (SQLite transactions are serialised anyway)
LOCK_FAMILY = "SELECT pg_advisory_xact_lock(hashtext(%(family)s))"


@dataclass(frozen=True, slots=True)
class _Verified:
    """An access token of ours that passed every check: its key id and claims."""

    kid: str
    claims: dict[str, Any]


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, NOT verified: only to route it to its verifier.
    Raises `InvalidToken` ("malformed token") unless it is three segments with JSON objects."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (ValueError, TypeError):
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidToken("malformed token")
    return header, claims


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    """Issues and verifies access, refresh and service tokens."""

    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        access_ttl: int,
        refresh_ttl: int,
        directory: UserDirectory,
        external: ExternalIssuer | None = None,
    ) -> None:
        if access_ttl > keyring.retain_s:
            raise ValueError("the access token lifetime exceeds the key ring's retention")
        if external is not None and external.issuer == issuer:
            raise ValueError("the external issuer must differ from our own")
        self._db = db
        self._keys = keyring
        self._issuer = issuer
        self._audience = audience
        self._access_ttl = access_ttl
        self._refresh_ttl = timedelta(seconds=refresh_ttl)
        self._directory = directory
        self._external = external
        self._verified: ExpiringMap[str, _Verified] = ExpiringMap(VERIFIED_TTL_S, max_entries=VERIFIED_MAX)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        db: Database,
        directory: UserDirectory,
        external: ExternalIssuer | None = None,
    ) -> TokenService:
        """The token service as the gateway runs it, on the shared key ring (`KeyRing.from_settings`)."""
        return cls(
            db,
            KeyRing.from_settings(settings, db),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.access_token_ttl,
            refresh_ttl=settings.refresh_token_ttl,
            directory=directory,
            external=external,
        )

    @property
    def keyring(self) -> KeyRing:
        """The key ring that signs and verifies (its JWKS is published)."""
        return self._keys

    def issue_access(self, principal: Principal) -> str:
        """A signed access token for ``principal``, valid for the access TTL."""
        return self._sign(principal, self._access_ttl)

    def issue_service_token(self, principal: Principal, ttl: int) -> str:
        """A signed token for a service account, valid for ``ttl`` seconds."""
        if principal.kind != "service":
            raise ValueError("service tokens are for service accounts only")
        if not 0 < ttl <= self._keys.retain_s:
            raise ValueError(f"service token lifetime must be 1-{self._keys.retain_s} seconds")
        return self._sign(principal, ttl)

    def verify_access(self, token: str) -> Principal:
        """The principal of a valid access or service token (ours or the external issuer's);
        raises `InvalidToken`. The user must still exist and be enabled.

        A token of ours whose signature and claims checked out is remembered (by its exact text,
        for `VERIFIED_TTL_S`), so a client presenting it again costs no signature check; its expiry,
        its signing key and its user are checked on every use all the same.
        """
        verified = self._verified.get(token)
        if verified is None:
            header, unverified = peek(token)
            if self._external is not None and unverified.get("iss") == self._external.issuer:
                return self._external.verify(token)
            if header.get("alg") != self._keys.algorithm:
                raise InvalidToken("algorithm not allowed")
            kid = header.get("kid")
            if not isinstance(kid, str):
                raise InvalidToken("missing kid")
            key = self._keys.public_key(kid)
            if key is None:
                raise InvalidToken("unknown signing key")
            verified = _Verified(kid, self._decode(token, key))
            self._verified.put(token, verified)
        elif self._keys.public_key(verified.kid) is None:
            raise InvalidToken("unknown signing key")  # dropped since
        claims = verified.claims
        if claims["exp"] + LEEWAY_S < time.time():
            raise InvalidToken("token expired")
        try:
            principal = self._directory.principal(str(claims["sub"]))
        except AuthenticationFailed as exc:
            raise InvalidToken("user unknown or disabled") from exc
        if principal.tenant_id != claims["tid"]:
            raise InvalidToken("tenant mismatch")
        return principal

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        """The claims of ``token`` after checking its signature with ``key`` and every claim."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self._keys.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=LEEWAY_S,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(decode_reason(exc)) from exc
        if not isinstance(claims["exp"], int | float):
            raise InvalidToken("malformed token")
        return claims

    def issue_refresh(self, principal: Principal, family_id: str | None = None) -> str:
        """A new refresh token, in a new family unless ``family_id`` is given."""
        token = secrets.token_urlsafe(32)
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
            s.execute(refresh_tokens.insert().values(self._refresh_row(principal.user_id, token, family_id)))
        return token

    def refresh(self, token: str) -> tuple[str, str, Principal]:
        """Use a refresh token once: (new access token, next refresh token, principal).

        Raises `RefreshReuse` (after revoking the family) for a token used before, and
        `InvalidToken` for an unknown, expired or revoked one or a disabled user.
        """
        digest = _digest(token)
        now = utcnow()
        reused: dict[str, str] | None = None
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
            family = s.execute(
                refresh_tokens.select()
                .with_only_columns(refresh_tokens.c.family_id)
                .where(refresh_tokens.c.token_hash == digest)
            ).scalar()
            if family is None:
                raise InvalidToken("unknown refresh token")
            if s.get_bind().dialect.name == "postgresql":
                s.connection().exec_driver_sql(LOCK_FAMILY, {"family": family})
            claimed = s.execute(
                refresh_tokens.update()
                .where(
                    refresh_tokens.c.token_hash == digest,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                    refresh_tokens.c.expires_at > now,
                )
                .values(used_at=now)
                .returning(refresh_tokens.c.user_id)
            ).scalar()
            if claimed is None:
                row = s.execute(refresh_tokens.select().where(refresh_tokens.c.token_hash == digest)).one()
                if row.used_at is None:
                    raise InvalidToken("refresh token revoked" if row.revoked_at else "refresh token expired")
                s.execute(
                    refresh_tokens.update()
                    .where(refresh_tokens.c.family_id == family, refresh_tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                reused = {"user_id": row.user_id, "family_id": family}
            else:
                user = s.execute(users.select().where(users.c.id == claimed)).mappings().first()
                if user is None or user["disabled"]:
                    raise InvalidToken("user unknown or disabled")
                principal = principal_of(user)
                next_token = secrets.token_urlsafe(32)
                s.execute(
                    refresh_tokens.insert().values(self._refresh_row(principal.user_id, next_token, family))
                )
        if reused is not None:
            log.warning("refresh token reused; family revoked", extra=reused)
            raise RefreshReuse()
        return self.issue_access(principal), next_token, principal

    def logout(self, refresh_token: str) -> None:
        """Revoke the family of ``refresh_token`` (idempotent; unknown tokens are ignored)."""
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
            family = s.execute(
                refresh_tokens.select()
                .with_only_columns(refresh_tokens.c.family_id)
                .where(refresh_tokens.c.token_hash == _digest(refresh_token))
            ).scalar()
            if family is None:
                return
            if s.get_bind().dialect.name == "postgresql":
                s.connection().exec_driver_sql(LOCK_FAMILY, {"family": family})
            s.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.family_id == family, refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    def revoke_user(self, user_id: str) -> None:
        """Revoke every refresh token of a user."""
        with unscoped_session(self._db, reason=IDENTITY_LOOKUP) as s:
            s.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    def _sign(self, principal: Principal, ttl: int) -> str:
        key = self._keys.active()
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": principal.user_id,
            "tid": principal.tenant_id,
            "role": principal.role.value,
            "kind": principal.kind,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})

    def _refresh_row(self, user_id: str, token: str, family_id: str | None) -> dict[str, object]:
        now = utcnow()
        return {
            "id": str(uuid.uuid4()),
            "family_id": family_id or str(uuid.uuid4()),
            "user_id": user_id,
            "token_hash": _digest(token),
            "issued_at": now,
            "expires_at": now + self._refresh_ttl,
            "used_at": None,
            "revoked_at": None,
        }
