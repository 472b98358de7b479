"""A realistic case report made by hand: three files (a video with two people talking, a still scored
sensitive, a voicemail the vision step never saw), every kind of timeline entry, two persons with
crops, indicators in every review state, gaps, a narrative and a signed custody block. Some texts are
hostile (markup, spreadsheet formulas) on purpose."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from PIL import Image, ImageDraw

from aima.domain import EvidenceRef, ModelRef
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
    NarrativeSection,
    PersonSummary,
    ReportFile,
    ReviewOutcome,
    SpeakerSummary,
    Statement,
    StepOutcome,
    TimelineEntry,
)
from aima.transcripts import SpeechSegment, SpokenWord, Transcript, segment_id

VIDEO, STILL, VOICEMAIL = "m-video-0001", "m-still-0002", "m-voice-0003"
HOSTILE = "<script>alert('owned')</script> I never touched it"
FORMULA = '=HYPERLINK("x","click")'
SPEECH_TEXT = "We left the harbour office at nine and walked to the car."
GERMAN = "Ich war den ganzen Abend zu Hause."
GERMAN_EN = "I was at home the whole evening."
WHISPER = ModelRef(name="whisper-base", version="ct2-1", backend="cpu")
VISION = ModelRef(name="qwen2-vl-7b", version="2024-09", backend="openai")
POSE = ModelRef(name="mediapipe-pose", version="0.10.21", backend="cpu")
FACES = ModelRef(name="dlib-resnet", version="19.24", backend="cpu")
CUES = ModelRef(name="cue-list", version="3", backend="rules")
OCR = ModelRef(name="tesseract", version="5.3", backend="cpu")
THUMBNAIL_KEYS = {VIDEO: "thumb-video", STILL: "thumb-still"}
CROP_KEYS = {"P1": "crops/video/t1.jpg", "P2": "crops/still/t1.jpg"}


def at(second: int) -> datetime:
    return datetime(2024, 5, 12, 21, 0, second, tzinfo=UTC)


def ev(media_id: str, start: float | None = None, end: float | None = None, **more: str) -> EvidenceRef:
    return EvidenceRef(media_id=media_id, start_s=start, end_s=end, **more)


def sha(char: str) -> str:
    return char * 64


def build_report() -> CaseReport:
    files = [
        ReportFile(
            id="F1",
            media_id=VIDEO,
            filename="harbour interview.mp4",
            kind="video",
            content_type="video/mp4",
            size=18_345_210,
            sha256=sha("a"),
            duration_s=95.2,
            width=1280,
            height=720,
            created=at(0),
            uploaded_at=datetime(2024, 5, 13, 8, 0, tzinfo=UTC),
            status="analyzed",
            thumbnail_key=THUMBNAIL_KEYS[VIDEO],
            steps=[
                StepOutcome(step="transcribe", status="succeeded", model=WHISPER, version=2),
                StepOutcome(step="faces", status="succeeded", model=FACES, version=1),
                StepOutcome(step="vision", status="succeeded", model=VISION, version=1),
                StepOutcome(step="ocr", status="succeeded", model=OCR, version=1),
            ],
        ),
        ReportFile(
            id="F2",
            media_id=STILL,
            filename="stairwell.jpg",
            kind="image",
            content_type="image/jpeg",
            size=412_009,
            sha256=sha("b"),
            width=1024,
            height=768,
            uploaded_at=datetime(2024, 5, 13, 8, 1, tzinfo=UTC),
            status="analyzed",
            sensitive=True,
            thumbnail_key=THUMBNAIL_KEYS[STILL],
            steps=[
                StepOutcome(step="faces", status="succeeded", model=FACES, version=1),
                StepOutcome(step="pose", status="succeeded", model=POSE, version=1),
                StepOutcome(step="sensitivity", status="succeeded", version=1),
            ],
        ),
        ReportFile(
            id="F3",
            media_id=VOICEMAIL,
            filename="voicemail 0412.m4a",
            kind="audio",
            content_type="audio/mp4",
            size=220_118,
            sha256=sha("c"),
            duration_s=31.0,
            uploaded_at=datetime(2024, 5, 13, 8, 2, tzinfo=UTC),
            status="partial",
            steps=[
                StepOutcome(step="transcribe", status="succeeded", model=WHISPER, version=1),
                StepOutcome(step="speakers", status="failed", reason="the voice model timed out twice"),
                StepOutcome(step="vision", status="not_run", reason="no vision-language endpoint configured"),
            ],
        ),
    ]
    timeline = [
        TimelineEntry(
            id="T1",
            kind="file_created",
            media_id=VIDEO,
            file="F1",
            start_s=0,
            at=at(0),
            text="The video was recorded (camera metadata).",
            evidence=[ev(VIDEO, 0)],
        ),
        TimelineEntry(
            id="T2",
            kind="scene",
            media_id=VIDEO,
            file="F1",
            start_s=0.0,
            end_s=14.2,
            text="An office with a desk and a window onto a harbour.",
            confidence=0.81,
            evidence=[ev(VIDEO, 0.0, 14.2, frame_id="fr-0001")],
        ),
        TimelineEntry(
            id="T3",
            kind="appearance",
            media_id=VIDEO,
            file="F1",
            start_s=1.5,
            end_s=60.0,
            text="Anna Meier is seen.",
            person_ids=["P1"],
            evidence=[ev(VIDEO, 1.5, 60.0, frame_id="fr-0004")],
        ),
        TimelineEntry(
            id="T4",
            kind="speech",
            media_id=VIDEO,
            file="F1",
            start_s=3.0,
            end_s=7.5,
            text=SPEECH_TEXT,
            language="en",
            speaker_id="cs-1",
            speaker="Anna Meier",
            person_ids=["P1"],
            confidence=0.93,
            evidence=[ev(VIDEO, 3.0, 7.5, segment_id=segment_id(VIDEO, 3.0))],
        ),
        TimelineEntry(
            id="T5",
            kind="speech",
            media_id=VIDEO,
            file="F1",
            start_s=8.0,
            end_s=11.0,
            text=GERMAN,
            language="de",
            translation=GERMAN_EN,
            speaker_id="cs-2",
            speaker="Speaker 2",
            confidence=0.88,
            evidence=[ev(VIDEO, 8.0, 11.0, segment_id=segment_id(VIDEO, 8.0))],
        ),
        TimelineEntry(
            id="T6",
            kind="speech",
            media_id=VIDEO,
            file="F1",
            start_s=12.0,
            end_s=14.0,
            text=HOSTILE,
            language="en",
            speaker_id="cs-1",
            speaker="Anna Meier",
            person_ids=["P1"],
            evidence=[ev(VIDEO, 12.0, 14.0, segment_id=segment_id(VIDEO, 12.0))],
        ),
        TimelineEntry(
            id="T7",
            kind="text",
            media_id=VIDEO,
            file="F1",
            start_s=20.0,
            end_s=24.0,
            text="HARBOUR OFFICE 3",
            language="en",
            confidence=0.77,
            evidence=[ev(VIDEO, 20.0, 24.0, frame_id="fr-0011")],
        ),
        TimelineEntry(
            id="T8",
            kind="indicator",
            media_id=VIDEO,
            file="F1",
            start_s=41.0,
            end_s=41.0,
            text="Hands appear bound behind the back.",
            person_ids=["P1"],
            indicator_id="I1",
            confidence=0.72,
            evidence=[ev(VIDEO, 41.0, 41.0, frame_id="fr-0020")],
        ),
        TimelineEntry(
            id="T9",
            kind="speech",
            media_id=VOICEMAIL,
            file="F3",
            start_s=2.0,
            end_s=5.0,
            text=FORMULA,
            language="en",
            speaker_id="cs-2",
            speaker="Speaker 2",
            evidence=[ev(VOICEMAIL, 2.0, 5.0, segment_id=segment_id(VOICEMAIL, 2.0))],
        ),
        TimelineEntry(
            id="T10",
            kind="indicator",
            media_id=VOICEMAIL,
            file="F3",
            start_s=6.0,
            end_s=8.5,
            text="Spoken distress cue: “help me”.",
            indicator_id="I2",
            confidence=0.64,
            speaker_id="cs-2",
            speaker="Speaker 2",
            evidence=[ev(VOICEMAIL, 6.0, 8.5, segment_id=segment_id(VOICEMAIL, 6.0))],
        ),
        TimelineEntry(
            id="T11",
            kind="unintelligible",
            media_id=VOICEMAIL,
            file="F3",
            start_s=12.0,
            end_s=15.5,
            text="Speech that could not be made out (music and wind).",
            evidence=[ev(VOICEMAIL, 12.0, 15.5)],
        ),
        TimelineEntry(
            id="T12",
            kind="appearance",
            media_id=STILL,
            file="F2",
            text="Person 2 is seen.",
            person_ids=["P2"],
            evidence=[ev(STILL, frame_id="fr-still")],
        ),
        TimelineEntry(
            id="T13",
            kind="posture",
            media_id=STILL,
            file="F2",
            text="Wrists held together in front of the body.",
            person_ids=["P2"],
            indicator_id="I3",
            confidence=0.58,
            evidence=[ev(STILL, frame_id="fr-still")],
        ),
    ]
    anna_seen = Appearance(
        media_id=VIDEO,
        file="F1",
        track_id="trk-v1",
        first_s=1.5,
        last_s=60.0,
        faces=48,
        frame_id="fr-0004",
        crop_key=CROP_KEYS["P1"],
    )
    other_seen_video = Appearance(
        media_id=VIDEO,
        file="F1",
        track_id="trk-v2",
        first_s=30.0,
        last_s=44.0,
        faces=9,
        frame_id="fr-0016",
        crop_key="crops/video/t2.jpg",
    )
    other_seen_still = Appearance(
        media_id=STILL,
        file="F2",
        track_id="trk-s1",
        first_s=0,
        last_s=0,
        faces=1,
        frame_id="fr-still",
        crop_key=CROP_KEYS["P2"],
    )
    persons = [
        PersonSummary(
            id="P1",
            person_id="per-anna",
            name="Anna Meier",
            named_by_reviewer=True,
            appearances=[anna_seen],
            best_crop=anna_seen,
            voice="cs-1",
            voice_name="Anna Meier",
            voice_basis="heard while only she is seen (3 turns, 0.91)",
            said=["T4", "T6"],
            co_occurrences=[CoOccurrence(person="P2", files=["F1"])],
            indicators=["I1"],
            evidence=[ev(VIDEO, 1.5, 60.0, frame_id="fr-0004")],
        ),
        PersonSummary(
            id="P2",
            person_id="per-0002",
            name="Person 2",
            appearances=[other_seen_video, other_seen_still],
            best_crop=other_seen_still,
            postures=["T13"],
            co_occurrences=[CoOccurrence(person="P1", files=["F1"])],
            indicators=["I3"],
            evidence=[ev(VIDEO, 30.0, 44.0, frame_id="fr-0016"), ev(STILL, frame_id="fr-still")],
        ),
    ]
    speakers = [
        SpeakerSummary(id="cs-1", name="Anna Meier", files=["F1"], seconds=41.5, languages=["en"]),
        SpeakerSummary(id="cs-2", name="Speaker 2", files=["F1", "F3"], seconds=12.0, languages=["de", "en"]),
    ]
    indicators = [
        Indicator(
            id="I1",
            finding_id="fnd-1",
            indicator_key="k" * 64,
            step="vision",
            category="restraint",
            label="hands bound behind the back",
            confidence=0.72,
            model=VISION,
            media_id=VIDEO,
            file="F1",
            start_s=41.0,
            person_ids=["P1"],
            review=ReviewOutcome(
                decision="confirmed",
                reason="rope visible at the wrists in the frame",
                reviewer="rev-lena",
                decided_at=datetime(2024, 5, 14, 9, 30, tzinfo=UTC),
            ),
            evidence=[ev(VIDEO, 41.0, 41.0, frame_id="fr-0020")],
        ),
        Indicator(
            id="I2",
            finding_id="fnd-2",
            indicator_key="m" * 64,
            step="phrases",
            category="distress",
            label="spoken cue: help me",
            confidence=0.64,
            model=CUES,
            media_id=VOICEMAIL,
            file="F3",
            start_s=6.0,
            review=ReviewOutcome(decision="unreviewed"),
            evidence=[ev(VOICEMAIL, 6.0, 8.5, segment_id=segment_id(VOICEMAIL, 6.0))],
        ),
        Indicator(
            id="I3",
            finding_id="fnd-3",
            indicator_key="n" * 64,
            step="pose",
            category="posture",
            label="wrists together",
            confidence=0.58,
            model=POSE,
            media_id=STILL,
            file="F2",
            person_ids=["P2"],
            review=ReviewOutcome(
                decision="rejected",
                reason="-holding a cup, not restrained",
                reviewer="rev-lena",
                decided_at=datetime(2024, 5, 14, 9, 41, tzinfo=UTC),
            ),
            evidence=[ev(STILL, frame_id="fr-still")],
        ),
    ]
    gaps = [
        Gap(
            id="G1",
            kind="step_not_run",
            text="The vision step did not run on the voicemail: no endpoint.",
            media_id=VOICEMAIL,
            file="F3",
            step="vision",
        ),
        Gap(
            id="G2",
            kind="unintelligible",
            text="3.5 s of speech could not be made out.",
            media_id=VOICEMAIL,
            file="F3",
            start_s=12.0,
            end_s=15.5,
            evidence=[ev(VOICEMAIL, 12.0, 15.5)],
        ),
        Gap(
            id="G3",
            kind="step_failed",
            text="Speakers could not be told apart in the voicemail.",
            media_id=VOICEMAIL,
            file="F3",
            step="speakers",
        ),
    ]
    narrative = NarrativeSection(
        generator="deterministic",
        statements=[
            Statement(
                text="Anna Meier is seen in the interview video for about a minute.", citations=["P1", "T3"]
            ),
            Statement(
                text="A vision model saw hands that appear bound behind the back; a reviewer confirmed it.",
                citations=["I1", "T8"],
            ),
            Statement(
                text="In the voicemail a spoken distress cue was heard; nobody has reviewed it yet.",
                citations=["I2", "T10", "F3"],
            ),
            Statement(text="Part of the voicemail could not be made out.", citations=["G2"]),
        ],
    )
    custody = Custody(
        files=[
            CustodyFile(media_id=f.media_id, filename=f.filename, sha256=f.sha256, size=f.size) for f in files
        ],
        models=[
            CustodyModel(step="transcribe", model=WHISPER),
            CustodyModel(step="vision", model=VISION),
            CustodyModel(step="pose", model=POSE),
            CustodyModel(step="phrases", model=CUES),
        ],
        audit_head=AuditHead(chain="tenant-1", seq=4711, hash="f" * 64),
        signed_at=datetime(2024, 5, 14, 10, 0, tzinfo=UTC),
        key_id="platform-2024-05",
        signature="eyJhbGciOiJFZERTQSJ9..c2lnbmF0dXJl",
    )
    return CaseReport(
        report_id="rep-0001",
        tenant_id="tenant-1",
        case_id="case-0001",
        case_name="Harbour Street, 12 May",
        version=3,
        created_at=datetime(2024, 5, 14, 10, 0, tzinfo=UTC),
        job_id="job-77",
        context="Three files handed over by the harbour office; check the evening of 12 May.",
        partial=True,
        files=files,
        timeline=timeline,
        persons=persons,
        speakers=speakers,
        indicators=indicators,
        gaps=gaps,
        narrative=narrative,
        custody=custody,
    )


def picture(color: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    """A small picture with a shape on it, so a screenshot of it is not blank."""
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse(
        (w // 4, h // 6, 3 * w // 4, 5 * h // 6), fill=(240, 220, 190), outline=(40, 40, 40), width=2
    )
    draw.rectangle((0, h - h // 6, w, h), fill=(30, 60, 110))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


THUMBNAILS = {
    VIDEO: picture((70, 130, 180), (160, 90), "PNG"),
    STILL: picture((150, 150, 150), (160, 120), "JPEG"),
}
CROPS = {
    CROP_KEYS["P1"]: picture((200, 120, 90), (96, 96), "PNG"),
    CROP_KEYS["P2"]: picture((120, 120, 120), (96, 96), "JPEG"),
}


def thumbnail(media_id: str) -> bytes | None:
    return THUMBNAILS.get(media_id)


def crop(key: str) -> bytes | None:
    return CROPS.get(key)


def transcript() -> Transcript:
    words = [
        SpokenWord(start=3.0 + i * 0.4, end=3.35 + i * 0.4, text=w) for i, w in enumerate(SPEECH_TEXT.split())
    ]
    return Transcript(
        tenant_id="tenant-1",
        case_id="case-0001",
        media_id=VIDEO,
        version=2,
        model=WHISPER,
        segments=[
            SpeechSegment(
                id=segment_id(VIDEO, 3.0),
                start=3.0,
                end=7.5,
                text=SPEECH_TEXT,
                language="en",
                words=words,
                speaker="S1",
                case_speaker_id="cs-1",
            ),
            SpeechSegment(
                id=segment_id(VIDEO, 8.0),
                start=8.0,
                end=11.0,
                text=GERMAN,
                language="de",
                translation=GERMAN_EN,
                speaker="S2",
                case_speaker_id="cs-2",
            ),
            SpeechSegment(
                id=segment_id(VIDEO, 12.0),
                start=12.0,
                end=14.0,
                text=HOSTILE,
                language="en",
                speaker="S1",
                case_speaker_id="cs-1",
            ),
        ],
    )
