"""Signing in through the external OIDC issuer: the authorization code flow with PKCE, run by the
gateway for the review workspace (docs/security.md, *OIDC sign-in*).

`OidcSignIn.begin` makes the issuer's authorization URL and the pending sign-in (state, PKCE
verifier, nonce, where to go afterwards), sealed as a short-lived JWT signed by AIMA's own key ring;
the gateway keeps it in an HttpOnly cookie. `OidcSignIn.finish` checks the state against it,
exchanges the code at the issuer's token endpoint (with the verifier, and the client secret when
there is one), checks the ID token's signature, audience and nonce, and verifies the access token
as every API request from that issuer is verified (`ExternalIssuer.verify`: audience, role claim,
provisioning). The gateway then issues AIMA's own session for that principal.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import jwt

from aima.identity.errors import InvalidToken, decode_reason
from aima.identity.keys import KeyRing, UnknownKey
from aima.identity.model import Principal
from aima.identity.oidc import ExternalIssuer
from aima.settings import Settings, SettingsError

PENDING_AUDIENCE = "aima-oidc-signin"
PENDING_KIND = "oidc-signin"
PENDING_TTL_S = 600
DISCOVERY_TTL_S = 300.0


class SignInFailed(Exception):
    """A sign-in that cannot complete; ``reason`` is safe to show the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What a sign-in under way must remember until the issuer sends the browser back."""

    state: str
    verifier: str
    nonce: str
    return_to: str
    redirect_uri: str


def safe_return_path(value: str | None) -> str:
    """``value`` if it is a path of the workspace itself (no other origin, not the API), else ``/``."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\", "/api/"))
        or any(c in value for c in "\r\n\\")
    ):
        return "/"
    return value


