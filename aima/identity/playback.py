"""Playback tickets: short-lived signed URLs for a media file's own bytes.

A ``<video>`` or ``<audio>`` element fetches its source itself, in many range requests, and cannot
send an ``Authorization`` header. So the gateway, after authorising and auditing a playback request
of a signed-in user, issues a ticket: a JWT signed by AIMA's key ring, addressed to the playback
route only (``aud`` = `PLAYBACK_AUDIENCE`, ``kind`` = ``playback``), bound to the tenant, user, case
and file, and valid for `PLAYBACK_TTL_S` seconds. It is no access token (another audience), and an
access or delegation token is no ticket.

A ticket is checked on every request it is presented with: signature, issuer, audience, claims,
expiry, the key still in the ring, and the user still enabled. The gateway also re-checks the user's
membership of the case on each request (`functions.api.routes.playback`), so removing a member ends
their playback at once, not when the ticket expires.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from aima.identity.errors import InvalidToken, decode_reason
from aima.identity.keys import KeyRing, UnknownKey
from aima.identity.model import Principal
from aima.identity.tokens import LEEWAY_S, peek, subject_of
from aima.identity.users import UserDirectory

PLAYBACK_AUDIENCE = "aima-playback"
PLAYBACK_KIND = "playback"
PLAYBACK_TTL_S = 900
"""A ticket's lifetime: long enough to watch a while; the page asks for a new one when it runs out."""
PLAYBACK_CLAIMS = ["iss", "aud", "sub", "tid", "case", "media", "kind", "iat", "nbf", "exp", "jti"]


@dataclass(frozen=True, slots=True)
class Ticket:
    """An issued ticket and its expiry (epoch seconds)."""

    token: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class PlaybackGrant:
    """A verified ticket: who may play which file, whether it was an explicit opening of a sensitive
    file (``opened``), and until when."""

    principal: Principal
    case_id: str
    media_id: str
    opened: bool
    expires_at: float


class PlaybackTickets:
    """Issues and verifies playback tickets with the key ring that signs AIMA's tokens."""

    def __init__(
        self, keyring: KeyRing, directory: UserDirectory, *, issuer: str, ttl_s: int = PLAYBACK_TTL_S
    ) -> None:
        if not 0 < ttl_s <= keyring.retain_s:
            raise ValueError("a playback ticket's lifetime must be positive and within the key retention")
        self._keys = keyring
        self._directory = directory
        self._issuer = issuer
        self.ttl_s = ttl_s

    def issue(self, principal: Principal, case_id: str, media_id: str, *, opened: bool) -> Ticket:
        """A ticket for ``principal`` to play ``media_id`` of ``case_id``. Only issue one after
        authorising and auditing exactly that."""
        key = self._keys.active()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": PLAYBACK_AUDIENCE,
            "sub": principal.user_id,
            "tid": principal.tenant_id,
            "case": case_id,
            "media": media_id,
            "opened": opened,
            "kind": PLAYBACK_KIND,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
        return Ticket(token, now + self.ttl_s)

    def verify(self, token: str, *, case_id: str, media_id: str) -> PlaybackGrant:
        """The grant ``token`` carries for this file; raises `InvalidToken` unless it is a valid,
        unexpired ticket of ours for exactly ``case_id``/``media_id`` whose user is still enabled."""
        header, _ = peek(token)
        try:
            key = self._keys.key_for(header)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self._keys.algorithm],
                audience=PLAYBACK_AUDIENCE,
                issuer=self._issuer,
                options={"require": PLAYBACK_CLAIMS},
                leeway=LEEWAY_S,
            )
        except UnknownKey as exc:
            raise InvalidToken(str(exc)) from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(decode_reason(exc)) from exc
        if claims["kind"] != PLAYBACK_KIND or claims["aud"] != PLAYBACK_AUDIENCE:
            raise InvalidToken("not a playback ticket")
        if not all(isinstance(claims[name], int | float) for name in ("iat", "exp")):
            raise InvalidToken("malformed token")
        if claims["exp"] - claims["iat"] > self.ttl_s:
            raise InvalidToken("lifetime too long")
        if claims["case"] != case_id or claims["media"] != media_id:
            raise InvalidToken("ticket for another file")
        principal = subject_of(self._directory, claims)
        return PlaybackGrant(principal, case_id, media_id, claims.get("opened") is True, float(claims["exp"]))
