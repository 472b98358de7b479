"""End to end: spoken German and English (espeak-ng) through ``aima analyze`` (probe, transcribe, cues,
...), then the findings in the document store and ``aima search`` on what was said."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aima.samples import Pause, Utterance, write_script_wav
from aima.settings import load_settings
from aima.storage.documents import DocumentStore
from aima.storage.findings import FINDINGS

SCRIPT = (
    Utterance("Ich war den ganzen Abend zu Hause bei meiner Familie.", "de", "de"),
    Pause(0.8),
    Utterance("Please stop, you are hurting me. Somebody help me!", "en-us+m3", "en"),
    Pause(0.8),
    Utterance("The car was parked outside the station for two hours.", "en-gb+f3", "en"),
    Pause(0.8),
)
"""Speech Whisper base transcribes reliably from espeak-ng: a German statement, an English plea and
call for help, an English statement (espeak-ng's German pleas come out garbled)."""


def aima(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | {
        "AIMA_DATA_DIR": str(data_dir)
    }
    return subprocess.run(
        [sys.executable, "-m", "aima.cli", *args], env=env, capture_output=True, text=True, timeout=900
    )


def test_spoken_plea_is_flagged_and_what_was_said_is_searchable(tmp_path: Path) -> None:
    wav = tmp_path / "statement.wav"
    spans = write_script_wav(wav, SCRIPT)
    data_dir = tmp_path / "aima"
    analysed = aima(data_dir, "analyze", str(wav))
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    assert "cues" in analysed.stdout, analysed.stdout

    settings = load_settings(profile="embedded", data_dir=data_dir)
    assert settings.documents_uri is not None
    documents = DocumentStore.from_uri(settings.documents_uri, settings.documents_db)
    try:
        [transcript] = documents.find("transcripts", {})
        findings = documents.find(FINDINGS, {"step": "phrases"})
    finally:
        documents.close()
    plea = spans[1]
    flagged = {f["cue_id"]: f for f in findings}
    assert {"plea-to-stop", "call-for-help"} <= set(flagged), [(f["cue_id"], f["text"]) for f in findings]
    for finding in findings:  # the plea only: neither statement is flagged
        [evidence] = finding["evidence"]
        assert evidence["media_id"] == transcript["media_id"]
        assert evidence["start_s"] < plea.end
        assert evidence["end_s"] > plea.start
        assert finding["language"] == "en"
        assert "not a finding of fact" in finding["note"]
    assert flagged["plea-to-stop"]["matched_by"] == "both"

    case_id = transcript["case_id"]
    for query, language, said in (
        ("she stayed in with her relatives the whole night", "de", "familie"),
        ("a vehicle stood in front of the train station", "en", "station"),
    ):
        found = aima(data_dir, "search", case_id, query, "--json", "--limit", "1")
        assert found.returncode == 0, found.stderr
        [first] = json.loads(found.stdout)["results"]
        assert (first["language"], first["filename"]) == (language, "statement.wav")
        assert said in first["text"].lower()
