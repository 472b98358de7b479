"""A hand-made report (`tests.reports.sample`) and, once per session, every export of it in a folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from aima.reports.exports import write_all
from aima.reports.model import CaseReport
from tests.reports import sample


@dataclass(frozen=True)
class Exported:
    folder: Path
    paths: list[Path]

    def text(self, name: str) -> str:
        return (self.folder / name).read_text(encoding="utf-8")


@pytest.fixture
def report() -> CaseReport:
    return sample.build_report()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Every export of the sample report, written once (the PDF takes a second or two)."""
    folder = tmp_path_factory.mktemp("report")
    paths = write_all(
        sample.build_report(),
        folder,
        transcripts={sample.VIDEO: sample.transcript()},
        speaker_names={"cs-1": "Anna Meier", "cs-2": "Speaker 2"},
        thumbnail=sample.thumbnail,
        crop=sample.crop,
    )
    return Exported(folder, paths)
