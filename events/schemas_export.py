"""Write (or, with ``--check``, compare) the JSON Schemas of the event catalogue.

``python -m events.schemas_export`` rewrites ``events/schemas/*.json``;
``python -m events.schemas_export --check`` exits 1 if a checked-in schema differs from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from events.catalogue import json_schemas

SCHEMA_DIR = Path(__file__).parent / "schemas"


def rendered() -> dict[str, str]:
    """File name -> JSON text of every schema, as checked in."""
    return {
        f"{event_type}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for event_type, schema in json_schemas().items()
    }


def differences(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing, stale or left over."""
    want = rendered()
    have = {p.name for p in directory.glob("*.json")}
    stale = [
        name for name, text in want.items() if name not in have or (directory / name).read_text() != text
    ]
    extra = sorted(have - want.keys())
    return sorted(stale) + extra


def write(directory: Path = SCHEMA_DIR) -> None:
    """Rewrite the schema folder from the models."""
    directory.mkdir(parents=True, exist_ok=True)
    want = rendered()
    for path in directory.glob("*.json"):
        if path.name not in want:
            path.unlink()
    for name, text in want.items():
        (directory / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        diff = differences()
        if diff:
            print("event schemas out of date: " + ", ".join(diff) + " (run python -m events.schemas_export)")
            return 1
        return 0
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
