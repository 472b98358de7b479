"""Signed events: a function accepts an event only from the broker or another AIMA process.

Every event an AIMA process publishes carries the extension attribute ``aimasig``: a compact JWS
(ES256 by default) made with the platform's signing key ring (`aima.identity.keys.KeyRing`, the
keys that sign access tokens; every AIMA process can read it from the database with
``AIMA_KEY_ENCRYPTION_SECRET``). Its claims bind the signature to the event:

* ``eid`` the event id, ``typ`` its type, ``src`` its source;
* ``dig`` the SHA-256 of its data in canonical JSON (sorted keys, no spaces), so a changed
  ``sha256``, tenant or media id in the payload breaks the signature;
* ``iss`` ``aima-events``, ``iat`` when it was signed.

A CloudEvents extension survives every hop AIMA uses (JetStream, a Knative Broker and Trigger,
binary and structured HTTP mode), so the check works unchanged behind a broker: no header has to
be added by the broker, and a replayed signed event is just a redelivery of the same event id,
which the processed-events ledger absorbs. An event older than `MAX_AGE_S` (the dead-letter
stream's retention) is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

import jwt

from aima.identity.keys import KeyRing, UnknownKey
from events.bus import DeadLetter, EventBus, Subscription
from events.envelope import CloudEvent

SIGNATURE = "aimasig"
ISSUER = "aima-events"
MAX_AGE_S = 30 * 86_400
LEEWAY_S = 60


class InvalidSignature(ValueError):
    """The event is unsigned, or its signature does not match it; the message says why."""


def data_digest(data: dict[str, Any] | None) -> str:
    """SHA-256 of ``data`` in canonical JSON (what a signature binds)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class EventSigner:
    """Signs and verifies events with a key ring (see module docstring)."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def sign(self, event: CloudEvent) -> CloudEvent:
        """A copy of ``event`` with a fresh ``aimasig`` extension."""
        key = self._keys.active()
        claims = {
            "iss": ISSUER,
            "eid": event.id,
            "typ": event.type,
            "src": event.source,
            "dig": data_digest(event.data),
            "iat": int(time.time()),
        }
        token = jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
        return event.model_copy(update={SIGNATURE: token})

    def verify(self, event: CloudEvent) -> None:
        """Raise `InvalidSignature` unless ``event`` carries a valid signature of itself."""
        token = (event.model_extra or {}).get(SIGNATURE)
        if not isinstance(token, str) or not token:
            raise InvalidSignature("the event is not signed (no aimasig attribute)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidSignature("the signature is malformed") from None
        try:
            key = self._keys.key_for(header)
        except UnknownKey:
            raise InvalidSignature("the signature was not made with a key of this platform") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self._keys.algorithm],
                issuer=ISSUER,
                options={"require": ["iss", "eid", "typ", "dig", "iat"]},
                leeway=LEEWAY_S,
            )
        except jwt.PyJWTError as exc:
            raise InvalidSignature(f"the signature is invalid ({type(exc).__name__})") from None
        if claims["eid"] != event.id or claims["typ"] != event.type or claims.get("src") != event.source:
            raise InvalidSignature("the signature belongs to another event")
        if claims["dig"] != data_digest(event.data):
            raise InvalidSignature("the event data was changed after it was signed")
        if not isinstance(claims["iat"], int) or claims["iat"] < time.time() - MAX_AGE_S:
            raise InvalidSignature("the signature is too old")


class SigningBus(EventBus):
    """An `EventBus` that signs every event it publishes; everything else goes to ``inner``."""

    def __init__(self, inner: EventBus, signer: EventSigner) -> None:
        self.inner = inner
        self._signer = signer

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, event: CloudEvent) -> bool:
        return await self.inner.publish(self._signer.sign(event))

    async def publish_many(self, events: Sequence[CloudEvent]) -> int:
        return await self.inner.publish_many([self._signer.sign(event) for event in events])

    async def subscribe(self, subscription: Subscription) -> None:
        await self.inner.subscribe(subscription)

    async def broadcast(self, subscription: Subscription) -> None:
        await self.inner.broadcast(subscription)

    async def dead_letters(self, consumer: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return await self.inner.dead_letters(consumer, limit)

    async def health(self) -> None:
        await self.inner.health()

    async def close(self) -> None:
        await self.inner.close()
