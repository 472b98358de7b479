"""`aima analyze`, the embedded main job, through the real entry point, and the report it writes.

One analysis of the generated samples (speech in two voices and two languages, a video and an image
with faces, an image of printed text, tones, a test pattern, a clip) runs once for the module; the
tests read its output, its report in every format and its stores.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy

from aima.reports.model import CaseReport
from aima.samples import CONVERSATION, NOTICE, Utterance
from aima.storage.audit import GENESIS, record_hash
from aima.storage.schema import audit_heads, audit_log
from tests.support import free_port, run_aima

FILES = (
    ("tones.wav", "audio"),
    ("pattern.png", "image"),
    ("clip.mp4", "video"),
    ("speech.wav", "audio"),
    ("conversation.wav", "audio"),
    ("notice.png", "image"),
    ("people.jpg", "image"),
    ("walk.mp4", "video"),
)


@dataclass(frozen=True)
class Analysis:
    home: Path
    stdout: str
    out: Path
    report: CaseReport


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    home = tmp_path_factory.mktemp("analyze")
    done = run_aima(
        "analyze",
        "--generate-samples",
        "samples",
        "--case",
        "Samples",
        "--context",
        "Two recordings from a warehouse",
        "--out",
        "report",
        cwd=home,
        timeout=420,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = home / "report"
    report = CaseReport.model_validate_json((out / "report.json").read_bytes())
    return Analysis(home, done.stdout, out, report)


def test_every_file_is_stored_probed_and_summarised(analysis: Analysis) -> None:
    out = analysis.stdout
    for name, kind in FILES:
        assert re.search(rf"^{re.escape(name)}: {kind} .* status probed$", out, re.M), out
    assert "probe: video, 6.00 s, 320x240" in out
    assert re.search(r"frames: \d+ sampled at t = .*3\.0\d", out), out  # the scene cut at 3 s
    assert re.search(r"transcribe: v1, \d segment\(s\), .*\(en [\d.]+ s, de [\d.]+ s\)", out), out
    assert "transcribe: v1, no speech detected" in out  # the tones
    assert "faces: v1, 3 face track(s) from 3 face(s) in 1 frame(s)" in out  # people.jpg
    assert "faces: v1, 2 face track(s) from 10 face(s) in 10 frame(s)" in out  # walk.mp4
    assert re.search(r"sensitivity: v1, 10 frame\(s\) scored, 0 at or above 0.8", out), out
    assert "not in this build yet" not in out
    assert f"report v1: {Path('report') / 'report.html'}" in out
    assert re.search(r"8 file\(s\), \d speaker\(s\), 3 person\(s\), \d+ timeline entries", out), out


def test_the_report_has_every_format(analysis: Analysis) -> None:
    names = {p.relative_to(analysis.out).as_posix() for p in analysis.out.rglob("*") if p.is_file()}
    assert {
        "report.json",
        "report.schema.json",
        "timeline.csv",
        "indicators.csv",
        "persons.csv",
        "report.html",
        "report.pdf",
        "transcripts/F5-conversation.vtt",
    } <= names
    schema = json.loads((analysis.out / "report.schema.json").read_text())
    jsonschema.validate(json.loads((analysis.out / "report.json").read_text()), schema)
    assert (analysis.out / "report.pdf").read_bytes().startswith(b"%PDF")
    vtt = (analysis.out / "transcripts" / "F5-conversation.vtt").read_text()
    assert vtt.startswith("WEBVTT")
    assert "<v Speaker" in vtt
    with (analysis.out / "timeline.csv").open(newline="") as rows:
        assert len(list(csv.DictReader(rows))) == len(analysis.report.timeline)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-zäöüß]+", text.lower()))


def test_transcript_words_per_language_and_two_speakers(analysis: Analysis) -> None:
    report = analysis.report
    conversation = next(f for f in report.files if f.filename == "conversation.wav")
    speech = [e for e in report.timeline if e.kind == "speech" and e.media_id == conversation.media_id]
    for language, floor in (("en", 0.6), ("de", 0.4)):
        said = set().union(*(_words(e.text) for e in speech if e.language == language))
        script = set().union(
            *(_words(u.text) for u in CONVERSATION if isinstance(u, Utterance) and u.language == language)
        )
        assert len(said & script) / len(script) >= floor, (language, sorted(said), sorted(script))
    speakers = {e.speaker_id for e in speech if e.speaker_id}
    assert len(speakers) == 2
    assert {s.id for s in report.speakers} >= speakers
    assert all(e.speaker for e in speech if e.speaker_id)


def test_persons_text_and_indicators(analysis: Analysis) -> None:
    report = analysis.report
    # people.jpg shows three faces of two people (two photographs of one of them), walk.mp4 two people,
    # one of whom is in the photograph too: three persons in all
    assert len(report.persons) == 3
    walk = next(f for f in report.files if f.filename == "walk.mp4")
    people = next(f for f in report.files if f.filename == "people.jpg")
    seen_in = {p.id: {a.media_id for a in p.appearances} for p in report.persons}
    assert sum(walk.media_id in files for files in seen_in.values()) == 2
    assert sum(people.media_id in files for files in seen_in.values()) == 2
    assert sum(len(files) == 2 for files in seen_in.values()) == 1
    assert sum(a.media_id == people.media_id for p in report.persons for a in p.appearances) == 3
    assert all(p.best_crop is not None and p.best_crop.crop_key for p in report.persons)
    notice = next(f for f in report.files if f.filename == "notice.png")
    text = " ".join(e.text for e in report.timeline if e.kind == "text" and e.media_id == notice.media_id)
    assert all(line in text for line in NOTICE[:2]), text
    spoken = [i for i in report.indicators if i.category == "distress"]
    plea = next(e for e in report.timeline if e.kind == "speech" and "let me go" in e.text.lower())
    # the plea is flagged, and only the plea: none of the statements before it
    assert {ref.segment_id for i in spoken for ref in i.evidence} == {plea.evidence[0].segment_id}
    assert spoken
    assert all(i.review.decision == "unreviewed" for i in spoken)
    assert any("not run" in g.text and g.step == "vision" for g in report.gaps)


def test_what_was_said_is_searchable_by_meaning(analysis: Analysis) -> None:
    found = run_aima(
        "search",
        analysis.report.case_id,
        "a lady was heard screaming",
        "--json",
        "--limit",
        "1",
        cwd=analysis.home,
    )
    assert found.returncode == 0, found.stderr
    [first] = json.loads(found.stdout)["results"]
    assert first["filename"] == "conversation.wav"
    assert "woman" in first["text"].lower()


def test_timeline_is_in_file_and_time_order(analysis: Analysis) -> None:
    report = analysis.report
    order = [f.id for f in report.files]
    assert [e.id for e in report.timeline] == [f"T{n}" for n in range(1, len(report.timeline) + 1)]
    keys = [(order.index(e.file), -1.0 if e.start_s is None else e.start_s) for e in report.timeline]
    assert keys == sorted(keys)
    known = {f.media_id for f in report.files}
    assert all(ref.media_id in known for e in report.timeline for ref in e.evidence)


def test_every_narrative_sentence_cites_existing_evidence(analysis: Analysis) -> None:
    report = analysis.report
    assert report.narrative.generator == "deterministic"
    assert len(report.narrative.statements) >= 5
    ids = report.ids()
    media = {f.media_id for f in report.files}
    evidence = {e.id: e.evidence for e in report.timeline} | {p.id: p.evidence for p in report.persons}
    evidence |= {i.id: i.evidence for i in report.indicators} | {g.id: g.evidence for g in report.gaps}
    for statement in report.narrative.statements:
        assert statement.citations, statement
        assert set(statement.citations) <= ids, statement
        for cited in statement.citations:
            assert cited.startswith("F") or all(ref.media_id in media for ref in evidence[cited]), cited


def test_hashes_match_the_stored_files_and_the_samples(analysis: Analysis) -> None:
    report = analysis.report
    objects = analysis.home / ".aima" / "objects"
    database = sqlite3.connect(analysis.home / ".aima" / "aima.db")
    keys = dict(database.execute("select id, object_key from media").fetchall())
    assert len(report.custody.files) == len(FILES)
    for entry in report.custody.files:
        stored = hashlib.sha256((objects / keys[entry.media_id]).read_bytes()).hexdigest()
        sample = hashlib.sha256((analysis.home / "samples" / str(entry.filename)).read_bytes()).hexdigest()
        assert entry.sha256 == stored == sample, entry.filename
    steps = {m.step for m in report.custody.models}
    assert {"transcribe", "faces", "ocr"} <= steps
    assert report.custody.signature
    assert report.custody.key_id


def test_audit_verify_against_the_report_finds_a_rewritten_chain(analysis: Analysis, tmp_path: Path) -> None:
    report_json = str(analysis.out / "report.json")
    good = run_aima("audit", "verify", "--against", report_json, cwd=analysis.home)
    assert good.returncode == 0, good.stderr
    assert "signature valid" in good.stdout

    copy = tmp_path / "copy"
    shutil.copytree(analysis.home / ".aima", copy / ".aima")
    _rewrite_chain(copy / ".aima" / "aima.db", analysis.report.tenant_id)
    alone = run_aima("audit", "verify", cwd=copy)
    assert alone.returncode == 0, alone.stdout  # rewritten consistently: the chain alone looks intact
    against = run_aima("audit", "verify", "--against", report_json, cwd=copy)
    assert against.returncode == 1
    assert "the chain was rewritten after the report was made" in against.stdout
    assert against.stderr.startswith("aima: audit chain does not match report v1")

    altered = json.loads((analysis.out / "report.json").read_text())
    altered["persons"][0]["name"] = "Someone else"
    (tmp_path / "altered.json").write_text(json.dumps(altered))
    forged = run_aima("audit", "verify", "--against", str(tmp_path / "altered.json"), cwd=analysis.home)
    assert forged.returncode == 1
    assert forged.stderr == "aima: report v1 cannot be trusted: the report was changed after it was signed\n"


def _rewrite_chain(path: Path, tenant_id: str) -> None:
    """Edit the tenant's first audit record and recompute every hash and the head, as someone with
    full database access (but not the platform's key) could."""
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with engine.begin() as db:
        rows = [
            dict(row)
            for row in db.execute(
                sqlalchemy.select(audit_log)
                .where(audit_log.c.tenant_id == tenant_id)
                .order_by(audit_log.c.seq)
            ).mappings()
        ]
        rows[0]["actor"] = "someone-else"
        prev = GENESIS
        for row in rows:
            row["hash"] = record_hash(row, prev)
            db.execute(
                audit_log.update()
                .where(audit_log.c.tenant_id == tenant_id, audit_log.c.seq == row["seq"])
                .values(actor=row["actor"], prev_hash=prev, hash=row["hash"])
            )
            prev = row["hash"]
        db.execute(audit_heads.update().where(audit_heads.c.tenant_id == tenant_id).values(hash=prev))
    engine.dispose()


def test_analyze_again_finds_duplicates_and_the_chain_holds(analysis: Analysis) -> None:
    again = run_aima("analyze", "samples/tones.wav", "samples/tones.wav", cwd=analysis.home)
    assert again.returncode == 0, again.stderr
    assert "tones.wav: duplicate of media" in again.stdout
    assert run_aima("audit", "verify", cwd=analysis.home).returncode == 0


def test_analyze_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not media")
    refused = run_aima("analyze", "notes.txt", cwd=tmp_path)
    assert refused.returncode == 0, refused.stderr
    assert "notes.txt: refused:" in refused.stdout
    assert "report v" not in refused.stdout
    missing = run_aima("analyze", "nope.mp4", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == "aima: not a readable file: nope.mp4\n"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    occupied = run_aima("analyze", "notes.txt", "--out", "full", cwd=tmp_path)
    assert occupied.returncode == 1
    assert occupied.stderr == "aima: --out full is not empty; give a new or empty folder\n"
    closed = free_port()
    cluster_env = {
        "AIMA_PROFILE": "cluster",
        "AIMA_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/nothing",
        "AIMA_VECTOR_URI": f"http://127.0.0.1:{closed}",
        "AIMA_DOCUMENTS_URI": f"mongodb://127.0.0.1:{closed}/?serverSelectionTimeoutMS=500",
        "AIMA_CACHE_URL": f"redis://127.0.0.1:{closed}/0",
        "AIMA_NATS_URL": f"nats://127.0.0.1:{closed}",
        "AIMA_S3_ENDPOINT_URL": f"http://127.0.0.1:{closed}",
        "AIMA_KEY_ENCRYPTION_SECRET": "k" * 40,
    }
    cluster = run_aima("analyze", "notes.txt", cwd=tmp_path, env=cluster_env)
    assert cluster.returncode == 1
    assert cluster.stderr.startswith("aima: the cluster profile's "), cluster.stderr
    assert "start a stack with `aima dev up`" in cluster.stderr
    assert len(cluster.stderr.splitlines()) == 1, cluster.stderr
