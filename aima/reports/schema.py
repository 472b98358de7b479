"""The JSON export of a case report and its published JSON Schema.

The JSON export is the report as it is stored: ``CaseReport.model_dump_json``. Its schema is made from
the model (`CaseReport.model_json_schema`, JSON Schema 2020-12) and published as
``docs/schemas/report.schema.json``; every export folder carries a copy beside ``report.json``.

``python -m aima.reports.schema`` rewrites the published file; ``python -m aima.reports.schema --check``
exits 1 if it differs from the model (the report tests check the same).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aima.reports.model import SCHEMA_VERSION, CaseReport

SCHEMA_ID = f"urn:aima:schema:case-report:{SCHEMA_VERSION}"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "report.schema.json"
"""Where the schema is published in the repository (not part of an installed package)."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of `CaseReport`, with its dialect and id."""
    schema = CaseReport.model_json_schema()
    return {"$schema": DIALECT, "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    """The schema as published: sorted keys, two-space indent, a final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def to_json(report: CaseReport) -> str:
    """The report's JSON export."""
    return report.model_dump_json(indent=2) + "\n"


def stale(path: Path = PUBLISHED) -> bool:
    """Whether the published schema is missing or differs from the model."""
    return not path.is_file() or path.read_text(encoding="utf-8") != schema_text()


def write(path: Path = PUBLISHED) -> None:
    """Rewrite the published schema from the model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        if stale():
            print(f"report schema out of date: {PUBLISHED.name} (run python -m aima.reports.schema)")
            return 1
        return 0
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
