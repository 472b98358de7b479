"""`aima analyze`, the embedded main job, through the real entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def aima(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "aima.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_analyze_generated_samples_stores_and_probes_every_file(tmp_path: Path) -> None:
    proc = aima(tmp_path, "analyze", "--generate-samples", "samples", "--case-name", "Samples")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    case_id = re.search(r"^case (\S+)  'Samples'", out, re.M)
    assert case_id, out
    for name, kind in (
        ("tones.wav", "audio"),
        ("pattern.png", "image"),
        ("clip.mp4", "video"),
        ("speech.wav", "audio"),
        ("conversation.wav", "audio"),
        ("people.jpg", "image"),
        ("walk.mp4", "video"),
    ):
        assert re.search(rf"^{re.escape(name)}: {kind} .* status probed$", out, re.M), out
    assert "probe: video, 6.00 s, 320x240" in out
    assert re.search(r"frames: \d+ sampled at t = .*3\.0\d", out), out  # the scene cut at 3 s
    assert re.search(r"transcribe: v1, 1 segment\(s\), \d+ words \(en ", out), out
    assert re.search(r"transcribe: v1, \d segment\(s\), .*\(en [\d.]+ s, de [\d.]+ s\)", out), out
    assert "en (translated): " in out
    assert "transcribe: v1, no speech detected" in out  # the tones
    assert "transcription" not in out.split("not in this build yet:")[-1]
    assert "faces: v1, 3 face track(s) from 3 face(s) in 1 frame(s)" in out  # people.jpg
    assert "faces: v1, 2 face track(s) from 10 face(s) in 10 frame(s)" in out  # walk.mp4
    assert re.search(r"persons: \d of \d track\(s\) linked to a person", out), out
    assert re.search(r"sensitivity: v1, 10 frame\(s\) scored, 0 at or above 0.8", out), out

    media = aima(tmp_path, "media", "list", case_id.group(1))
    assert media.returncode == 0, media.stderr
    assert len(media.stdout.splitlines()) == 7
    assert all("\tprobed\t" in line for line in media.stdout.splitlines())

    again = aima(tmp_path, "analyze", "samples/tones.wav", "samples/tones.wav")
    assert again.returncode == 0, again.stderr
    assert "tones.wav: duplicate of media" in again.stdout
    assert aima(tmp_path, "audit", "verify").returncode == 0


def test_analyze_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not media")
    refused = aima(tmp_path, "analyze", "notes.txt")
    assert refused.returncode == 0, refused.stderr
    assert "notes.txt: refused:" in refused.stdout
    missing = aima(tmp_path, "analyze", "nope.mp4")
    assert missing.returncode == 1
    assert missing.stderr == "aima: not a readable file: nope.mp4\n"
    cluster_env = {
        "AIMA_PROFILE": "cluster",
        "AIMA_DATABASE_URL": "postgresql://x/y",
        "AIMA_VECTOR_URI": "http://m",
        "AIMA_DOCUMENTS_URI": "mongodb://m",
        "AIMA_CACHE_URL": "redis://r",
        "AIMA_KEY_ENCRYPTION_SECRET": "k" * 40,
    }
    cluster = aima(tmp_path, "analyze", "notes.txt", env=cluster_env)
    assert cluster.returncode == 1
    assert cluster.stderr.startswith("aima: aima analyze runs the embedded profile")
