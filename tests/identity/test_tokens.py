"""Access tokens, key rotation and the JWKS, refresh-token rotation and reuse detection, on SQLite
and the real PostgreSQL (including two threads racing with one refresh token)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update

from aima.identity import tokens as tokens_module
from aima.identity.errors import InvalidToken, RefreshReuse
from aima.identity.keys import MARGIN_S, KeyRing
from aima.identity.model import GlobalRole, Principal
from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.storage.relational import Database
from aima.storage.schema import refresh_tokens, signing_keys, users, utcnow

ISSUER = "aima-test"
AUDIENCE = "aima-api"
SECRET = "key-encryption-secret-for-tests"
PASSWORD = "correct horse battery staple"
T = TypeVar("T")


def new_keyring(db: Database, *, secret: str = SECRET, lifetime_s: int = 86400) -> KeyRing:
    return KeyRing(db, encryption_secret=secret, lifetime_s=lifetime_s, retain_s=3600)


@pytest.fixture
def keyring(db: Database) -> KeyRing:
    return new_keyring(db)


@pytest.fixture
def tokens(db: Database, keyring: KeyRing, directory: UserDirectory) -> TokenService:
    return TokenService(
        db, keyring, issuer=ISSUER, audience=AUDIENCE, access_ttl=300, refresh_ttl=3600, directory=directory
    )


@pytest.fixture
def alice(directory: UserDirectory) -> Principal:
    tenant = directory.ensure_tenant("acme")
    directory.create_user(tenant, f"alice-{uuid.uuid4().hex[:6]}", PASSWORD, "user")
    return directory.authenticate(directory.list_users(tenant)[0].username, PASSWORD)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(principal: Principal, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": principal.user_id,
        "tid": principal.tenant_id,
        "role": principal.role.value,
        "kind": principal.kind,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(keyring: KeyRing, claims: dict[str, Any]) -> str:
    """A token signed by the ring's active key, with arbitrary claims."""
    key = keyring.active()
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})


