"""The case picture: a `CaseReport` built from what the steps stored for a case's files.

Pure reading and arranging; nothing here calls a model. Choices, in the report's order:

* **files** in upload order (``F1`` ...), with each step's outcome from the ledger; a step the file
  needed that never reported is listed ``failed`` ("no result: the step did not report").
* **timeline**: per file in upload order, by time within the file; for each: the creation time from
  its metadata, speech segments (speaker, language, translation), unintelligible stretches, person
  appearances (one per face track), postures, indicators from picture and speech, text in frames and
  scene descriptions. Files are not interleaved by wall-clock time: most files carry none.
* **persons** by first appearance (``P1`` ...). A voice is linked to a person only where, in one
  video, at least `VOICE_SHARE` of a case speaker's speech falls while that person alone is seen:
  a hint for the reviewer, said with its basis, never an identification.
* **indicators** from the findings of every step (spoken cues, vision, posture and its
  corroboration), with the reviewer's current decision on their indicator key.
* **gaps**: steps not run (grouped by step and reason), failed steps, unintelligible audio,
  disagreements between pose and vision, faces that fit no person.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aima.access.scope import Scope
from aima.domain import EvidenceRef, Media, ModelRef, utcnow
from aima.reports.model import (
    Appearance,
    AuditHead,
    CaseReport,
    CoOccurrence,
    Custody,
    CustodyFile,
    CustodyModel,
    Gap,
    Indicator,
    IndicatorCategory,
    NarrativeSection,
    PersonSummary,
    ReportFile,
    ReviewOutcome,
    SpeakerSummary,
    StepOutcome,
    TimelineEntry,
)
from aima.storage.documents import DocumentStore
from aima.storage.findings import FINDINGS
from aima.storage.ocr import OcrResult
from aima.storage.outcomes import Outcome
from aima.storage.persons import Person, PersonTrack
from aima.storage.reviews import Review, indicator_key
from aima.storage.speakers import CaseSpeaker
from aima.storage.vision import VisionDocument
from aima.transcripts import Transcript

VOICE_SHARE = 0.6
"""Share of a speaker's speech in a video during which only one person is seen, to link the voice."""
NO_REPORT = "no result: the step did not report (it may have crashed or timed out)"
_KIND_RANK = {
    "file_created": 0,
    "scene": 1,
    "appearance": 2,
    "speech": 3,
    "unintelligible": 3,
    "text": 4,
    "posture": 5,
    "indicator": 6,
}


@dataclass
class CaseFacts:
    """Everything the report rests on, read from the stores."""

    tenant_id: str
    case_id: str
    case_name: str
    context: str | None
    job_id: str | None
    files: list[Media]
    outcomes: dict[str, dict[str, Outcome]]
    expected: dict[str, set[str]]
    transcripts: dict[str, Transcript]
    speakers: list[CaseSpeaker]
    speaker_resolution: dict[str, CaseSpeaker]
    persons: list[Person]
    person_resolution: dict[str, Person]
    tracks: list[PersonTrack]
    findings: list[dict[str, Any]]
    reviews: list[Review]
    ocr: dict[str, OcrResult]
    vision: dict[str, VisionDocument]
    sensitive: set[str]
    thumbnails: dict[str, str]
    audit_head: tuple[str, int, str]
    created_at: datetime = field(default_factory=utcnow)


def read_findings(documents: DocumentStore, tenant_id: str, case_id: str) -> list[dict[str, Any]]:
    """The case's stored findings as documents (every step's own fields kept)."""
    return documents.find(FINDINGS, {"tenant_id": tenant_id, "case_id": case_id}, sort=[("_id", 1)])


def scope_of(facts: CaseFacts) -> Scope:
    return Scope.for_case(facts.tenant_id, facts.case_id, "function:fuse")


@dataclass
class _Ids:
    files: dict[str, str]
    persons: dict[str, str] = field(default_factory=dict)
    tracks: dict[str, str] = field(default_factory=dict)  # track id -> report person id


