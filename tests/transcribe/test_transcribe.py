"""The transcribe function on spoken media, with the real models: languages per segment, nothing
invented over silence or noise, nothing dropped, chunks that fail or crash, clear states."""

from __future__ import annotations

import signal
import subprocess
import sys
import wave
from collections.abc import Sequence
from pathlib import Path

import pytest

from aima.model_settings import ModelsSettings
from aima.samples import write_tone_wav
from aima.transcripts import Transcript
from events.catalogue import MediaFailed, TranscriptCompleted, parse_data
from events.envelope import CloudEvent
from functions.runtime.dispatch import Dispatcher
from functions.transcribe.core import NO_SPEECH, TranscribeCore, TranscribeOptions
from functions.transcribe.spec import SPEC
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable
from inference.registry import REGISTRY
from inference.tasks.speech import SpeechDetector, Transcriber, TranscriptionInput
from tests.speech_audio import accuracy
from tests.transcribe.wrapped import Wrapped

from .conftest import Env, Recording


async def run(core: TranscribeCore, event: CloudEvent) -> list[CloudEvent]:
    return await Dispatcher(SPEC, core, outbox=None, relay=None).dispatch(event)


def completed(events: Sequence[CloudEvent]) -> TranscriptCompleted:
    assert [e.type for e in events] == [TranscriptCompleted.TYPE]
    data = parse_data(events[0])
    assert isinstance(data, TranscriptCompleted)
    return data


def stored(env: Env, event: CloudEvent) -> Transcript:
    transcript = env.transcripts.latest(env.tenant_id, env.case_id, (event.data or {})["media_id"])
    assert transcript is not None
    return transcript


def overlapping(transcript: Transcript, start: float, end: float) -> list[str]:
    return [s.text for s in transcript.speech if s.start < end and s.end > start]


async def test_a_mixed_file_comes_out_in_its_languages_with_nothing_invented_or_lost(
    env: Env, recordings: dict[str, Recording], detector: SpeechDetector, transcriber: Transcriber
) -> None:
    recording = recordings["mixed"]
    event = env.extracted(recording.path)
    done = completed(await run(env.core(detector, transcriber), event))
    transcript = stored(env, event)
    assert done.status == "completed"
    assert done.version == transcript.version == 1
    assert transcript.forced_language is None
    spans = recording.spans
    for span in spans:  # each sentence exactly once, in its own language
        found = [s for s in transcript.speech if s.start < span.end and s.end > span.start]
        assert len(found) == 1, (span.utterance.text, [s.text for s in found])
        assert found[0].language == span.utterance.language
        assert accuracy(span.utterance.text, found[0].text) >= 0.6, found[0].text
        assert (found[0].translation is None) == (span.utterance.language == "en")
    # zero words in the silence and in the noise between the sentences
    for gap_start, gap_end in ((spans[0].end, spans[1].start), (spans[1].end, spans[2].start)):
        for segment in transcript.segments:
            for word in segment.words:
                assert not gap_start + 0.3 < word.start < gap_end - 0.3, (word, gap_start, gap_end)
    assert not [s for s in transcript.segments if s.kind == "unintelligible"]
    assert set(done.languages) == {"en", "de"}
    assert done.speech_segments == 3
    assert done.words == sum(len(s.words) for s in transcript.speech)
    for segment in transcript.speech:  # word timestamps and probabilities inside their segment
        assert segment.words
        assert segment.confidence is not None
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
        assert all(w.probability is not None for w in segment.words)


@pytest.mark.parametrize(("name", "minimum"), [("english", 0.85), ("german", 0.7)])
async def test_word_accuracy_per_language(
    env: Env,
    recordings: dict[str, Recording],
    detector: SpeechDetector,
    transcriber: Transcriber,
    name: str,
    minimum: float,
) -> None:
    recording = recordings[name]
    event = env.extracted(recording.path)
    completed(await run(env.core(detector, transcriber), event))
    transcript = stored(env, event)
    reference = " ".join(span.utterance.text for span in recording.spans)
    hypothesis = " ".join(segment.text for segment in transcript.speech)
    assert accuracy(reference, hypothesis) >= minimum, hypothesis
    assert {s.language for s in transcript.speech} == {recording.spans[0].utterance.language}


