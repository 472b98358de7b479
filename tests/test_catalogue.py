"""The event catalogue: names, versioned payloads, checked-in JSON Schemas, envelope round trips."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from events import schemas_export
from events.catalogue import (
    CATALOGUE,
    MediaUploaded,
    UnknownEventType,
    json_schemas,
    make_event,
    parse_data,
)
from events.envelope import CloudEvent, derived_event_id

SHA = "a" * 64


def uploaded() -> MediaUploaded:
    return MediaUploaded(
        tenant_id="t1",
        case_id="c1",
        media_id="m1",
        object_key="cases/c1/m1",
        sha256=SHA,
        size=10,
        content_type="audio/wav",
    )


def test_every_type_is_named_and_versioned() -> None:
    assert len(CATALOGUE) >= 20
    for event_type, model in CATALOGUE.items():
        assert re.fullmatch(r"io\.aima(\.[a-z]+)+\.v[0-9]+", event_type), event_type
        assert event_type == model.TYPE
        assert model.DESCRIPTION


def test_checked_in_schemas_match_the_models() -> None:
    assert schemas_export.differences() == []


def test_schema_check_detects_a_stale_file(tmp_path: Path) -> None:
    schemas_export.write(tmp_path)
    assert schemas_export.differences(tmp_path) == []
    victim = tmp_path / "io.aima.media.uploaded.v1.json"
    victim.write_text(victim.read_text().replace('"sha256"', '"sha-256"'))
    (tmp_path / "io.aima.retired.v1.json").write_text("{}")
    assert schemas_export.differences(tmp_path) == [
        "io.aima.media.uploaded.v1.json",
        "io.aima.retired.v1.json",
    ]


def test_event_data_validates_against_its_exported_schema() -> None:
    event = make_event(uploaded(), source="/aima/ingest")
    jsonschema.validate(event.data, json_schemas()[event.type])
    bad = dict(event.data or {}, sha256="xyz")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schemas()[event.type])


def test_make_and_parse_round_trip_through_json() -> None:
    event = make_event(uploaded(), source="/aima/ingest", subject="m1")
    assert (event.tenantid, event.caseid) == ("t1", "c1")
    back = CloudEvent.from_json(event.to_json())
    assert back == event
    assert parse_data(back, MediaUploaded) == uploaded()


def test_parse_refuses_unknown_types_and_bad_payloads() -> None:
    with pytest.raises(UnknownEventType):
        parse_data(CloudEvent(source="x", type="io.aima.nope.v1", data={}))
    event = make_event(uploaded(), source="/x")
    with pytest.raises(ValidationError):
        parse_data(event.model_copy(update={"data": {**(event.data or {}), "size": -1}}))
    with pytest.raises(UnknownEventType):
        parse_data(event, expected=CATALOGUE["io.aima.case.created.v1"])  # type: ignore[arg-type]


def test_envelope_rules() -> None:
    with pytest.raises(ValidationError):
        CloudEvent(source="x", type="t", specversion="0.3")
    with pytest.raises(ValidationError):
        CloudEvent.model_validate({"source": "x", "type": "t", "Bad-Name": 1})
    ext = CloudEvent(source="x", type="t").with_extensions(
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    )
    assert "traceparent" in json.loads(ext.to_json())


def test_derived_ids_are_deterministic_and_distinct() -> None:
    assert derived_event_id("e1", "probe") == derived_event_id("e1", "probe")
    assert derived_event_id("e1", "probe") != derived_event_id("e1", "faces")
    assert derived_event_id("e1", "probe") != derived_event_id("e2", "probe")


def test_architecture_doc_lists_every_event_type() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    missing = [t for t in CATALOGUE if f"`{t}`" not in doc]
    assert missing == []