def unsigned(header: dict[str, Any], claims: dict[str, Any], signer: bytes | None = None) -> str:
    """A hand-made compact JWS; HMAC-SHA256 with ``signer`` as the secret if given."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if signer is None:
        return head + "."
    return head + "." + b64(hmac.new(signer, head.encode(), hashlib.sha256).digest())


def refused(tokens: TokenService, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        tokens.verify_access(token)
    return info.value.reason


# --- access tokens ----------------------------------------------------------------------------


def test_issued_access_token_verifies_to_the_principal(
    tokens: TokenService, keyring: KeyRing, alice: Principal
) -> None:
    token = tokens.issue_access(alice)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == keyring.active().kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "tid", "role", "kind", "iat", "nbf", "exp", "jti"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 300
    assert tokens.verify_access(token) == alice


def test_expired_and_not_yet_valid_tokens_are_refused(
    tokens: TokenService, keyring: KeyRing, alice: Principal
) -> None:
    past = int(time.time()) - 120
    assert refused(tokens, sign(keyring, claims_for(alice, iat=past - 300, nbf=past - 300, exp=past))) == (
        "token expired"
    )
    future = int(time.time()) + 120
    assert refused(tokens, sign(keyring, claims_for(alice, nbf=future, exp=future + 300))) == (
        "token not yet valid"
    )


def test_a_tampered_payload_is_refused(
    tokens: TokenService, directory: UserDirectory, alice: Principal
) -> None:
    header, _, signature = tokens.issue_access(alice).split(".")
    admin = directory.create_user(alice.tenant_id, f"admin-{uuid.uuid4().hex[:6]}", PASSWORD, "admin")
    forged = b64(json.dumps(claims_for(alice, sub=admin.id, role="admin")).encode())
    assert refused(tokens, f"{header}.{forged}.{signature}") == "bad signature"


def test_alg_none_is_refused(tokens: TokenService, keyring: KeyRing, alice: Principal) -> None:
    kid = keyring.active().kid
    for alg in ("none", "None", "NONE"):
        assert (
            refused(tokens, unsigned({"alg": alg, "kid": kid}, claims_for(alice))) == "algorithm not allowed"
        )


def test_hs256_signed_with_the_public_key_is_refused(
    tokens: TokenService, keyring: KeyRing, alice: Principal
) -> None:
    active = keyring.active()
    public_pem = active.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, json.dumps(active.public_jwk).encode()):
        token = unsigned({"alg": "HS256", "typ": "JWT", "kid": active.kid}, claims_for(alice), secret)
        assert refused(tokens, token) == "algorithm not allowed"


def test_a_key_outside_the_ring_is_refused(tokens: TokenService, keyring: KeyRing, alice: Principal) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    claiming_our_kid = jwt.encode(
        claims_for(alice), stranger, algorithm="ES256", headers={"kid": keyring.active().kid}
    )
    assert refused(tokens, claiming_our_kid) == "bad signature"
    own_kid = jwt.encode(claims_for(alice), stranger, algorithm="ES256", headers={"kid": "stranger"})
    assert refused(tokens, own_kid) == "unknown signing key"
    no_kid = jwt.encode(claims_for(alice), stranger, algorithm="ES256")
    assert refused(tokens, no_kid) == "missing kid"


def test_wrong_issuer_audience_and_missing_claims_are_refused(
    tokens: TokenService, keyring: KeyRing, alice: Principal
) -> None:
    assert refused(tokens, sign(keyring, claims_for(alice, iss="someone-else"))) == "wrong issuer"
    assert refused(tokens, sign(keyring, claims_for(alice, aud="other-api"))) == "wrong audience"
    assert refused(tokens, sign(keyring, claims_for(alice, tid=None))) == "missing claim tid"
    assert refused(tokens, sign(keyring, claims_for(alice, exp=None))) == "missing claim exp"
    assert refused(tokens, sign(keyring, claims_for(alice, tid="other-tenant"))) == "tenant mismatch"
    assert refused(tokens, "not.a.token") == "malformed token"


def test_a_disabled_users_tokens_stop_working(
    tokens: TokenService, directory: UserDirectory, alice: Principal
) -> None:
    access = tokens.issue_access(alice)
    refresh = tokens.issue_refresh(alice)
    assert tokens.verify_access(access) == alice
    directory.disable(alice.user_id)
    assert refused(tokens, access) == "user unknown or disabled"
    with pytest.raises(InvalidToken):
        tokens.refresh(refresh)


def test_the_role_comes_from_the_directory_not_the_token(
    tokens: TokenService, db: Database, alice: Principal
) -> None:
    token = tokens.issue_access(alice)
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        s.execute(update(users).where(users.c.id == alice.user_id).values(role="guest"))
    assert tokens.verify_access(token).role is GlobalRole.GUEST


def test_service_tokens(tokens: TokenService, directory: UserDirectory, alice: Principal) -> None:
    robot = directory.create_user(
        alice.tenant_id, f"operator-{uuid.uuid4().hex[:6]}", None, "user", kind="service"
    )
    principal = directory.principal(robot.id)
    assert (principal.kind, principal.auth) == ("service", "service")
    token = tokens.issue_service_token(principal, 3600)
    assert tokens.verify_access(token) == principal
    with pytest.raises(ValueError, match="service accounts only"):
        tokens.issue_service_token(alice, 60)
    with pytest.raises(ValueError, match="lifetime"):
        tokens.issue_service_token(principal, 7200)


# --- keys ---------------------------------------------------------------------------------------


def test_keys_are_stored_encrypted_with_a_thumbprint_kid(db: Database, keyring: KeyRing) -> None:
    active = keyring.active()
    assert keyring.active().kid == active.kid
    jwk = active.public_jwk
    assert {k: jwk[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "use": "sig",
    }
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    assert active.kid == b64(hashlib.sha256(canonical.encode()).digest())
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        pem = s.execute(select(signing_keys.c.private_pem)).scalar_one()
    assert pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError, match="encrypted"):
        serialization.load_pem_private_key(pem.encode(), None)
    # a ring with the wrong secret cannot use the stored key
    with pytest.raises(ValueError, match="cannot decrypt"):
        new_keyring(db, secret="not-the-secret").active()
    assert new_keyring(db).active().kid == active.kid


def test_after_rotation_old_tokens_verify_and_the_jwks_lists_both_keys(
    tokens: TokenService, keyring: KeyRing, alice: Principal
) -> None:
    before = tokens.issue_access(alice)
    old = keyring.active().kid
    new = keyring.rotate().kid
    assert new != old
    assert keyring.active().kid == new
    after = tokens.issue_access(alice)
    assert jwt.get_unverified_header(after)["kid"] == new
    assert tokens.verify_access(before) == alice
    assert tokens.verify_access(after) == alice
    jwks = keyring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [new, old]
    assert all(set(k) == {"kty", "crv", "x", "y", "kid", "alg", "use"} for k in jwks["keys"])
    # the public JWK alone verifies the token, as a relying party would
    assert jwt.decode(after, jwt.PyJWK(jwks["keys"][0]), algorithms=["ES256"], audience=AUDIENCE)["sub"] == (
        alice.user_id
    )


def test_a_rotation_by_another_replica_is_seen(tokens: TokenService, db: Database, alice: Principal) -> None:
    tokens.verify_access(tokens.issue_access(alice))  # warms this replica's caches
    replica = new_keyring(db)
    replica.rotate()
    token = jwt.encode(
        claims_for(alice),
        replica.active().private_key,
        algorithm="ES256",
        headers={"kid": replica.active().kid},
    )
    assert tokens.verify_access(token) == alice


def test_a_key_past_its_lifetime_is_rotated(db: Database, keyring: KeyRing) -> None:
    old = keyring.active().kid
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        s.execute(update(signing_keys).values(created_at=utcnow() - timedelta(days=2)))
    fresh = new_keyring(db, lifetime_s=86400).active()
    assert fresh.kid != old
    assert {k["kid"] for k in keyring.jwks()["keys"]} == {old, fresh.kid}


def test_keys_retired_longer_than_the_retention_are_dropped(
    tokens: TokenService, db: Database, keyring: KeyRing, alice: Principal
) -> None:
    token = tokens.issue_access(alice)
    assert tokens.verify_access(token) == alice  # now remembered: dropping its key must still end it
    old = keyring.active().kid
    keyring.rotate()
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        s.execute(
            update(signing_keys)
            .where(signing_keys.c.kid == old)
            .values(retired_at=utcnow() - timedelta(seconds=keyring.retain_s + MARGIN_S + 5))
        )
    assert old not in {k["kid"] for k in keyring.jwks()["keys"]}
    assert refused(tokens, token) == "unknown signing key"
    keyring.rotate()
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        kids = set(s.execute(select(signing_keys.c.kid)).scalars())
    assert old not in kids
    assert len(kids) == 2


# --- refresh tokens -----------------------------------------------------------------------------


def stored(db: Database, token: str) -> Any:
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        digest = hashlib.sha256(token.encode()).hexdigest()
        return s.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == digest)).one()


def test_refresh_rotates_the_token(tokens: TokenService, db: Database, alice: Principal) -> None:
    first = tokens.issue_refresh(alice)
    row = stored(db, first)
    assert row.used_at is None
    assert first not in json.dumps([str(v) for v in row])  # only the hash is stored

    access, second, principal = tokens.refresh(first)
    assert principal == alice
    assert tokens.verify_access(access) == alice
    assert second != first
    assert stored(db, first).used_at is not None
    assert stored(db, second).family_id == row.family_id

    _, third, _ = tokens.refresh(second)
    assert stored(db, third).family_id == row.family_id


def test_reusing_a_used_refresh_token_revokes_the_family(tokens: TokenService, alice: Principal) -> None:
    first = tokens.issue_refresh(alice)
    _, second, _ = tokens.refresh(first)
    other_session = tokens.issue_refresh(alice)

    with pytest.raises(RefreshReuse):
        tokens.refresh(first)
    with pytest.raises(InvalidToken) as newest:
        tokens.refresh(second)
    assert newest.value.reason == "refresh token revoked"
    with pytest.raises(RefreshReuse):
        tokens.refresh(first)
    tokens.refresh(other_session)  # other families are untouched


def test_refresh_after_logout_is_refused(tokens: TokenService, alice: Principal) -> None:
    first = tokens.issue_refresh(alice)
    _, second, _ = tokens.refresh(first)
    tokens.logout(second)
    tokens.logout(second)
    tokens.logout("never-issued")
    with pytest.raises(InvalidToken) as info:
        tokens.refresh(second)
    assert info.value.reason == "refresh token revoked"


def test_expired_and_unknown_refresh_tokens_are_refused(
    tokens: TokenService, db: Database, alice: Principal
) -> None:
    token = tokens.issue_refresh(alice)
    with db.engine.begin() as s:  # maintenance access, outside the guarded sessions
        s.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == hashlib.sha256(token.encode()).hexdigest())
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(InvalidToken) as expired:
        tokens.refresh(token)
    assert expired.value.reason == "refresh token expired"
    with pytest.raises(InvalidToken) as unknown:
        tokens.refresh("never-issued")
    assert unknown.value.reason == "unknown refresh token"


def test_revoke_user_ends_every_session(tokens: TokenService, alice: Principal) -> None:
    sessions = [tokens.issue_refresh(alice), tokens.issue_refresh(alice)]
    tokens.revoke_user(alice.user_id)
    for token in sessions:
        with pytest.raises(InvalidToken):
            tokens.refresh(token)


def race(call: Callable[[], T], threads: int) -> list[T | Exception]:
    """Run ``call`` in ``threads`` threads released at once; each one's result or exception."""
    barrier = threading.Barrier(threads)
    results: list[T | Exception] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(call())
        except Exception as exc:
            results.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_two_concurrent_refreshes_with_one_token_let_exactly_one_win(
    tokens: TokenService, alice: Principal
) -> None:
    for _ in range(5):
        token = tokens.issue_refresh(alice)
        results = race(functools.partial(tokens.refresh, token), 2)
        won = [r for r in results if isinstance(r, tuple)]
        assert len(won) == 1, results
        assert [type(r) for r in results if not isinstance(r, tuple)] == [RefreshReuse]
        # the loser's reuse revoked the family, the winner's new token included
        with pytest.raises(InvalidToken):
            tokens.refresh(won[0][1])


def test_a_remembered_token_skips_the_signature_check_but_not_its_expiry(
    tokens: TokenService, keyring: KeyRing, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sign(keyring, claims_for(alice, exp=int(time.time()) + 60))
    checked: list[str] = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: checked.append(a[0]) or real_decode(*a, **k))
    assert tokens.verify_access(token) == alice
    assert tokens.verify_access(token) == alice
    assert checked == [token]  # verified once, then remembered
    header, claims, signature = token.split(".")
    assert refused(tokens, f"{header}.{claims}.{signature[:-4]}AAAA") == "bad signature"  # other text
    later = time.time() + 60 + tokens_module.LEEWAY_S + 1
    monkeypatch.setattr(tokens_module, "time", SimpleNamespace(time=lambda: later))
    assert refused(tokens, token) == "token expired"


def test_a_remembered_token_follows_its_user(
    tokens: TokenService, directory: UserDirectory, alice: Principal
) -> None:
    token = tokens.issue_access(alice)
    assert tokens.verify_access(token) == alice
    directory.disable(alice.user_id)
    assert refused(tokens, token) == "user unknown or disabled"
