"""The JSON export and its published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from aima.reports.model import CaseReport
from aima.reports.schema import PUBLISHED, main, schema_text, stale, to_json, write
from tests.reports.conftest import Exported


def validator() -> Draft202012Validator:
    schema = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def test_the_published_schema_is_up_to_date() -> None:
    assert PUBLISHED.relative_to(Path(__file__).resolve().parents[2]) == Path(
        "docs/schemas/report.schema.json"
    )
    assert not stale(), "docs/schemas/report.schema.json is stale: run python -m aima.reports.schema"
    assert main(["--check"]) == 0


def test_check_mode_finds_a_stale_or_missing_schema(tmp_path: Path) -> None:
    path = tmp_path / "report.schema.json"
    assert stale(path)
    path.write_text("{}\n")
    assert stale(path)
    write(path)
    assert not stale(path)
    assert path.read_text() == schema_text()


def test_the_json_export_validates_against_the_published_schema(exported: Exported) -> None:
    document = json.loads(exported.text("report.json"))
    validator().validate(document)
    assert CaseReport.model_validate(document) == CaseReport.model_validate_json(exported.text("report.json"))
    assert exported.text("report.schema.json") == PUBLISHED.read_text(encoding="utf-8")


def test_the_json_export_is_the_report_as_stored(report: CaseReport) -> None:
    text = to_json(report)
    assert CaseReport.model_validate_json(text) == report
    assert json.loads(text)["timeline"][0]["evidence"][0]["media_id"] == report.timeline[0].media_id


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("indicators", 0, "confidence"), 1.5),
        (("files", 0, "sha256"), "not-a-hash"),
        (("timeline", 0, "evidence"), []),
        (("timeline", 0, "kind"), "verdict"),
        (("indicators", 0, "review", "decision"), "guilty"),
        (("persons", 0, "surprise"), "extra fields are refused"),
    ],
)
def test_the_schema_refuses_what_the_model_refuses(
    report: CaseReport, path: tuple[Any, ...], value: Any
) -> None:
    document = json.loads(to_json(report))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        validator().validate(document)
    with pytest.raises(ValueError, match="validation error"):
        CaseReport.model_validate(document)