def build(facts: CaseFacts, version: int) -> CaseReport:
    """The report of ``facts`` as version ``version``, unsigned and without its narrative."""
    files = sorted(facts.files, key=lambda m: (m.created_at, m.id))
    ids = _Ids(files={m.id: f"F{n}" for n, m in enumerate(files, 1)})
    report_files = [_file(facts, media, ids.files[media.id]) for media in files]
    persons = _persons(facts, ids)
    entries: list[TimelineEntry] = []
    gaps: list[Gap] = []
    for media in files:
        entries += _created(media, ids)
        entries += _speech(facts, media, ids)
        entries += _appearances(facts, media, ids)
        entries += _text(facts, media, ids)
        entries += _scenes(facts, media, ids)
    indicators, indicator_entries = _indicators(facts, ids)
    entries += indicator_entries
    timeline = _numbered(entries)
    _link_persons(facts, persons, timeline, indicators, ids)
    gaps = _gaps(facts, report_files, timeline, indicators, ids)
    speakers = _speakers(facts, ids)
    return CaseReport(
        report_id=str(uuid.uuid4()),
        tenant_id=facts.tenant_id,
        case_id=facts.case_id,
        case_name=facts.case_name,
        version=version,
        created_at=facts.created_at,
        job_id=facts.job_id,
        context=facts.context,
        partial=any(
            (step.status == "failed" and step.reason == NO_REPORT) or step.status == "cancelled"
            for f in report_files
            for step in f.steps
        ),
        files=report_files,
        timeline=timeline,
        persons=persons,
        speakers=speakers,
        indicators=indicators,
        gaps=gaps,
        narrative=NarrativeSection(generator="deterministic"),
        custody=_custody(facts, report_files),
    )


# --- files ---------------------------------------------------------------------------------------


def _file(facts: CaseFacts, media: Media, file_id: str) -> ReportFile:
    meta = media.metadata or {}
    outcomes = facts.outcomes.get(media.id, {})
    steps = [
        StepOutcome(
            step=name,
            status=outcome.status,
            reason=outcome.reason,
            model=outcome.model,
            version=outcome.version,
        )
        for name, outcome in sorted(outcomes.items(), key=lambda item: _step_rank(item[0]))
    ]
    for missing in sorted(facts.expected.get(media.id, set()) - outcomes.keys(), key=_step_rank):
        steps.append(StepOutcome(step=missing, status="failed", reason=NO_REPORT))
    return ReportFile(
        id=file_id,
        media_id=media.id,
        filename=media.filename,
        kind=media.kind.value if media.kind else None,
        content_type=media.content_type,
        size=media.size,
        sha256=media.sha256,
        duration_s=_float(meta.get("duration_s")),
        width=_int(meta.get("width")),
        height=_int(meta.get("height")),
        created=parse_created(meta.get("creation_time")),
        uploaded_at=media.created_at,
        status=media.status.value,
        sensitive=media.id in facts.sensitive,
        thumbnail_key=facts.thumbnails.get(media.id),
        steps=steps,
    )


STEP_ORDER = (
    "probe",
    "transcribe",
    "speakers",
    "cues",
    "ocr",
    "faces",
    "persons",
    "pose",
    "sensitivity",
    "vision",
)


def _step_rank(step: str) -> tuple[int, str]:
    return (STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER), step)


