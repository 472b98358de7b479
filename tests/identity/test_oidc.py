"""The external OIDC issuer against a JWKS served over real HTTP on loopback by the test itself."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from aima.identity.errors import InvalidToken
from aima.identity.keys import KeyRing
from aima.identity.model import GlobalRole
from aima.identity.oidc import ExternalIssuer, external_issuer_from_settings
from aima.identity.tokens import TokenService
from aima.identity.users import UserDirectory
from aima.settings import SettingsError, load_settings
from aima.storage.relational import Database

ISSUER = "https://idp.example.test/realms/aima"
AUDIENCE = "aima-api"
ROLE_MAP = {"aima-admin": "admin", "aima-user": "user", "aima-guest": "guest"}


@dataclass
class IdP:
    """A signing key pair per kid and the JWKS the loopback server publishes."""

    url: str = ""
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    hits: int = 0

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str = "k1", *, signer: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "subject-1",
            "preferred_username": "dora",
            "iat": now,
            "exp": now + 300,
            "realm_access": {"roles": ["offline_access", "aima-user"]},
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, signer or self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[IdP]:
    """A JWKS endpoint on 127.0.0.1 (``http.server`` in a thread) that counts its requests."""
    state = IdP()
    state.add_key("k1")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            body = json.dumps(state.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[UserDirectory]:
    db = Database(f"sqlite:///{tmp_path / 'aima.db'}")
    db.migrate()
    yield UserDirectory(db)
    db.dispose()


@pytest.fixture
def issuer(idp: IdP, directory: UserDirectory) -> Iterator[ExternalIssuer]:
    external = ExternalIssuer(
        ISSUER, idp.url, AUDIENCE, ["RS256"], "realm_access.roles", ROLE_MAP, "partners", directory
    )
    yield external
    external.close()


def refused(issuer: ExternalIssuer, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        issuer.verify(token)
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_valid_token_gives_a_provisioned_principal_with_the_mapped_role(
    idp: IdP, issuer: ExternalIssuer, directory: UserDirectory
) -> None:
    principal = issuer.verify(idp.token())
    assert (principal.username, principal.role, principal.auth) == ("dora", GlobalRole.USER, "oidc")
    assert principal.tenant_id == directory.ensure_tenant("partners")
    record = directory.get(principal.user_id)
    assert record is not None
    assert (record.issuer, record.subject) == (ISSUER, "subject-1")

    # the highest mapped role wins, and the stored role follows the issuer on every login
    promoted = issuer.verify(idp.token(realm_access={"roles": ["aima-guest", "aima-admin", "aima-user"]}))
    assert promoted.user_id == principal.user_id
    assert promoted.role is GlobalRole.ADMIN
    assert directory.get(principal.user_id) == dataclasses.replace(record, role=GlobalRole.ADMIN)
    assert idp.hits == 1  # the JWKS is cached


def test_roles_as_a_space_separated_string_claim(idp: IdP, directory: UserDirectory) -> None:
    external = ExternalIssuer(ISSUER, idp.url, AUDIENCE, ["RS256"], "roles", ROLE_MAP, "partners", directory)
    assert external.verify(idp.token(roles="aima-guest aima-user")).role is GlobalRole.USER
    external.close()


def test_a_token_without_an_aima_role_is_refused(
    idp: IdP, issuer: ExternalIssuer, directory: UserDirectory
) -> None:
    assert refused(issuer, idp.token(realm_access={"roles": ["offline_access"]})) == "no AIMA role"
    assert refused(issuer, idp.token(realm_access=None)) == "no AIMA role"
    assert directory.by_username("dora") is None


def test_wrong_audience_issuer_and_expired_tokens_are_refused(idp: IdP, issuer: ExternalIssuer) -> None:
    assert refused(issuer, idp.token(aud="another-app")) == "wrong audience"
    assert refused(issuer, idp.token(iss="https://evil.example.test")) == "wrong issuer"
    past = int(time.time()) - 600
    assert refused(issuer, idp.token(iat=past - 300, exp=past)) == "token expired"
    assert refused(issuer, idp.token(sub=None)) == "missing claim sub"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(issuer, idp.token(signer=stranger)) == "bad signature"


def test_hs256_tokens_are_refused(idp: IdP, issuer: ExternalIssuer) -> None:
    public_pem = (
        idp.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "s", "exp": now + 60, "roles": ["aima-admin"]}
    for secret in (public_pem, b"shared-secret"):
        head = (
            b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode()) + "." + b64(json.dumps(claims).encode())
        )
        token = head + "." + b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())
        assert refused(issuer, token) == "algorithm not allowed"
    none = (
        b64(json.dumps({"alg": "none", "kid": "k1"}).encode()) + "." + b64(json.dumps(claims).encode()) + "."
    )
    assert refused(issuer, none) == "algorithm not allowed"


def test_symmetric_or_none_algorithms_cannot_be_configured(idp: IdP, directory: UserDirectory) -> None:
    for algorithms in (["HS256"], ["RS256", "none"], []):
        with pytest.raises(ValueError, match="asymmetric"):
            ExternalIssuer(ISSUER, idp.url, AUDIENCE, algorithms, "roles", ROLE_MAP, "partners", directory)


def test_an_unknown_kid_triggers_a_single_refetch(idp: IdP, issuer: ExternalIssuer) -> None:
    issuer.verify(idp.token())
    assert idp.hits == 1
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unpublished = idp.token(kid="unpublished", signer=stranger)
    assert refused(issuer, unpublished) == "unknown signing key"
    assert idp.hits == 2
    assert refused(issuer, unpublished) == "unknown signing key"
    assert idp.hits == 2  # rate-limited: junk kids cannot hammer the issuer


def test_a_rotated_issuer_key_is_picked_up_by_the_refetch(idp: IdP, issuer: ExternalIssuer) -> None:
    issuer.verify(idp.token())
    idp.add_key("k2")
    assert issuer.verify(idp.token(kid="k2")).username == "dora"
    assert idp.hits == 2


def test_an_unreachable_jwks_refuses_tokens(idp: IdP, directory: UserDirectory) -> None:
    with httpx.Client(timeout=2.0) as http:
        external = ExternalIssuer(
            ISSUER,
            "http://127.0.0.1:9/jwks",
            AUDIENCE,
            ["RS256"],
            "roles",
            ROLE_MAP,
            "p",
            directory,
            http=http,
        )
        assert refused(external, idp.token(roles=["aima-user"])) == "issuer keys unavailable"


def test_a_disabled_external_user_is_refused(
    idp: IdP, issuer: ExternalIssuer, directory: UserDirectory
) -> None:
    principal = issuer.verify(idp.token())
    directory.disable(principal.user_id)
    assert refused(issuer, idp.token()) == "user disabled"


def test_the_token_service_delegates_to_the_external_issuer(
    idp: IdP, issuer: ExternalIssuer, directory: UserDirectory, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'aima.db'}")
    keyring = KeyRing(db, encryption_secret="secret", lifetime_s=3600)
    tokens = TokenService(
        db,
        keyring,
        issuer="aima",
        audience=AUDIENCE,
        access_ttl=300,
        refresh_ttl=3600,
        directory=directory,
        external=issuer,
    )
    external = tokens.verify_access(idp.token())
    assert (external.username, external.auth) == ("dora", "oidc")
    # our own tokens still verify, for the provisioned user too
    assert tokens.verify_access(tokens.issue_access(external)) == external
    with pytest.raises(InvalidToken):
        tokens.verify_access(idp.token(aud="another-app"))
    db.dispose()


def test_external_issuer_from_settings(idp: IdP, directory: UserDirectory, tmp_path: Path) -> None:
    assert external_issuer_from_settings(load_settings(data_dir=tmp_path), directory) is None
    base = {"data_dir": tmp_path, "oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}
    with pytest.raises(SettingsError, match="AIMA_OIDC_JWKS_URL"):
        external_issuer_from_settings(load_settings(**base), directory)
    with pytest.raises(SettingsError, match="AIMA_OIDC_ALGORITHMS"):
        external_issuer_from_settings(
            load_settings(**base, oidc_jwks_url=idp.url, oidc_algorithms=["HS256"]), directory
        )
    with pytest.raises(SettingsError, match="AIMA_OIDC_ROLE_MAP"):
        external_issuer_from_settings(
            load_settings(**base, oidc_jwks_url=idp.url, oidc_role_map={"x": "superuser"}), directory
        )
    configured = external_issuer_from_settings(
        load_settings(**base, oidc_jwks_url=idp.url, oidc_tenant=f"t-{uuid.uuid4().hex[:6]}"), directory
    )
    assert configured is not None
    assert configured.verify(idp.token(roles=["aima-guest"])).role is GlobalRole.GUEST
    configured.close()
