"""The CloudEvents 1.0 envelope that every AIMA event travels in.

Context attributes follow the CloudEvents 1.0 spec; AIMA uses three extension attributes:
``traceparent``/``tracestate`` (W3C trace context, the CloudEvents distributed-tracing extension),
``tenantid`` and ``caseid`` (routing and scope; never content).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SPEC_VERSION = "1.0"
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
CORE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data"}
)


def new_event_id() -> str:
    """A fresh random event id."""
    return str(uuid.uuid4())


def derived_event_id(parent_id: str, *parts: str) -> str:
    """A deterministic id for an event caused by ``parent_id``.

    A handler that is redelivered the same event emits the same ids again, so duplicate
    suppression on the bus drops the repeats: at-least-once delivery with idempotent effects.
    """
    digest = hashlib.sha256("\x1f".join((parent_id, *parts)).encode()).hexdigest()
    return str(uuid.UUID(digest[:32]))


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event with JSON data; unknown extension attributes are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = SPEC_VERSION
    id: str = Field(default_factory=new_event_id, min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str | None = "application/json"
    dataschema: str | None = None
    data: dict[str, Any] | None = None

    traceparent: str | None = None
    tracestate: str | None = None
    tenantid: str | None = None
    caseid: str | None = None

    @field_validator("specversion")
    @classmethod
    def _spec(cls, value: str) -> str:
        if value != SPEC_VERSION:
            raise ValueError(f"unsupported specversion {value!r}; expected {SPEC_VERSION}")
        return value

    @model_validator(mode="after")
    def _extension_names(self) -> CloudEvent:
        for name in self.model_extra or {}:
            if not _EXTENSION_NAME.match(name):
                raise ValueError(f"invalid CloudEvents extension attribute name {name!r}")
        return self

    @property
    def extensions(self) -> dict[str, Any]:
        """Extension attributes that are set (the known ones plus any extra)."""
        known = {
            name: getattr(self, name)
            for name in ("traceparent", "tracestate", "tenantid", "caseid")
            if getattr(self, name) is not None
        }
        return {**known, **(self.model_extra or {})}

    def to_json(self) -> bytes:
        """Structured-mode JSON (``application/cloudevents+json``)."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CloudEvent:
        """Parse structured-mode JSON."""
        return cls.model_validate_json(raw)

    def with_extensions(self, **values: Any) -> CloudEvent:
        """A copy with extension attributes set (None values are ignored)."""
        return self.model_copy(update={k: v for k, v in values.items() if v is not None})