def parse_created(value: Any) -> datetime | None:
    """A creation time from metadata: ISO 8601 (containers) or EXIF ``YYYY:MM:DD HH:MM:SS``."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    exif = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", text)
    if exif:
        text = "{}-{}-{}T{}:{}:{}".format(*exif.groups())
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _created(media: Media, ids: _Ids) -> list[TimelineEntry]:
    created = parse_created((media.metadata or {}).get("creation_time"))
    if created is None:
        return []
    return [
        _entry(
            "file_created",
            media,
            ids,
            text=f"{media.filename or ids.files[media.id]} was recorded at {created:%Y-%m-%d %H:%M:%S %Z}"
            " (from its metadata)",
            at=created,
            evidence=[EvidenceRef(media_id=media.id)],
        )
    ]


# --- speech --------------------------------------------------------------------------------------


def _speech(facts: CaseFacts, media: Media, ids: _Ids) -> list[TimelineEntry]:
    transcript = facts.transcripts.get(media.id)
    if transcript is None or transcript.status != "completed":
        return []
    found: list[TimelineEntry] = []
    for segment in transcript.segments:
        evidence = [
            EvidenceRef(media_id=media.id, start_s=segment.start, end_s=segment.end, segment_id=segment.id)
        ]
        if segment.kind == "unintelligible":
            found.append(
                _entry(
                    "unintelligible",
                    media,
                    ids,
                    start_s=segment.start,
                    end_s=segment.end,
                    text=f"Audio unintelligible ({segment.reason or 'no reason given'})",
                    evidence=evidence,
                )
            )
            continue
        if not segment.text.strip():
            continue
        speaker = facts.speaker_resolution.get(segment.case_speaker_id or "")
        found.append(
            _entry(
                "speech",
                media,
                ids,
                start_s=segment.start,
                end_s=segment.end,
                text=segment.text.strip(),
                language=segment.language,
                translation=segment.translation,
                speaker_id=speaker.id if speaker else None,
                speaker=speaker.display_name if speaker else segment.speaker,
                confidence=segment.confidence,
                evidence=evidence,
            )
        )
    return found


def _speakers(facts: CaseFacts, ids: _Ids) -> list[SpeakerSummary]:
    seconds: dict[str, float] = defaultdict(float)
    files: dict[str, set[str]] = defaultdict(set)
    languages: dict[str, set[str]] = defaultdict(set)
    for media_id, transcript in facts.transcripts.items():
        for segment in transcript.segments:
            speaker = facts.speaker_resolution.get(segment.case_speaker_id or "")
            if speaker is None or segment.kind != "speech":
                continue
            seconds[speaker.id] += segment.end - segment.start
            files[speaker.id].add(ids.files.get(media_id, media_id))
            if segment.language:
                languages[speaker.id].add(segment.language)
    return [
        SpeakerSummary(
            id=speaker.id,
            name=speaker.display_name,
            files=sorted(files[speaker.id], key=_natural),
            seconds=round(seconds[speaker.id], 2),
            languages=sorted(languages[speaker.id]),
        )
        for speaker in sorted(facts.speakers, key=lambda s: s.number)
        if speaker.merged_into is None and seconds.get(speaker.id)
    ]


# --- persons -------------------------------------------------------------------------------------


def _current_person(facts: CaseFacts, track: PersonTrack) -> Person | None:
    if track.person_id is None:
        return None
    return facts.person_resolution.get(track.person_id)


def _persons(facts: CaseFacts, ids: _Ids) -> list[PersonSummary]:
    order = {
        media_id: n for n, media_id in enumerate(sorted(ids.files, key=lambda m: _natural(ids.files[m])))
    }
    appearances: dict[str, list[tuple[PersonTrack, Appearance]]] = defaultdict(list)
    for track in facts.tracks:
        person = _current_person(facts, track)
        if person is None or track.media_id not in ids.files:
            continue
        appearance = Appearance(
            media_id=track.media_id,
            file=ids.files[track.media_id],
            track_id=track.id,
            first_s=track.first_s,
            last_s=track.last_s,
            faces=track.faces,
            frame_id=track.frame_id,
            crop_key=track.crop_key,
        )
        appearances[person.id].append((track, appearance))
    ranked = sorted(
        appearances,
        key=lambda pid: min((order[t.media_id], t.first_s, t.id) for t, _ in appearances[pid]),
    )
    summaries = []
    for n, person_id in enumerate(ranked, 1):
        person = facts.person_resolution[person_id]
        seen = sorted(appearances[person_id], key=lambda ta: (order[ta[0].media_id], ta[0].first_s, ta[0].id))
        report_id = f"P{n}"
        ids.persons[person_id] = report_id
        for track, _ in seen:
            ids.tracks[track.id] = report_id
        best = max(seen, key=lambda ta: (ta[0].quality, -order[ta[0].media_id], -ta[0].first_s))[1]
        summaries.append(
            PersonSummary(
                id=report_id,
                person_id=person_id,
                name=person.display_name,
                named_by_reviewer=person.name is not None,
                appearances=[a for _, a in seen],
                best_crop=best,
                evidence=[
                    EvidenceRef(media_id=a.media_id, start_s=a.first_s, end_s=a.last_s, frame_id=a.frame_id)
                    for _, a in seen
                ],
            )
        )
    return summaries


def _appearances(facts: CaseFacts, media: Media, ids: _Ids) -> list[TimelineEntry]:
    found = []
    still = media.kind is not None and media.kind.value == "image"
    for track in facts.tracks:
        if track.media_id != media.id:
            continue
        person = _current_person(facts, track)
        who = ids.persons.get(person.id) if person else None
        name = person.display_name if person else "A face that fits no person of the case"
        when = "" if still else f" ({_clock(track.first_s)}-{_clock(track.last_s)}, {track.faces} frame(s))"
        found.append(
            _entry(
                "appearance",
                media,
                ids,
                start_s=None if still else track.first_s,
                end_s=None if still else track.last_s,
                text=f"{name} is seen{when}",
                person_ids=[who] if who else [],
                confidence=track.score,
                evidence=[
                    EvidenceRef(
                        media_id=media.id,
                        start_s=None if still else track.first_s,
                        end_s=None if still else track.last_s,
                        frame_id=track.frame_id,
                    )
                ],
            )
        )
    return found


def _link_persons(
    facts: CaseFacts,
    persons: list[PersonSummary],
    timeline: list[TimelineEntry],
    indicators: list[Indicator],
    ids: _Ids,
) -> None:
    """Voices, what they said, postures, co-occurrences and indicators of each person."""
    by_id = {p.id: p for p in persons}
    spans: dict[str, list[tuple[str, float, float]]] = defaultdict(list)  # media -> (person, first, last)
    for person in persons:
        for seen_at in person.appearances:
            spans[seen_at.media_id].append((person.id, seen_at.first_s, seen_at.last_s))
    # co-occurrence: two persons seen in the same file
    together: dict[tuple[str, str], set[str]] = defaultdict(set)
    for media_id, visible_in in spans.items():
        present = sorted({pid for pid, _, _ in visible_in}, key=_natural)
        for i, first in enumerate(present):
            for second in present[i + 1 :]:
                together[(first, second)].add(ids.files[media_id])
    for (first, second), shared in together.items():
        by_id[first].co_occurrences.append(CoOccurrence(person=second, files=sorted(shared, key=_natural)))
        by_id[second].co_occurrences.append(CoOccurrence(person=first, files=sorted(shared, key=_natural)))
    # voices: a speaker heard in a video while only one person is seen
    speech_by_speaker: dict[tuple[str, str], list[TimelineEntry]] = defaultdict(list)
    for entry in timeline:
        if entry.kind == "speech" and entry.speaker_id and entry.start_s is not None:
            speech_by_speaker[(entry.media_id, entry.speaker_id)].append(entry)
    votes: dict[str, dict[str, tuple[float, float, str]]] = defaultdict(dict)
    for (media_id, speaker_id), said in speech_by_speaker.items():
        on_screen = spans.get(media_id)
        if not on_screen:
            continue
        total = sum((e.end_s or e.start_s or 0) - (e.start_s or 0) for e in said) or 1e-9
        alone: dict[str, float] = defaultdict(float)
        for e in said:
            start, end = e.start_s or 0.0, e.end_s or e.start_s or 0.0
            middle = (start + end) / 2
            visible = {pid for pid, first, last in on_screen if first - 0.5 <= middle <= last + 0.5}
            if len(visible) == 1:
                alone[visible.pop()] += end - start
        for pid, seconds in alone.items():
            share = seconds / total
            if share >= VOICE_SHARE:
                votes[pid][speaker_id] = (share, seconds, ids.files[media_id])
    names = {s.id: s.display_name for s in facts.speakers}
    for pid, candidates in votes.items():
        speaker_id, (share, seconds, file_id) = max(candidates.items(), key=lambda kv: kv[1][0])
        person = by_id[pid]
        person.voice = speaker_id
        person.voice_name = names.get(speaker_id, speaker_id)
        person.voice_basis = (
            f"{share:.0%} of this voice's speech in {file_id} ({seconds:.1f} s) falls while only "
            f"{person.name} is seen: a hint for review, not an identification"
        )
        person.said = [e.id for e in timeline if e.kind == "speech" and e.speaker_id == speaker_id]
    for entry in timeline:
        for pid in entry.person_ids:
            if entry.kind == "posture" and pid in by_id:
                by_id[pid].postures.append(entry.id)
    for indicator in indicators:
        for pid in indicator.person_ids:
            if pid in by_id:
                by_id[pid].indicators.append(indicator.id)
    # spoken indicators of a linked voice involve its person
    voice_of = {p.voice: p for p in persons if p.voice}
    for indicator in indicators:
        spoken = next((e for e in timeline if e.indicator_id == indicator.id), None)
        if spoken is None or spoken.speaker_id is None or spoken.speaker_id not in voice_of:
            continue
        voiced = voice_of[spoken.speaker_id]
        if voiced.id not in indicator.person_ids:
            indicator.person_ids.append(voiced.id)
            voiced.indicators.append(indicator.id)
            spoken.person_ids.append(voiced.id)


# --- indicators ----------------------------------------------------------------------------------


def _category(doc: Mapping[str, Any]) -> IndicatorCategory:
    kind = doc.get("kind")
    if doc.get("category") in ("distress", "coercion"):
        return str(doc["category"])  # type: ignore[return-value]
    if kind in ("restraint", "corroborated"):
        return "restraint"
    if kind == "distress":
        return "distress"
    if kind in ("posture", "disagreement"):
        return "posture" if kind == "posture" else "restraint"
    return "other"


def _indicators(facts: CaseFacts, ids: _Ids) -> tuple[list[Indicator], list[TimelineEntry]]:
    reviews = {review.indicator_key: review for review in facts.reviews}
    media = {m.id: m for m in facts.files}
    rows = []
    for doc in facts.findings:
        media_id = str(doc.get("media_id") or doc["evidence"][0]["media_id"])
        if media_id not in ids.files:
            continue
        evidence = [EvidenceRef.model_validate(e) for e in doc["evidence"]]
        start = doc.get("timestamp_s", evidence[0].start_s)
        # ties broken by what the finding says, never by its id (run-specific): equal runs, equal order
        what = f"{doc.get('step')}|{doc.get('label')}|{doc.get('kind')}|{doc.get('confidence')}"
        rows.append((ids.files[media_id], start if start is not None else -1.0, what, doc, evidence))
    rows.sort(key=lambda row: (_natural(row[0]), row[1], row[2], str(row[3]["_id"])))
    indicators: list[Indicator] = []
    entries: list[TimelineEntry] = []
    for n, (file_id, start, _, doc, evidence) in enumerate(rows, 1):
        media_id = str(doc.get("media_id") or evidence[0].media_id)
        key = indicator_key(doc)
        review = reviews.get(key)
        outcome = (
            ReviewOutcome(
                decision=review.decision,
                reason=review.current.reason,
                reviewer=review.current.reviewer,
                decided_at=review.current.decided_at,
            )
            if review
            else ReviewOutcome(decision="unreviewed")
        )
        person = ids.tracks.get(str(doc.get("track_id") or ""))
        category = _category(doc)
        indicator = Indicator(
            id=f"I{n}",
            finding_id=str(doc["_id"]),
            indicator_key=key,
            step=str(doc["step"]),
            category=category,
            label=str(doc["label"]),
            confidence=float(doc["confidence"]),
            model=ModelRef.model_validate(doc["model"]),
            media_id=media_id,
            file=file_id,
            start_s=start if start >= 0 else None,
            person_ids=[person] if person else [],
            review=outcome,
            evidence=evidence,
        )
        indicators.append(indicator)
        segment = next((e.segment_id for e in evidence if e.segment_id), None)
        speaker = _speaker_of_segment(facts, media_id, segment)
        entries.append(
            _entry(
                "posture" if doc.get("kind") == "posture" else "indicator",
                media[media_id],
                ids,
                start_s=evidence[0].start_s if evidence[0].start_s is not None else doc.get("timestamp_s"),
                end_s=evidence[0].end_s,
                text=_indicator_text(doc, category),
                speaker_id=speaker.id if speaker else None,
                speaker=speaker.display_name if speaker else None,
                person_ids=list(indicator.person_ids),
                indicator_id=indicator.id,
                confidence=indicator.confidence,
                evidence=evidence,
            )
        )
    return indicators, entries


def _speaker_of_segment(facts: CaseFacts, media_id: str, segment_id: str | None) -> CaseSpeaker | None:
    transcript = facts.transcripts.get(media_id)
    if transcript is None or segment_id is None:
        return None
    segment = next((s for s in transcript.segments if s.id == segment_id), None)
    if segment is None:
        return None
    return facts.speaker_resolution.get(segment.case_speaker_id or "")


def _indicator_text(doc: Mapping[str, Any], category: str) -> str:
    note = doc.get("note") or doc.get("label")
    if doc.get("cue_id"):
        said = doc.get("text") or ""
        return f"Speech resembles a {category} cue ({doc['label']}): “{said}”"
    return f"{str(note)[:1].upper()}{str(note)[1:]}"


# --- text and scenes -----------------------------------------------------------------------------


def _text(facts: CaseFacts, media: Media, ids: _Ids) -> list[TimelineEntry]:
    result = facts.ocr.get(media.id)
    if result is None or result.status != "completed":
        return []
    still = media.kind is not None and media.kind.value == "image"
    return [
        _entry(
            "text",
            media,
            ids,
            start_s=None if still else line.first_s,
            end_s=None if still else line.last_s,
            text=f"Text in the picture: “{line.text}”",
            language=line.language,
            confidence=line.confidence,
            evidence=[
                EvidenceRef(
                    media_id=media.id,
                    start_s=None if still else line.first_s,
                    end_s=None if still else line.last_s,
                    frame_id=line.first_frame_id,
                )
            ],
        )
        for line in result.lines
    ]


def _scenes(facts: CaseFacts, media: Media, ids: _Ids) -> list[TimelineEntry]:
    document = facts.vision.get(media.id)
    if document is None or document.status != "completed":
        return []
    found = []
    last = None
    for frame in document.described:
        scene = str((frame.description or {}).get("scene") or "").strip()
        if not scene or scene == last:
            continue
        last = scene
        found.append(
            _entry(
                "scene",
                media,
                ids,
                start_s=frame.timestamp_s,
                text=f"Scene as the vision model describes it: {scene}",
                evidence=[EvidenceRef(media_id=media.id, start_s=frame.timestamp_s, frame_id=frame.frame_id)],
            )
        )
    return found


# --- gaps ----------------------------------------------------------------------------------------


def _gaps(
    facts: CaseFacts,
    files: Sequence[ReportFile],
    timeline: Sequence[TimelineEntry],
    indicators: Sequence[Indicator],
    ids: _Ids,
) -> list[Gap]:
    gaps: list[Gap] = []
    not_run: dict[tuple[str, str], list[ReportFile]] = defaultdict(list)
    for file in files:
        for outcome in file.steps:
            if outcome.status in ("not_run", "cancelled"):
                not_run[(outcome.step, outcome.reason or "no reason given")].append(file)
            elif outcome.status == "failed":
                gaps.append(
                    Gap(
                        id="",
                        kind="step_failed",
                        text=f"{outcome.step} failed on {file.id} ({file.filename}): {outcome.reason}",
                        media_id=file.media_id,
                        file=file.id,
                        step=outcome.step,
                        evidence=[EvidenceRef(media_id=file.media_id)],
                    )
                )
    for (step, reason), group in sorted(not_run.items(), key=lambda kv: _step_rank(kv[0][0])):
        names = ", ".join(f.id for f in group)
        gaps.append(
            Gap(
                id="",
                kind="step_not_run",
                text=f"{step} not run on {len(group)} file(s) ({names}): {reason}",
                step=step,
                evidence=[EvidenceRef(media_id=f.media_id) for f in group],
            )
        )
    for entry in timeline:
        if entry.kind == "unintelligible":
            gaps.append(
                Gap(
                    id="",
                    kind="unintelligible",
                    text=f"audio unintelligible in {entry.file} {_clock(entry.start_s or 0)}-"
                    f"{_clock(entry.end_s or 0)}",
                    media_id=entry.media_id,
                    file=entry.file,
                    start_s=entry.start_s,
                    end_s=entry.end_s,
                    evidence=entry.evidence,
                )
            )
    by_finding = {doc["_id"]: doc for doc in facts.findings}
    for indicator in indicators:
        if by_finding.get(indicator.finding_id, {}).get("kind") == "disagreement":
            gaps.append(
                Gap(
                    id="",
                    kind="disagreement",
                    text=f"pose and vision disagree in {indicator.file} at {_clock(indicator.start_s or 0)}: "
                    f"vision reports {indicator.label}, the body landmarks do not show the posture",
                    media_id=indicator.media_id,
                    file=indicator.file,
                    step="pose",
                    start_s=indicator.start_s,
                    evidence=indicator.evidence,
                )
            )
    unassigned: dict[str, list[PersonTrack]] = defaultdict(list)
    for track in facts.tracks:
        if track.person_id is None and track.media_id in ids.files:
            unassigned[track.media_id].append(track)
    for media_id, tracks in sorted(unassigned.items(), key=lambda kv: _natural(ids.files[kv[0]])):
        gaps.append(
            Gap(
                id="",
                kind="unassigned_faces",
                text=f"{len(tracks)} face(s) in {ids.files[media_id]} fit no person of the case well enough "
                "and stay unassigned",
                media_id=media_id,
                file=ids.files[media_id],
                step="persons",
                evidence=[EvidenceRef(media_id=media_id, frame_id=t.frame_id) for t in tracks],
            )
        )
    return [gap.model_copy(update={"id": f"G{n}"}) for n, gap in enumerate(gaps, 1)]


# --- custody -------------------------------------------------------------------------------------


def _custody(facts: CaseFacts, files: Sequence[ReportFile]) -> Custody:
    models: dict[tuple[str, str, str, str], CustodyModel] = {}
    for file in files:
        for step in file.steps:
            if step.model is not None and step.status == "succeeded":
                key = (step.step, step.model.name, step.model.version, step.model.backend)
                models.setdefault(key, CustodyModel(step=step.step, model=step.model))
    chain, seq, head = facts.audit_head
    return Custody(
        files=[
            CustodyFile(media_id=f.media_id, filename=f.filename, sha256=f.sha256, size=f.size) for f in files
        ],
        models=[models[key] for key in sorted(models, key=lambda k: (_step_rank(k[0]), k[1:]))],
        audit_head=AuditHead(chain=chain, seq=seq, hash=head),
        signed_at=facts.created_at,
    )


# --- helpers -------------------------------------------------------------------------------------


def _entry(
    kind: Any, media: Media, ids: _Ids, *, text: str, evidence: list[EvidenceRef], **fields: Any
) -> TimelineEntry:
    return TimelineEntry(
        id="", kind=kind, media_id=media.id, file=ids.files[media.id], text=text, evidence=evidence, **fields
    )


def _numbered(entries: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    ordered = sorted(
        entries,
        key=lambda e: (
            _natural(e.file),
            -1.0 if e.start_s is None else e.start_s,
            _KIND_RANK[e.kind],
            e.text,
        ),
    )
    return [entry.model_copy(update={"id": f"T{n}"}) for n, entry in enumerate(ordered, 1)]


def _natural(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"([A-Z]+)(\d+)", text)
    return (match.group(1), int(match.group(2))) if match else (text, 0)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None


Reader = Callable[[], CaseFacts]