class OidcSignIn:
    """The code flow against one issuer, for one client."""

    def __init__(
        self,
        issuer: ExternalIssuer,
        *,
        client_id: str,
        client_secret: str | None,
        scopes: str,
        display_name: str,
        keyring: KeyRing,
        jwt_issuer: str,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.display_name = display_name
        self._secret = client_secret
        self._scopes = scopes if "openid" in scopes.split() else f"openid {scopes}"
        self._keys = keyring
        self._jwt_issuer = jwt_issuer
        self._discovered: dict[str, Any] | None = None
        self._discovered_at = 0.0

    def begin(self, redirect_uri: str, return_to: str | None) -> tuple[str, str]:
        """The issuer's authorization URL to send the browser to, and the sealed pending sign-in."""
        endpoint = self._endpoint("authorization_endpoint")
        verifier = secrets.token_urlsafe(48)
        pending = PendingSignIn(
            state=secrets.token_urlsafe(24),
            verifier=verifier,
            nonce=secrets.token_urlsafe(24),
            return_to=safe_return_path(return_to),
            redirect_uri=redirect_uri,
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self._scopes,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in endpoint else "?"
        return f"{endpoint}{separator}{query}", self._seal(pending)

    def finish(
        self, sealed: str | None, state: str | None, code: str | None
    ) -> tuple[Principal, PendingSignIn]:
        """The principal the issuer vouches for, and the pending sign-in; `SignInFailed` otherwise."""
        if not sealed:
            raise SignInFailed("no sign-in is under way in this browser (or it took over 10 minutes)")
        pending = self._unseal(sealed)
        if not state or not secrets.compare_digest(state, pending.state):
            raise SignInFailed("the sign-in's state does not match")
        if not code:
            raise SignInFailed("the issuer sent no authorization code")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.verifier,
        }
        headers = {"Accept": "application/json"}
        if self._secret is None:
            form["client_id"] = self.client_id
        else:  # client_secret_basic: both parts form-urlencoded first (RFC 6749, 2.3.1)
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self._secret)}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        try:
            response = self.issuer.http.post(self._endpoint("token_endpoint"), data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise SignInFailed(
                f"the issuer's token endpoint cannot be reached ({type(exc).__name__})"
            ) from exc
        body = _json(response)
        if response.status_code != 200:
            error = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
            raise SignInFailed(f"the issuer refused the code: {error}")
        access, id_token = body.get("access_token"), body.get("id_token")
        if not isinstance(access, str) or not isinstance(id_token, str):
            raise SignInFailed("the issuer's answer lacks an access token or an ID token")
        try:
            claims = self.issuer.verify_id_token(id_token, self.client_id, pending.nonce)
            principal = self.issuer.verify(access)
        except InvalidToken as exc:
            raise SignInFailed(f"the issuer's token is not accepted: {exc.reason}") from exc
        if str(claims["sub"]) != _subject(access):
            raise SignInFailed("the ID token and the access token name different users")
        return principal, pending

    def _endpoint(self, name: str) -> str:
        now = time.monotonic()
        if self._discovered is None or now - self._discovered_at > DISCOVERY_TTL_S:
            url = f"{self.issuer.issuer.rstrip('/')}/.well-known/openid-configuration"
            try:
                response = self.issuer.http.get(url)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise SignInFailed(f"the issuer cannot be reached ({type(exc).__name__})") from exc
            if not isinstance(document, dict) or document.get("issuer") != self.issuer.issuer:
                raise SignInFailed("the issuer's discovery document names another issuer")
            self._discovered, self._discovered_at = document, now
        value = self._discovered.get(name)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise SignInFailed(f"the issuer publishes no {name}")
        return value

    def _seal(self, pending: PendingSignIn) -> str:
        key = self._keys.active()
        now = int(time.time())
        claims = {
            "iss": self._jwt_issuer,
            "aud": PENDING_AUDIENCE,
            "kind": PENDING_KIND,
            "iat": now,
            "exp": now + PENDING_TTL_S,
            "jti": uuid.uuid4().hex,
            "state": pending.state,
            "verifier": pending.verifier,
            "nonce": pending.nonce,
            "return_to": pending.return_to,
            "redirect_uri": pending.redirect_uri,
        }
        return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})

    def _unseal(self, sealed: str) -> PendingSignIn:
        try:
            key = self._keys.key_for(jwt.get_unverified_header(sealed))
            claims = jwt.decode(
                sealed,
                key,
                algorithms=[self._keys.algorithm],
                audience=PENDING_AUDIENCE,
                issuer=self._jwt_issuer,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except (jwt.PyJWTError, UnknownKey) as exc:
            reason = decode_reason(exc) if isinstance(exc, jwt.PyJWTError) else str(exc)
            raise SignInFailed(f"the pending sign-in is not valid ({reason})") from exc
        if claims.get("kind") != PENDING_KIND:
            raise SignInFailed("the pending sign-in is not valid (wrong kind)")
        try:
            return PendingSignIn(
                state=str(claims["state"]),
                verifier=str(claims["verifier"]),
                nonce=str(claims["nonce"]),
                return_to=safe_return_path(str(claims["return_to"])),
                redirect_uri=str(claims["redirect_uri"]),
            )
        except KeyError as exc:
            raise SignInFailed("the pending sign-in is not valid (incomplete)") from exc


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _subject(token: str) -> str | None:
    """The ``sub`` of a token already verified (read without checking again)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    sub = claims.get("sub")
    return str(sub) if sub is not None else None


def oidc_signin_from_settings(
    settings: Settings, issuer: ExternalIssuer | None, keyring: KeyRing
) -> OidcSignIn | None:
    """The sign-in configured by ``AIMA_OIDC_CLIENT_ID``, or None when it is unset."""
    if settings.oidc_client_id is None:
        return None
    if issuer is None:
        raise SettingsError("AIMA_OIDC_CLIENT_ID", "needs AIMA_OIDC_ISSUER (and its JWKS URL and audience)")
    secret = settings.oidc_client_secret
    return OidcSignIn(
        issuer,
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret is not None else None,
        scopes=settings.oidc_scopes,
        display_name=settings.oidc_display_name,
        keyring=keyring,
        jwt_issuer=settings.jwt_issuer,
    )
