"""Access tokens (JWTs signed by the key ring), rotating refresh tokens with family revocation, and
short-lived delegation tokens for internal calls.

A refresh token is opaque; only its SHA-256 is stored. Each use marks it used and issues the
next token of the same family, in one transaction whose conditional UPDATE lets exactly one of
two concurrent uses win. Presenting a used token again means it was stolen or replayed (or two
clients raced with one token): the whole family is revoked and `RefreshReuse` raised.

A delegation token (`TokenService.issue_delegation`) is what the gateway hands a function it calls on
a user's behalf: signed by the same key ring, addressed to one function (``aud`` =
``aima-function:<name>``), bound to the tenant (``tid``), actor (``sub``) and case (``case``) the
gateway authorised and to what it authorised (``scope``), and valid for at most
`MAX_DELEGATION_TTL_S` seconds. Its audience can never be the API's, so it is no access token, and
an access or service token is no delegation (`TokenService.verify_delegation`).
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
from aima.identity.keys import KeyRing, UnknownKey
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
DELEGATION_KIND = "delegation"
DELEGATION_AUDIENCE_PREFIX = "aima-function:"
"""Every delegation's audience starts so: ``aima-function:ingest`` is the ingest function."""
DELEGATION_TTL_S = 90
"""A delegation's default lifetime (the gateway re-mints before it runs out)."""
MAX_DELEGATION_TTL_S = 120
DELEGATION_CLAIMS = ["iss", "aud", "sub", "tid", "case", "scope", "kind", "iat", "nbf", "exp", "jti"]
# every change to a family holds this lock, so a revocation cannot miss a token issued concurrently
# (SQLite transactions are serialised anyway)
LOCK_FAMILY = "SELECT pg_advisory_xact_lock(hashtext(%(family)s))"


@dataclass(frozen=True, slots=True)
class _Verified:
    """An access token of ours that passed every check: its key id and claims."""

    kid: str
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delegation:
    """A verified delegation: who acts (``actor``, a user id), in which tenant and case, what the
    gateway authorised (``scope``), until when (``expires_at``, epoch seconds), and who delegated."""

    tenant_id: str
    actor: str
    case_id: str
    scope: str
    token_id: str
    expires_at: float
    delegate: str | None


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


