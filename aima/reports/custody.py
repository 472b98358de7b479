"""Chain of custody: a report signed over its content and the audit chain head it was made at.

`sign` puts a compact JWS (ES256, the platform key ring that signs access tokens and events,
`aima.identity.keys.KeyRing`) into ``report.custody``. Its claims bind

* ``dig``: the SHA-256 of the report in canonical JSON, without the signature fields, so no part
  of the report (a hash, a finding, a sentence) can change without breaking it;
* ``head``: the tenant's audit chain head when the report was made (``seq`` and ``hash``).

`verify_against` is what ``aima audit verify --against REPORT`` runs: the signature must hold, the
report must be unchanged, and the chain stored now must still have, at the report's ``seq``, the hash
the report recorded, with every record up to there intact. Someone with full database access can
rewrite the chain and recompute every hash so that the chain verifies on its own; the report, kept
outside the database, still holds the old head hash, which the rewritten chain no longer has. They
cannot re-sign a report either: the private key is stored encrypted with
``AIMA_KEY_ENCRYPTION_SECRET``, which the database does not hold.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import jwt

from aima.identity.keys import KeyRing, UnknownKey
from aima.reports.model import AuditHead, CaseReport
from aima.storage.audit import AuditLog

ISSUER = "aima-reports"
_UNSIGNED = {"signature": None, "key_id": None}


class CustodyError(ValueError):
    """The report's custody does not hold; the message says why."""


def report_digest(report: CaseReport) -> str:
    """SHA-256 of the report in canonical JSON, its signature fields left empty."""
    unsigned = report.model_copy(update={"custody": report.custody.model_copy(update=_UNSIGNED)})
    canonical = json.dumps(unsigned.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def sign(report: CaseReport, keys: KeyRing) -> CaseReport:
    """``report`` with its custody signed by the ring's active key."""
    key = keys.active()
    head = report.custody.audit_head
    claims = {
        "iss": ISSUER,
        "rid": report.report_id,
        "cid": report.case_id,
        "ver": report.version,
        "dig": report_digest(report),
        "head": head.model_dump(mode="json"),
        "iat": int(time.time()),
    }
    token = jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
    custody = report.custody.model_copy(update={"signature": token, "key_id": key.kid})
    return report.model_copy(update={"custody": custody})


def check_signature(report: CaseReport, keys: KeyRing) -> dict[str, Any]:
    """The signature's claims; raises `CustodyError` unless the report is signed by a platform key
    and unchanged since."""
    token = report.custody.signature
    if not token:
        raise CustodyError("the report is not signed")
    try:
        key = keys.key_for(jwt.get_unverified_header(token))
    except UnknownKey:
        raise CustodyError(
            "the report was not signed with a key of this platform (or the key was retired)"
        ) from None
    except jwt.PyJWTError:
        raise CustodyError("the report's signature is malformed") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[keys.algorithm],
            issuer=ISSUER,
            options={"require": ["iss", "rid", "dig", "head", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise CustodyError(f"the report's signature is invalid ({type(exc).__name__})") from None
    if claims["rid"] != report.report_id:
        raise CustodyError("the signature belongs to another report")
    if claims["dig"] != report_digest(report):
        raise CustodyError("the report was changed after it was signed")
    if AuditHead.model_validate(claims["head"]) != report.custody.audit_head:
        raise CustodyError("the report's audit head differs from the signed one")
    return claims


def verify_against(report: CaseReport, keys: KeyRing, audit: AuditLog) -> list[str]:
    """Problems found when checking the stored audit chain against ``report`` (empty: it holds).

    Raises `CustodyError` when the report itself cannot be trusted (unsigned, altered, foreign key).
    """
    check_signature(report, keys)
    head = report.custody.audit_head
    problems = audit.verify(head.chain)
    stored = audit.hash_at(head.chain, head.seq)
    if stored is None:
        problems.append(f"record {head.seq}, the chain head when report v{report.version} was made, is gone")
    elif stored != head.hash:
        problems.append(
            f"record {head.seq} has hash {stored[:16]}… but report v{report.version} recorded "
            f"{head.hash[:16]}…: the chain was rewritten after the report was made"
        )
    return problems
