"""The signing key ring: EC keys in ``signing_keys``, rotated by age, published as a JWKS.

Private keys are stored as PKCS#8 PEM encrypted with ``AIMA_KEY_ENCRYPTION_SECRET``. A rotated
key stops signing but keeps verifying for ``retain_s`` (at least the longest token lifetime) plus a
margin, then it is dropped. Keys are cached in-process; an unknown kid re-reads the table, so a
rotation by another replica is seen at once, and both caches are re-read every minute.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aima.storage.relational import Database
from aima.storage.schema import signing_keys, utcnow

if TYPE_CHECKING:
    from aima.settings import Settings

CURVES: dict[str, tuple[str, type[ec.EllipticCurve]]] = {
    "ES256": ("P-256", ec.SECP256R1),
    "ES384": ("P-384", ec.SECP384R1),
    "ES512": ("P-521", ec.SECP521R1),
}
MARGIN_S = 300  # clock skew and cache staleness on top of the retention
ACTIVE_CACHE_S = 60.0


class UnknownKey(ValueError):
    """A signature names no key of this ring that may verify it."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key that signs: its kid, algorithm, private key and public JWK."""

    kid: str
    algorithm: str
    private_key: ec.EllipticCurvePrivateKey
    public_jwk: dict[str, str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _VerifyingKey:
    jwk: dict[str, str]
    key: ec.EllipticCurvePublicKey
    retired_at: datetime | None


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def public_jwk(key: ec.EllipticCurvePublicKey, algorithm: str) -> dict[str, str]:
    """The public JWK of an EC key, its kid being the RFC 7638 thumbprint."""
    crv, _ = CURVES[algorithm]
    numbers = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    members = {
        "crv": crv,
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(size, "big")),
        "y": b64url(numbers.y.to_bytes(size, "big")),
    }
    thumbprint = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return {**members, "kid": b64url(thumbprint.digest()), "alg": algorithm, "use": "sig"}


MIN_KEY_RETENTION_S = 86400
"""Rotated signing keys verify at least this long: the longest service token an admin can issue."""