def subject_of(directory: UserDirectory, claims: dict[str, Any], who: str = "user") -> Principal:
    """The principal of a verified token's ``sub``, who must still be an enabled user of its ``tid``;
    raises `InvalidToken` ("<who> unknown or disabled", "tenant mismatch")."""
    try:
        principal = directory.principal(str(claims["sub"]))
    except AuthenticationFailed as exc:
        raise InvalidToken(f"{who} unknown or disabled") from exc
    if principal.tenant_id != claims["tid"]:
        raise InvalidToken("tenant mismatch")
    return principal


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
        # kept apart from ``_verified``: a delegation must never be found there as an access token
        self._delegations: ExpiringMap[str, _Verified] = ExpiringMap(
            MAX_DELEGATION_TTL_S, max_entries=VERIFIED_MAX
        )

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
            key = self._key_for(header)
            verified = _Verified(header["kid"], self._decode(token, key))
            self._verified.put(token, verified)
        elif self._keys.public_key(verified.kid) is None:
            raise InvalidToken("unknown signing key")  # dropped since
        claims = verified.claims
        if claims["exp"] + LEEWAY_S < time.time():
            raise InvalidToken("token expired")
        return subject_of(self._directory, claims)

    def issue_delegation(
        self,
        *,
        audience: str,
        tenant_id: str,
        actor: str,
        case_id: str,
        scope: str = "media.upload",
        ttl: int = DELEGATION_TTL_S,
        delegate: str | None = None,
    ) -> str:
        """A delegation token for one internal call (or a few, while it lasts): ``actor`` (a user id)
        acting in ``tenant_id`` on ``case_id`` as far as ``scope`` (space-separated actions) goes,
        addressed to ``audience`` (``aima-function:<name>``), valid ``ttl`` seconds (1 to
        `MAX_DELEGATION_TTL_S`). ``delegate`` names who delegated (the gateway), as the ``act`` claim.

        Only mint one after authorising exactly that: whoever holds it may act so until it expires.
        """
        if not audience.startswith(DELEGATION_AUDIENCE_PREFIX) or audience == DELEGATION_AUDIENCE_PREFIX:
            raise ValueError(f"a delegation's audience is {DELEGATION_AUDIENCE_PREFIX}<function>")
        if not 0 < ttl <= MAX_DELEGATION_TTL_S:
            raise ValueError(f"a delegation's lifetime must be 1-{MAX_DELEGATION_TTL_S} seconds")
        if not (tenant_id and actor and case_id and scope):
            raise ValueError("a delegation needs a tenant, an actor, a case and a scope")
        key = self._keys.active()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": audience,
            "sub": actor,
            "tid": tenant_id,
            "case": case_id,
            "scope": scope,
            "kind": DELEGATION_KIND,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        if delegate is not None:
            claims["act"] = {"sub": delegate}
        return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})

    def verify_delegation(self, token: str, *, audience: str, requires: str = "media.upload") -> Delegation:
        """The delegation ``token`` carries, if it is one of ours for ``audience`` that allows
        ``requires``; raises `InvalidToken` otherwise.

        Checked: the key ring's algorithm and a known ``kid``, the signature, issuer, audience, every
        claim of `DELEGATION_CLAIMS` (``kind`` must be ``delegation``), a lifetime of at most
        `MAX_DELEGATION_TTL_S`, expiry, and that the actor is still an enabled user of the tenant. A
        token whose signature and claims checked out is remembered until it expires (apart from
        verified access tokens); its expiry, key and actor are checked on every use all the same.
        """
        verified = self._delegations.get(token)
        if verified is None:
            header, _ = peek(token)
            key = self._key_for(header)
            kid = header["kid"]
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[self._keys.algorithm],
                    audience=audience,
                    issuer=self._issuer,
                    options={"require": ["iss", "aud", "iat", "nbf", "exp"]},  # first: the audience
                    leeway=LEEWAY_S,
                )
            except jwt.PyJWTError as exc:
                raise InvalidToken(decode_reason(exc)) from exc
            for name in DELEGATION_CLAIMS:
                if claims.get(name) is None:
                    raise InvalidToken(f"missing claim {name}")
            if claims["kind"] != DELEGATION_KIND:
                raise InvalidToken("not a delegation")
            for name in ("sub", "tid", "case", "scope", "jti"):
                if not isinstance(claims[name], str) or not claims[name]:
                    raise InvalidToken(f"missing claim {name}")
            if not all(isinstance(claims[name], int | float) for name in ("iat", "exp")):
                raise InvalidToken("malformed token")
            if claims["exp"] - claims["iat"] > MAX_DELEGATION_TTL_S:
                raise InvalidToken("lifetime too long")
            verified = _Verified(kid, claims)
            self._delegations.put(token, verified)
        elif self._keys.public_key(verified.kid) is None:
            raise InvalidToken("unknown signing key")
        claims = verified.claims
        if claims["aud"] != audience:  # one audience (not a list merely containing it), also when remembered
            raise InvalidToken("wrong audience")
        if claims["exp"] + LEEWAY_S < time.time():
            raise InvalidToken("token expired")
        if requires not in str(claims["scope"]).split():
            raise InvalidToken(f"scope does not allow {requires}")
        subject_of(self._directory, claims, "actor")
        act = claims.get("act")
        delegate = act.get("sub") if isinstance(act, dict) else None
        return Delegation(
            tenant_id=str(claims["tid"]),
            actor=str(claims["sub"]),
            case_id=str(claims["case"]),
            scope=str(claims["scope"]),
            token_id=str(claims["jti"]),
            expires_at=float(claims["exp"]),
            delegate=str(delegate) if delegate is not None else None,
        )

    def _key_for(self, header: dict[str, Any]) -> Any:
        """The key that verifies a token with this header; raises `InvalidToken`."""
        try:
            return self._keys.key_for(header)
        except UnknownKey as exc:
            raise InvalidToken(str(exc)) from None

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