async def test_a_forced_language_wins(
    env: Env, recordings: dict[str, Recording], detector: SpeechDetector, transcriber: Transcriber
) -> None:
    event = env.extracted(recordings["mixed"].path)
    completed(await run(env.core(detector, transcriber, language="de"), event))
    transcript = stored(env, event)
    assert transcript.forced_language == "de"
    assert {s.language for s in transcript.speech} == {"de"}


async def test_no_speech_gives_zero_segments_and_the_reason(
    env: Env, tmp_path: Path, detector: SpeechDetector, transcriber: Transcriber
) -> None:
    silent = tmp_path / "silence.wav"
    with wave.open(str(silent), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000 * 4)
    for path in (silent, write_tone_wav(tmp_path / "tones.wav")):
        event = env.extracted(path)
        done = completed(await run(env.core(detector, transcriber), event))
        assert (done.status, done.result_count, done.reason) == ("completed", 0, NO_SPEECH)
        assert stored(env, event).segments == []


async def test_a_damaged_extract_fails_the_step_with_the_reason(
    env: Env, tmp_path: Path, detector: SpeechDetector, transcriber: Transcriber
) -> None:
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    event = env.extracted(damaged)
    events = await run(env.core(detector, transcriber), event)
    assert [e.type for e in events] == [MediaFailed.TYPE]
    failed = parse_data(events[0])
    assert isinstance(failed, MediaFailed)
    assert failed.step == "transcribe"
    assert "could not be read" in failed.reason
    transcript = stored(env, event)
    assert transcript.status == "failed"
    assert transcript.reason == failed.reason


async def test_without_a_model_the_step_is_not_run(
    env: Env, recordings: dict[str, Recording], detector: SpeechDetector
) -> None:
    settings = ModelsSettings().transcriber.model_copy(update={"backend": "none"})

    def missing() -> Transcriber:
        REGISTRY.create("transcriber", settings)
        raise AssertionError("unreachable")

    core = TranscribeCore(
        env.objects, env.transcripts, env.media, detector=lambda: detector, transcriber=missing
    )
    event = env.extracted(recordings["english"].path)
    done = completed(await run(core, event))
    assert done.status == "not_run"
    assert done.reason is not None
    assert "AIMA_MODELS__TRANSCRIBER" in done.reason
    assert stored(env, event).status == "not_run"


def failing(inner: Transcriber, failures: dict[int, Exception]) -> Wrapped:
    """The real transcriber, except that the calls numbered in ``failures`` raise."""

    def before(call: int, inputs: TranscriptionInput) -> None:
        failure = failures.pop(call, None)
        if failure is not None:
            raise failure

    return Wrapped(inner, before)


async def test_a_failed_chunk_becomes_unintelligible_gaps_and_the_file_goes_on(
    env: Env, recordings: dict[str, Recording], detector: SpeechDetector, transcriber: Transcriber
) -> None:
    flaky = failing(transcriber, {2: InvalidModelOutput("decoder produced garbage")})
    options = TranscribeOptions(chunk_speech_s=5.0)  # one sentence per chunk
    event = env.extracted(recordings["english"].path)
    done = completed(await run(env.core(detector, flaky, options=options), event))
    transcript = stored(env, event)
    gaps = [s for s in transcript.segments if s.kind == "unintelligible"]
    assert len(flaky.calls) == 4
    assert len(gaps) == 1
    assert gaps[0].reason is not None
    assert "decoder produced garbage" in gaps[0].reason
    second = recordings["english"].spans[1]
    assert gaps[0].start < second.end
    assert gaps[0].end > second.start
    assert done.unintelligible == 1
    assert done.speech_segments == 3


