"""The CloudEvents 1.0 HTTP protocol binding: pure functions between HTTP messages and `CloudEvent`.

Binary mode carries attributes in ``ce-*`` headers (percent-encoded, spec section 3.1.3.2),
``datacontenttype`` in ``Content-Type`` and the data as the body. Structured mode carries the whole
event as ``application/cloudevents+json``. Batch mode is not supported. AIMA event data is a JSON
object, so binary bodies must be JSON too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from pydantic import ValidationError

from events.envelope import SPEC_VERSION, CloudEvent

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
_CE = "ce-"
_REQUIRED = ("specversion", "id", "source", "type")
# printable ASCII stays as is, except space, double quote and percent (HTTP binding 3.1.3.2)
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


class InvalidCloudEvent(ValueError):
    """The HTTP message is not a CloudEvent this binding accepts; the message says why."""


def from_http(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """Parse a binary- or structured-mode HTTP message (header names in any case)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type")
    media_type = _media_type(content_type)
    if media_type == BATCH_CONTENT_TYPE:
        raise InvalidCloudEvent(
            f"batch mode ({BATCH_CONTENT_TYPE}) is not supported; send one event per request"
        )
    if media_type.startswith("application/cloudevents"):
        if media_type != STRUCTURED_CONTENT_TYPE:
            raise InvalidCloudEvent(
                f"unsupported event format {media_type!r}; expected {STRUCTURED_CONTENT_TYPE}"
            )
        return _structured(body)
    if any(name.startswith(_CE) for name in lowered):
        return _binary(lowered, content_type, body)
    raise InvalidCloudEvent(
        f"not a CloudEvent: no ce-* headers (binary mode) and Content-Type is not {STRUCTURED_CONTENT_TYPE}"
    )


def to_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary mode: ``ce-*`` headers (extensions included), ``content-type`` and the JSON data."""
    attributes = event.model_dump(mode="json", exclude_none=True)
    data = attributes.pop("data", None)
    content_type = attributes.pop("datacontenttype", None)
    headers = {_CE + name: quote(_text(value), safe=_HEADER_SAFE) for name, value in attributes.items()}
    if data is None:
        if content_type is not None:
            headers["content-type"] = content_type
        return headers, b""
    headers["content-type"] = content_type or "application/json"
    return headers, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def to_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Structured mode: the whole event as ``application/cloudevents+json``."""
    return {"content-type": STRUCTURED_CONTENT_TYPE}, event.to_json()


def _structured(body: bytes) -> CloudEvent:
    try:
        attributes = json.loads(body)
    except ValueError as exc:
        raise InvalidCloudEvent(f"structured-mode body is not valid JSON: {exc}") from None
    if not isinstance(attributes, dict):
        raise InvalidCloudEvent("structured-mode body must be a JSON object")
    if "data_base64" in attributes:
        raise InvalidCloudEvent("data_base64 is not supported: AIMA event data is a JSON object")
    return _build(attributes)


def _binary(headers: dict[str, str], content_type: str | None, body: bytes) -> CloudEvent:
    attributes: dict[str, Any] = {
        name.removeprefix(_CE): _decode_header(name, value)
        for name, value in headers.items()
        if name.startswith(_CE)
    }
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    if body:
        media_type = _media_type(content_type)
        if media_type and not (
            media_type in ("application/json", "text/json") or media_type.endswith("+json")
        ):
            raise InvalidCloudEvent(f"unsupported datacontenttype {content_type!r}: AIMA event data is JSON")
        try:
            attributes["data"] = json.loads(body)
        except ValueError as exc:
            raise InvalidCloudEvent(f"binary-mode body is not valid JSON: {exc}") from None
    return _build(attributes)


def _decode_header(name: str, value: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidCloudEvent(f"header {name!r} is not percent-encoded UTF-8") from None


def _build(attributes: dict[str, Any]) -> CloudEvent:
    for name in _REQUIRED:
        if attributes.get(name) in (None, ""):
            raise InvalidCloudEvent(f"missing required attribute {name!r}")
    if attributes["specversion"] != SPEC_VERSION:
        raise InvalidCloudEvent(
            f"unsupported specversion {attributes['specversion']!r}; only {SPEC_VERSION} is supported"
        )
    data = attributes.get("data")
    if data is not None and not isinstance(data, dict):
        raise InvalidCloudEvent(f"data must be a JSON object, not {type(data).__name__}")
    try:
        return CloudEvent.model_validate(attributes)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidCloudEvent(f"invalid attribute {where!r}: {message}" if where else message) from None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
