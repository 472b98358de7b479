"""``aima transcript export`` through the real entry point on the embedded profile: the three
formats read back by their parsers, versions, output files, the audit record, and one-line errors
with their exit codes."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
import srt
import webvtt

from aima.identity.users import UserDirectory
from aima.settings import load_settings
from aima.storage.factory import Stores
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.subtitles import TranscriptExport
from aima.transcripts import SpeechSegment, Transcript, segment_id
from tests.cli.test_admin_cli import aima

MEDIA = "media-1"


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "aima"
        self.env = {"AIMA_DATA_DIR": str(self.data_dir)}
        created = aima(self.env, "case", "create", "Interview")
        assert created.returncode == 0, created.stderr
        self.case_id = created.stdout.strip()
        self.tenant_id = ""

    def store(self, media_id: str = MEDIA, **fields: object) -> Transcript:
        settings = load_settings(profile="embedded", data_dir=self.data_dir)
        stores = Stores.open(settings)
        try:
            self.tenant_id = str(UserDirectory(stores.db).tenant_id(settings.bootstrap_tenant))
            CaseSpeakerRepository(stores.documents).create(
                self.tenant_id, self.case_id, "cs-1", name="Anna Meier"
            )
            segments = [
                SpeechSegment(
                    id=segment_id(media_id, 0.5),
                    start=0.5,
                    end=3.0,
                    text="Where were you on Tuesday?",
                    language="en",
                    speaker="S1",
                    case_speaker_id="cs-1",
                ),
                SpeechSegment(
                    id=segment_id(media_id, 3.5),
                    start=3.5,
                    end=5.0,
                    text="Zu Hause.",
                    language="de",
                    translation="At home.",
                    speaker="S2",
                ),
            ]
            base = {"tenant_id": self.tenant_id, "case_id": self.case_id, "media_id": media_id, "version": 1}
            return TranscriptRepository(stores.documents).add(
                Transcript.model_validate(base | {"segments": segments} | fields)
            )
        finally:
            stores.close()


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_formats_versions_and_files(setup: Setup, tmp_path: Path) -> None:
    setup.store()
    setup.store(segments=[])  # version 2, empty

    vtt = aima(setup.env, "transcript", "export", setup.case_id, MEDIA, "--version", "1")
    assert vtt.returncode == 0, vtt.stderr
    captions = webvtt.from_buffer(io.StringIO(vtt.stdout)).captions
    assert [(c.voice, c.text) for c in captions] == [
        ("Anna Meier", "Where were you on Tuesday?"),
        ("S2", "Zu Hause.\nAt home."),
    ]

    out = tmp_path / "out.srt"
    written = aima(
        setup.env,
        "transcript",
        "export",
        setup.case_id,
        MEDIA,
        "--format",
        "srt",
        "--version",
        "1",
        "-o",
        str(out),
    )
    assert (written.returncode, written.stdout, written.stderr) == (0, "", f"wrote {out}\n")
    assert [s.content for s in srt.parse(out.read_text(encoding="utf-8"))] == [
        "Anna Meier: Where were you on Tuesday?",
        "S2: [de] Zu Hause.\n<i>At home.</i>",
    ]

    latest = aima(setup.env, "transcript", "export", setup.case_id, MEDIA, "--format", "json")
    assert latest.returncode == 0, latest.stderr
    export = TranscriptExport.model_validate_json(latest.stdout)
    assert (export.transcript.version, export.versions, export.transcript.segments) == (2, [1, 2], [])

    folder = tmp_path / "exports"
    folder.mkdir()
    into = aima(setup.env, "transcript", "export", setup.case_id, MEDIA, "-o", str(folder))
    assert into.returncode == 0, into.stderr
    assert [p.name for p in folder.iterdir()] == [f"{MEDIA}.transcript-v2.vtt"]

    records = json.loads(aima(setup.env, "audit", "export", "--format", "json").stdout)
    exported = [r for r in records if r["action"] == "case.export"]
    assert [(r["object"], r["detail"]["format"], r["detail"]["version"]) for r in exported] == [
        (f"media/{MEDIA}/transcript/v1", "vtt", 1),
        (f"media/{MEDIA}/transcript/v1", "srt", 1),
        (f"media/{MEDIA}/transcript/v2", "json", 2),
        (f"media/{MEDIA}/transcript/v2", "vtt", 2),
    ]
    assert {r["case_id"] for r in exported} == {setup.case_id}
    assert {r["detail"]["via"] for r in exported} == {"cli"}
    assert aima(setup.env, "audit", "verify").returncode == 0


def one_line_error(result: subprocess.CompletedProcess[str], code: int, starts: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(starts), result.stderr


def test_one_line_errors_and_exit_codes(setup: Setup, tmp_path: Path) -> None:
    reason = "no transcriber configured"
    setup.store(status="not_run", reason=reason, segments=[])
    env, case = setup.env, setup.case_id
    one_line_error(aima(env, "transcript", "export", "no-such-case", MEDIA), 1, "aima: no case no-such-case")
    one_line_error(
        aima(env, "transcript", "export", case, "other"),
        1,
        f"aima: no transcript of media other in case {case}",
    )
    one_line_error(
        aima(env, "transcript", "export", case, MEDIA, "--version", "4"),
        1,
        "aima: no transcript version 4 of media",
    )
    one_line_error(
        aima(env, "transcript", "export", case, MEDIA, "--format", "srt"),
        1,
        f"aima: transcript version 1 was not run: {reason} (no subtitles; --format json has it)",
    )
    as_json = aima(env, "transcript", "export", case, MEDIA, "--format", "json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["transcript"]["reason"] == reason
    one_line_error(
        aima(env, "transcript", "export", case, MEDIA, "--format", "pdf"),
        2,
        "aima: Invalid value for '--format'",
    )
    one_line_error(
        aima(env, "transcript", "export", case, MEDIA, "--version", "0"),
        2,
        "aima: Invalid value for '--version'",
    )
    one_line_error(aima(env, "transcript", "export", case), 2, "aima: Missing argument")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    one_line_error(
        aima(env, "transcript", "export", case, MEDIA, "--format", "json", "-o", str(blocked / "x.json")),
        1,
        f"aima: cannot write {blocked / 'x.json'}",
    )
    one_line_error(
        aima(env, "transcript", "export", case, MEDIA, "--tenant", "nowhere"), 1, "aima: no tenant 'nowhere'"
    )
