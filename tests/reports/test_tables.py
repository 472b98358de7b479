"""CSV exports: fixed columns, RFC 4180 quoting, compact evidence, and no formulas for spreadsheets."""

from __future__ import annotations

import csv
import io

import pytest

from aima.reports.model import CaseReport
from aima.reports.tables import (
    INDICATOR_COLUMNS,
    PERSON_COLUMNS,
    TABLES,
    TIMELINE_COLUMNS,
    guard,
    indicators_csv,
    persons_csv,
    timeline_csv,
)
from tests.reports import sample
from tests.reports.conftest import Exported


def rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header, *body = list(reader)
    return header, [dict(zip(header, row, strict=True)) for row in body]


def by_id(text: str) -> dict[str, dict[str, str]]:
    return {row["id"]: row for row in rows(text)[1]}


def test_each_table_has_its_columns_in_a_fixed_order(exported: Exported, report: CaseReport) -> None:
    for name, columns, count in [
        ("timeline.csv", TIMELINE_COLUMNS, len(report.timeline)),
        ("indicators.csv", INDICATOR_COLUMNS, len(report.indicators)),
        ("persons.csv", PERSON_COLUMNS, len(report.persons)),
    ]:
        raw = (exported.folder / name).read_bytes()
        assert raw.endswith(b"\r\n"), name
        assert raw.count(b"\r\n") >= count + 1, name
        header, body = rows(raw.decode())
        assert tuple(header) == columns
        assert len(body) == count
    assert set(TABLES) == {"timeline", "indicators", "persons"}


def test_timeline_rows_carry_times_people_and_compact_evidence(report: CaseReport) -> None:
    table = by_id(timeline_csv(report))
    assert list(table) == [entry.id for entry in report.timeline]
    assert table["T2"]["evidence"] == "F1@0-14.2#fr-0001"
    assert table["T4"]["evidence"] == "F1@3-7.5"
    assert (table["T4"]["speaker"], table["T4"]["persons"], table["T4"]["confidence"]) == (
        "Anna Meier",
        "P1",
        "0.93",
    )
    assert table["T5"]["translation"] == sample.GERMAN_EN
    assert table["T8"]["evidence"] == "F1@41#fr-0020"
    assert table["T8"]["indicator"] == "I1"
    assert table["T12"]["evidence"] == "F2#fr-still"
    assert table["T12"]["start_s"] == ""
    assert table["T1"]["at"] == "2024-05-12T21:00:00+00:00"
    assert table["T6"]["text"] == sample.HOSTILE


def test_indicator_rows_carry_the_model_and_the_review(report: CaseReport) -> None:
    table = by_id(indicators_csv(report))
    assert table["I1"]["model"] == "qwen2-vl-7b 2024-09 (openai)"
    assert (table["I1"]["review"], table["I1"]["reviewer"]) == ("confirmed", "rev-lena")
    assert table["I1"]["decided_at"] == "2024-05-14T09:30:00+00:00"
    assert table["I2"]["review"] == "unreviewed"
    assert table["I2"]["review_reason"] == ""
    assert table["I3"]["persons"] == "P2"


def test_person_rows_summarise_appearances_voice_and_links(report: CaseReport) -> None:
    table = by_id(persons_csv(report))
    assert table["P1"]["named_by_reviewer"] == "true"
    assert table["P1"]["said"] == "T4; T6"
    assert table["P1"]["voice_name"] == "Anna Meier"
    assert table["P2"]["files"] == "F1; F2"
    assert table["P2"]["appearances"] == "2"
    assert table["P2"]["co_occurrences"] == "P1 in F1"
    assert table["P2"]["evidence"] == "F1@30-44#fr-0016; F2#fr-still"


def test_a_cell_a_spreadsheet_would_run_gets_an_apostrophe(report: CaseReport) -> None:
    assert by_id(timeline_csv(report))["T9"]["text"] == "'" + sample.FORMULA
    assert by_id(indicators_csv(report))["I3"]["review_reason"] == "'-holding a cup, not restrained"
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert guard(start + "1+1") == "'" + start + "1+1"
    assert guard("1+1") == "1+1"
    assert guard("a=b") == "a=b"


@pytest.mark.parametrize(
    "text", ['He said "no", twice', "line one\r\nline two", "semi; colon, comma", "@user"]
)
def test_awkward_text_round_trips_through_the_csv_module(report: CaseReport, text: str) -> None:
    entry = report.timeline[3].model_copy(update={"text": text})
    changed = report.model_copy(update={"timeline": [entry]})
    read = by_id(timeline_csv(changed))["T4"]["text"]
    assert read == guard(text)
