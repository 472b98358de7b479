"""The CloudEvents HTTP binding against the official `cloudevents` SDK, in both directions.

cloudevents 2.x has two APIs: the new core (`cloudevents.core`, spec-compliant percent-encoding)
and the 1.x-compatible one (`cloudevents.v1`); both must read what we write and vice versa.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from cloudevents.v1.conversion import to_binary as v1_to_binary
from cloudevents.v1.conversion import to_structured as v1_to_structured
from cloudevents.v1.http import CloudEvent as V1Event
from cloudevents.v1.http import from_http as v1_from_http

from events.envelope import CloudEvent
from events.http import InvalidCloudEvent, from_http, to_binary, to_structured

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
Encoder = Callable[[Any], Any]
WHEN = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def sdk_event() -> SdkEvent:
    return SdkEvent(
        {
            "id": "evt-1",
            "source": "/aima/ingest",
            "type": "io.aima.media.uploaded.v1",
            "subject": "media/m 1",
            "time": WHEN,
            "datacontenttype": "application/json",
            "traceparent": TRACEPARENT,
            "tenantid": "t1",
            "caseid": 'Fall 7/ü, "quoted" 100%',
            "priority": "high",
        },
        {"media_id": "m1", "size": 42, "nested": {"ok": True}},
    )


def our_event() -> CloudEvent:
    return CloudEvent(
        id="evt-2",
        source="/aima/functions/probe",
        type="io.aima.media.probed.v1",
        subject="media/m 2",
        time=WHEN,
        data={"media_id": "m2", "kind": "video", "duration_s": 3.5},
        traceparent=TRACEPARENT,
        tenantid="t1",
        caseid='Fall 7/ü, "quoted" 100%',
        priority="high",
    )


def assert_read_from_sdk(event: CloudEvent) -> None:
    assert (event.id, event.source, event.type, event.subject) == (
        "evt-1",
        "/aima/ingest",
        "io.aima.media.uploaded.v1",
        "media/m 1",
    )
    assert event.time == WHEN
    assert event.datacontenttype == "application/json"
    assert event.data == {"media_id": "m1", "size": 42, "nested": {"ok": True}}
    assert event.extensions == {
        "traceparent": TRACEPARENT,
        "tenantid": "t1",
        "caseid": 'Fall 7/ü, "quoted" 100%',
        "priority": "high",
    }


@pytest.mark.parametrize("encode", [to_binary_event, to_structured_event], ids=["binary", "structured"])
def test_sdk_events_parse(encode: Encoder) -> None:
    message = encode(sdk_event())
    assert_read_from_sdk(from_http(message.headers, message.body))


@pytest.mark.parametrize("encode", [to_binary, to_structured], ids=["binary", "structured"])
def test_our_events_parse_with_the_sdk(encode: Encoder) -> None:
    headers, body = encode(our_event())
    parsed = from_http_event(HTTPMessage(headers, body))
    attributes = parsed.get_attributes()
    assert attributes["id"] == "evt-2"
    assert attributes["type"] == "io.aima.media.probed.v1"
    assert attributes["subject"] == "media/m 2"
    assert attributes["time"] == WHEN
    assert attributes["traceparent"] == TRACEPARENT
    assert attributes["caseid"] == 'Fall 7/ü, "quoted" 100%'
    assert attributes["priority"] == "high"
    assert parsed.get_data() == {"media_id": "m2", "kind": "video", "duration_s": 3.5}


def test_binary_headers_are_percent_encoded_where_the_spec_requires() -> None:
    headers, body = to_binary(our_event())
    assert headers["ce-caseid"] == "Fall%207/%C3%BC,%20%22quoted%22%20100%25"
    assert headers["ce-traceparent"] == TRACEPARENT
    assert headers["content-type"] == "application/json"
    assert body == b'{"media_id":"m2","kind":"video","duration_s":3.5}'


@pytest.mark.parametrize("encode", [v1_to_binary, v1_to_structured], ids=["binary", "structured"])
def test_the_1x_compatible_sdk_api_interoperates(encode: Encoder) -> None:
    event = V1Event({"id": "evt-3", "source": "/s", "type": "io.aima.test.v1", "caseid": "c9"}, {"n": 1})
    headers, body = encode(event)
    ours = from_http(headers, body)
    assert (ours.id, ours.caseid, ours.data) == ("evt-3", "c9", {"n": 1})

    back = v1_from_http(*to_binary(ours))
    assert (back["id"], back["caseid"], back.get_data()) == ("evt-3", "c9", {"n": 1})
    back = v1_from_http(*to_structured(ours))
    assert (back["id"], back["caseid"], back.get_data()) == ("evt-3", "c9", {"n": 1})


@pytest.mark.parametrize("encode", [to_binary, to_structured], ids=["binary", "structured"])
def test_round_trip(encode: Encoder) -> None:
    event = our_event()
    assert from_http(*encode(event)) == event
    empty = CloudEvent(source="/s", type="io.aima.test.v1", data=None)
    assert from_http(*encode(empty)) == empty


def test_header_names_are_case_insensitive_and_values_percent_decoded() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "x1",
        "ce-SOURCE": "/s",
        "Ce-Type": "io.aima.test.v1",
        "Ce-Subject": "a%20b%C3%BC%25",
        "Content-Type": "application/json; charset=utf-8",
    }
    event = from_http(headers, b'{"k": "v"}')
    assert event.subject == "a bü%"
    assert event.datacontenttype == "application/json; charset=utf-8"
    assert event.data == {"k": "v"}
    structured = from_http(
        {"Content-Type": "Application/CloudEvents+JSON; charset=UTF-8"}, to_structured(event)[1]
    )
    assert structured == event


BINARY = {"ce-specversion": "1.0", "ce-id": "x1", "ce-source": "/s", "ce-type": "io.aima.test.v1"}


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({k: v for k, v in BINARY.items() if k != "ce-source"}, b"", "missing required attribute 'source'"),
        ({**BINARY, "ce-id": ""}, b"", "missing required attribute 'id'"),
        ({**BINARY, "ce-specversion": "0.3"}, b"", "unsupported specversion '0.3'"),
        ({**BINARY, "content-type": "application/json"}, b"{not json", "binary-mode body is not valid JSON"),
        ({**BINARY, "content-type": "text/plain"}, b"hello", "unsupported datacontenttype 'text/plain'"),
        ({**BINARY, "content-type": "application/json"}, b"[1, 2]", "data must be a JSON object, not list"),
        ({**BINARY, "ce-time": "yesterday"}, b"", "invalid attribute 'time'"),
        ({**BINARY, "ce-shoe_size": "44"}, b"", "invalid CloudEvents extension attribute name 'shoe_size'"),
        ({**BINARY, "ce-subject": "%FF"}, b"", "header 'ce-subject' is not percent-encoded UTF-8"),
        ({"content-type": "application/json"}, b'{"id": "x"}', "not a CloudEvent: no ce-* headers"),
        (
            {"content-type": "application/cloudevents+json"},
            b"{oops",
            "structured-mode body is not valid JSON",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'["x"]',
            "structured-mode body must be a JSON object",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data_base64": "AAE="}',
            "data_base64 is not supported",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "id": "x", "type": "t"}',
            "missing required attribute 'source'",
        ),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", "batch mode"),
        ({"content-type": "application/cloudevents+avro"}, b"", "unsupported event format"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_reason(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(InvalidCloudEvent) as caught:
        from_http(headers, body)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)
