"""Who appears in a case, as reviewers correct it: the common part of case speakers and persons.

An identity has a number that stays with it for its life ("Speaker 3", "Person 3"), a name a user
may give it, and ``merged_into`` when a user merged it into another: nothing else is rewritten by a
merge, and every reader resolves an identity to the one it now is (`Identities.resolution`).

Numbers come from a collection of their own with ``_id = {case_id}-n{number}``: an insert with a
taken id fails, so two writers never share a number. Every document carries ``tenant_id`` and
``case_id``, so deleting the case removes them with the rest of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aima.domain import utcnow
from aima.storage.documents import DocumentStore, DuplicateDocument

MAX_NAME = 100
MAX_MERGE_CHAIN = 64


class IdentityError(ValueError):
    """A correction that cannot be made (the message says why)."""


class CaseIdentity(BaseModel):
    """One speaker or person of a case."""

    model_config = ConfigDict(extra="ignore")

    NOUN: ClassVar[str] = "Identity"

    id: str
    tenant_id: str
    case_id: str
    number: int = Field(ge=1)
    name: str | None = None
    merged_into: str | None = None
    origin: str = "analysis"
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def display_name(self) -> str:
        """The user's name for it, else "<Noun> N" (N stays the same for its life)."""
        return self.name or f"{self.NOUN} {self.number}"


I = TypeVar("I", bound=CaseIdentity)  # noqa: E741


class Identities(Generic[I]):
    """Identities of type ``model`` in ``collection``, numbered through ``numbers``."""

    def __init__(self, documents: DocumentStore, collection: str, numbers: str, model: type[I]) -> None:
        self._docs = documents
        self._collection = collection
        self._numbers = numbers
        self._model = model
        self._owner = f"{model.NOUN.lower()}_id"

    def get(self, tenant_id: str, case_id: str, identity_id: str) -> I | None:
        doc = self._docs.find_one(self._collection, where(tenant_id, case_id, _id=identity_id))
        return self._identity(doc) if doc else None

    def all(self, tenant_id: str, case_id: str, *, merged: bool = False) -> list[I]:
        """The case's identities by number; without ``merged``, only those not merged into another."""
        docs = self._docs.find(self._collection, where(tenant_id, case_id), sort=[("number", 1)])
        found = [self._identity(doc) for doc in docs]
        return found if merged else [item for item in found if item.merged_into is None]

    def resolution(self, tenant_id: str, case_id: str) -> dict[str, I]:
        """Every identity id of the case (merged ones included) -> the identity it now is."""
        known = {item.id: item for item in self.all(tenant_id, case_id, merged=True)}
        resolved: dict[str, I] = {}
        for item in known.values():
            current = item
            for _ in range(MAX_MERGE_CHAIN):
                if current.merged_into is None or current.merged_into not in known:
                    break
                current = known[current.merged_into]
            resolved[item.id] = current
        return resolved

    def create(
        self,
        tenant_id: str,
        case_id: str,
        identity_id: str,
        *,
        name: str | None = None,
        origin: str = "analysis",
    ) -> I:
        """A new identity with the case's next number; creating the same id twice returns the first
        (a re-run after a crash creates no twin)."""
        existing = self.get(tenant_id, case_id, identity_id)
        if existing is not None:
            return existing
        number = self._reserve_number(tenant_id, case_id, identity_id)
        now = utcnow()
        made = self._model(
            id=identity_id,
            tenant_id=tenant_id,
            case_id=case_id,
            number=number,
            name=clean_name(name, self._model.NOUN.lower()),
            origin=origin,
            created_at=now,
            updated_at=now,
        )
        try:
            self._docs.insert_one(
                self._collection, {"_id": identity_id, **made.model_dump(mode="python", exclude={"id"})}
            )
        except DuplicateDocument:
            found = self.get(tenant_id, case_id, identity_id)
            if found is None:  # taken in another case: ids are uuids, so this is a bug
                raise
            return found
        return made

    def _reserve_number(self, tenant_id: str, case_id: str, identity_id: str) -> int:
        mine = self._docs.find_one(self._numbers, where(tenant_id, case_id, **{self._owner: identity_id}))
        if mine is not None:
            return int(mine["number"])
        last = self._docs.find(self._numbers, where(tenant_id, case_id), sort=[("number", -1)], limit=1)
        number = int(last[0]["number"]) + 1 if last else 1
        while True:
            doc = {"_id": f"{case_id}-n{number}", **where(tenant_id, case_id)}
            try:
                self._docs.insert_one(self._numbers, {**doc, "number": number, self._owner: identity_id})
            except DuplicateDocument:
                number += 1
                continue
            return number

    def rename(self, identity: I, name: str | None) -> I:
        """Give ``identity`` a name (None or blank: back to "<Noun> N"); the caller holds the lock."""
        update = {"name": clean_name(name, self._model.NOUN.lower()), "updated_at": utcnow()}
        self._set(identity, update)
        return identity.model_copy(update=update)

    def merge(self, source: I, into: I) -> I:
        """Record ``source`` merged into ``into``; ``into`` keeps its name or takes the source's if it
        has none. Returns ``into`` as it now is; the caller holds the lock."""
        now = utcnow()
        self._set(source, {"merged_into": into.id, "updated_at": now})
        update: dict[str, Any] = {"updated_at": now}
        if into.name is None and source.name is not None:
            update["name"] = source.name
        self._set(into, update)
        return into.model_copy(update=update)

    def _set(self, identity: I, update: Mapping[str, Any]) -> None:
        self._docs.update_one(
            self._collection,
            where(identity.tenant_id, identity.case_id, _id=identity.id),
            {"$set": dict(update)},
        )

    def _identity(self, doc: Mapping[str, Any]) -> I:
        return self._model.model_validate({**doc, "id": doc["_id"]})


def clean_name(name: str | None, noun: str = "name") -> str | None:
    """A user-given name without surrounding or repeated blanks; None for blank. `IdentityError` if
    too long or holding control characters."""
    if name is None:
        return None
    cleaned = " ".join(name.split())
    if not cleaned:
        return None
    if len(cleaned) > MAX_NAME:
        raise IdentityError(f"a {noun} name has at most {MAX_NAME} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        raise IdentityError(f"a {noun} name may not contain control characters")
    return cleaned


def where(tenant_id: str, case_id: str, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "case_id": case_id, **fields}