class KeyRing:
    """Signing keys shared by all replicas through the relational store."""

    def __init__(
        self,
        db: Database,
        *,
        encryption_secret: str,
        lifetime_s: int,
        algorithm: str = "ES256",
        retain_s: int = 86400,
    ) -> None:
        if algorithm not in CURVES:
            raise ValueError(f"unsupported signing algorithm {algorithm!r}; use one of {sorted(CURVES)}")
        if not encryption_secret:
            raise ValueError("the key encryption secret is empty")
        if lifetime_s <= 0 or retain_s <= 0:
            raise ValueError("key lifetime and retention must be positive")
        self._db = db
        self._secret = encryption_secret.encode()
        self._lifetime = timedelta(seconds=lifetime_s)
        self._retain_s = retain_s
        self._algorithm = algorithm
        self._lock = threading.Lock()
        self._active: SigningKey | None = None
        self._active_read = 0.0
        self._verifying: dict[str, _VerifyingKey] = {}
        self._verifying_read = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> KeyRing:
        """The ring every replica shares: ``AIMA_KEY_ENCRYPTION_SECRET``, ``AIMA_SIGNING_KEY_LIFETIME``,
        and rotated keys kept for `MIN_KEY_RETENTION_S` or the access-token lifetime if longer."""
        assert settings.key_encryption_secret is not None  # filled or required by the profile
        return cls(
            db,
            encryption_secret=settings.key_encryption_secret.get_secret_value(),
            lifetime_s=settings.signing_key_lifetime,
            retain_s=max(MIN_KEY_RETENTION_S, settings.access_token_ttl),
        )

    @property
    def algorithm(self) -> str:
        """The one algorithm this ring signs and verifies with."""
        return self._algorithm

    @property
    def retain_s(self) -> int:
        """How long a rotated key still verifies (the longest token lifetime it supports)."""
        return self._retain_s

    def active(self) -> SigningKey:
        """The key to sign with; rotates when there is none or the newest is past its lifetime."""
        with self._lock:
            cached = self._active
            if (
                cached is not None
                and time.monotonic() - self._active_read < ACTIVE_CACHE_S
                and utcnow() - cached.created_at < self._lifetime
            ):
                return cached
            return self._rotate(only_if_stale=True)

    def rotate(self) -> SigningKey:
        """Retire the current key and sign with a new one from now on."""
        with self._lock:
            return self._rotate(only_if_stale=False)

    def public_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The verifying key for ``kid``, or None if unknown or dropped."""
        with self._lock:
            found = self._verifying.get(kid)
            if found is None or time.monotonic() - self._verifying_read >= ACTIVE_CACHE_S:
                self._load_verifying()
                found = self._verifying.get(kid)
            if found is None or not self._verifies(found.retired_at):
                return None
            return found.key

    def key_for(self, header: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
        """The key that verifies a JWS with this (unverified) ``header``; raises `UnknownKey` saying
        why not (another algorithm, no kid, a key unknown or dropped)."""
        if header.get("alg") != self.algorithm:
            raise UnknownKey("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise UnknownKey("missing kid")
        key = self.public_key(kid)
        if key is None:
            raise UnknownKey("unknown signing key")
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK set of every key that still verifies, newest first."""
        with self._lock:
            self._load_verifying()
            keys = [k.jwk for k in self._verifying.values() if self._verifies(k.retired_at)]
        return {"keys": keys}

    def _verifies(self, retired_at: datetime | None) -> bool:
        return retired_at is None or retired_at >= self._drop_before()

    def _drop_before(self) -> datetime:
        return utcnow() - timedelta(seconds=self._retain_s + MARGIN_S)

    def _rotate(self, *, only_if_stale: bool) -> SigningKey:
        now = utcnow()
        with self._db.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                # one rotation at a time across replicas; SQLite transactions already write-lock
                s.connection().exec_driver_sql("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            newest = (
                s.execute(
                    signing_keys.select()
                    .where(signing_keys.c.retired_at.is_(None), signing_keys.c.algorithm == self._algorithm)
                    .order_by(signing_keys.c.created_at.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if only_if_stale and newest is not None and now - newest["created_at"] < self._lifetime:
                cached = self._active
                key = cached if cached is not None and cached.kid == newest["kid"] else self._decrypt(newest)
            else:
                key = self._generate(now)
                s.execute(
                    signing_keys.update().where(signing_keys.c.retired_at.is_(None)).values(retired_at=now)
                )
                s.execute(
                    signing_keys.insert().values(
                        kid=key.kid,
                        algorithm=key.algorithm,
                        private_pem=self._encrypt(key.private_key),
                        public_jwk=key.public_jwk,
                        created_at=now,
                        retired_at=None,
                    )
                )
                s.execute(signing_keys.delete().where(signing_keys.c.retired_at < self._drop_before()))
        self._active = key
        self._active_read = time.monotonic()
        self._load_verifying()
        return key

    def _generate(self, now: datetime) -> SigningKey:
        _, curve = CURVES[self._algorithm]
        private = ec.generate_private_key(curve())
        jwk = public_jwk(private.public_key(), self._algorithm)
        return SigningKey(jwk["kid"], self._algorithm, private, jwk, now)

    def _encrypt(self, private: ec.EllipticCurvePrivateKey) -> str:
        return private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._secret),
        ).decode("ascii")

    def _decrypt(self, row: Mapping[Any, Any]) -> SigningKey:
        try:
            private = serialization.load_pem_private_key(row["private_pem"].encode("ascii"), self._secret)
        except ValueError as exc:
            raise ValueError(
                f"cannot decrypt signing key {row['kid']}: wrong key encryption secret?"
            ) from exc
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ValueError(f"signing key {row['kid']} is not an EC key")
        return SigningKey(row["kid"], row["algorithm"], private, dict(row["public_jwk"]), row["created_at"])

    def _load_verifying(self) -> None:
        with self._db.session() as s:
            rows = (
                s.execute(
                    signing_keys.select()
                    .where(signing_keys.c.algorithm == self._algorithm)
                    .order_by(signing_keys.c.created_at.desc())
                )
                .mappings()
                .all()
            )
        self._verifying_read = time.monotonic()
        self._verifying = {
            row["kid"]: _VerifyingKey(dict(jwk := row["public_jwk"]), _ec_public(jwk), row["retired_at"])
            for row in rows
        }


def _ec_public(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey:
    _, curve = CURVES[jwk["alg"]]
    return ec.EllipticCurvePublicNumbers(_b64url_int(jwk["x"]), _b64url_int(jwk["y"]), curve()).public_key()