async def test_a_crash_resumes_at_the_last_finished_chunk_with_the_same_result(
    env: Env, recordings: dict[str, Recording], detector: SpeechDetector, transcriber: Transcriber
) -> None:
    options = TranscribeOptions(chunk_speech_s=5.0)
    recording = recordings["english"]
    reference_event = env.extracted(recording.path)
    completed(await run(env.core(detector, transcriber, options=options), reference_event))
    uninterrupted = stored(env, reference_event)

    flaky = failing(transcriber, {3: ModelUnavailable("endpoint went away")})
    event = env.extracted(recording.path)
    core = env.core(detector, flaky, options=options)
    with pytest.raises(ModelUnavailable):
        await run(core, event)
    assert env.transcripts.latest(env.tenant_id, env.case_id, (event.data or {})["media_id"]) is None
    assert len(flaky.calls) == 3
    completed(await run(core, event))  # the redelivery of the same event
    assert len(flaky.calls) == 5, "the two finished chunks were not transcribed again"
    assert flaky.calls[3] == flaky.calls[2]
    resumed = stored(env, event)

    def texts(transcript: Transcript) -> list[tuple[float, str, str | None]]:
        return [(s.start, s.text, s.language) for s in transcript.segments]

    assert texts(resumed) == texts(uninterrupted)
    assert env.transcripts.chunks(env.tenant_id, env.case_id, event.id) == {}


async def test_each_run_is_a_new_version_and_old_versions_stay_readable(
    env: Env, recordings: dict[str, Recording], detector: SpeechDetector, transcriber: Transcriber
) -> None:
    event = env.extracted(recordings["german"].path)
    media_id = (event.data or {})["media_id"]
    core = env.core(detector, transcriber)
    first = completed(await run(core, event))
    again = event.model_copy(update={"id": event.id + "-again"})
    second = completed(await run(core, again))
    assert (first.version, second.version) == (1, 2)
    assert env.transcripts.versions(env.tenant_id, env.case_id, media_id) == [1, 2]
    old = env.transcripts.get(env.tenant_id, env.case_id, media_id, 1)
    assert old is not None
    assert old.speech


async def test_the_english_only_model_transcribes_english(
    env: Env, recordings: dict[str, Recording], detector: SpeechDetector
) -> None:
    settings = ModelsSettings().transcriber.model_copy(update={"model": "tiny.en", "threads": 2})
    tiny = REGISTRY.create("transcriber", settings)
    assert isinstance(tiny, Transcriber)
    recording = recordings["english"]
    event = env.extracted(recording.path)
    completed(await run(env.core(detector, tiny), event))
    transcript = stored(env, event)
    reference = " ".join(span.utterance.text for span in recording.spans)
    assert accuracy(reference, " ".join(s.text for s in transcript.speech)) >= 0.75
    assert {s.language for s in transcript.speech} == {"en"}
    assert all(s.translation is None for s in transcript.speech)
    tiny.close()


def test_a_model_folder_that_is_not_there_is_not_configured_not_retried() -> None:
    settings = ModelsSettings().transcriber.model_copy(update={"model": "/nowhere/at/all"})
    model = REGISTRY.create("transcriber", settings)
    assert model.health().state == "not_configured"
    with pytest.raises(ModelNotConfigured, match="nowhere"):
        model.load()


def test_a_worker_killed_mid_file_resumes_at_the_first_unfinished_chunk(
    env: Env, recordings: dict[str, Recording], tmp_path: Path
) -> None:
    """SIGKILL while the third chunk is being transcribed; the redelivered event skips the two
    checkpointed chunks and the transcript is complete."""
    event = env.extracted(recordings["english"].path)
    folder = tmp_path  # the env's stores live here

    def run_worker(kill_at: int) -> tuple[int, list[float]]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.transcribe.crash_run",
                str(folder),
                event.model_dump_json(),
                str(kill_at),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(__file__).resolve().parents[2],
        )
        return proc.returncode, [float(line) for line in proc.stdout.split()]

    code, first = run_worker(kill_at=3)
    assert code == -signal.SIGKILL
    assert len(first) == 3
    assert env.transcripts.latest(env.tenant_id, env.case_id, (event.data or {})["media_id"]) is None
    assert sorted(env.transcripts.chunks(env.tenant_id, env.case_id, event.id)) == [0, 1]
    code, second = run_worker(kill_at=0)
    assert code == 0
    assert len(second) == 2, "only the unfinished chunks are transcribed again"
    assert second[0] == first[2] < second[1]
    transcript = stored(env, event)
    assert len(transcript.speech) == 4
    reference = " ".join(span.utterance.text for span in recordings["english"].spans)
    assert accuracy(reference, " ".join(s.text for s in transcript.speech)) >= 0.85
