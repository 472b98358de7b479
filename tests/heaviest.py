"""The order test files start in: the heaviest first, so that with pytest-xdist's ``--dist loadfile``
(and ``--no-loadscope-reorder``) no long file starts last and leaves one worker running alone.

``tests/heaviest.txt`` lists test files by their total time in a full run, heaviest first; files it
does not list run after them in collection order. Refresh it from a run's JUnit XML::

    .venv/bin/python -m pytest -n 2 --dist loadfile --junitxml=/tmp/junit.xml
    .venv/bin/python -m tests.heaviest /tmp/junit.xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

import pytest

LIST = Path(__file__).with_name("heaviest.txt")
LISTED = 40
"""How many files the list keeps: the rest are short enough to fill the gaps in any order."""


def ranks() -> dict[str, int]:
    """Each listed file's place (0: heaviest)."""
    if not LIST.is_file():
        return {}
    names = [line.split("#", 1)[0].strip() for line in LIST.read_text().splitlines()]
    return {name: index for index, name in enumerate(n for n in names if n)}


def heaviest_first(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place: listed files first, by rank; a file's own tests keep their order."""
    order = ranks()
    unlisted = len(order)
    items.sort(key=lambda item: order.get(item.nodeid.split("::", 1)[0], unlisted))


def totals(junit: Path) -> dict[str, float]:
    """Seconds per test file in a JUnit XML report (setup and teardown included)."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ElementTree.parse(junit).getroot().iter("testcase"):  # noqa: S314 (our own run's report)
        classname = case.get("classname", "")
        parts = classname.split(".")
        # "tests.api.test_jobs" or "tests.api.test_jobs.TestClass": the file is the first test_* part
        index = next((i for i, part in enumerate(parts) if part.startswith("test_")), len(parts) - 1)
        seconds["/".join(parts[: index + 1]) + ".py"] += float(case.get("time", 0.0))
    return dict(seconds)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.heaviest JUNIT_XML", file=sys.stderr)
        return 2
    ranked = sorted(totals(Path(argv[0])).items(), key=lambda pair: -pair[1])[:LISTED]
    lines = [f"{name}  # {seconds:.0f} s" for name, seconds in ranked]
    LIST.write_text(
        "# written by `python -m tests.heaviest` (see tests/heaviest.py)\n" + "\n".join(lines) + "\n"
    )
    print(f"{len(lines)} files, {sum(s for _, s in ranked):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
