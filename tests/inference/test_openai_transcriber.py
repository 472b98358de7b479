"""The remote transcriber against real HTTP servers on loopback that run Whisper base:

* `WhisperAudioServer` (tests/inference/openai_audio_server.py): OpenAI's audio API, policed as
  strictly as OpenAI's (multipart fields, the key, verbose_json with top-level words, error bodies);
* faster-whisper-server from PyPI, an independent implementation of the same routes.

The audio is an English and German script spoken by espeak-ng (`aima.samples.write_script_wav`).
A few shapes no local server produces (per-segment words with probabilities, several translated
segments in one region) go over `httpx.MockTransport`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aima.model_settings import TranscriberSettings
from aima.samples import Pause, Spoken, Utterance, write_script_wav
from aima.settings import load_settings
from inference.cpu.assets import whisper_model_dir
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable
from inference.pool import ModelPool
from inference.remote.openai_audio import OpenAITranscriber, language_code
from inference.tasks import TimeSpan, Transcriber, Transcript, TranscriptionInput
from tests.inference.openai_audio_server import Fault, WhisperAudioServer, serve_in_thread
from tests.support import free_port

SCRIPT = (
    Pause(0.6),
    Utterance("Where were you on Tuesday evening?", "en-us", "en"),
    Pause(1.0),
    Utterance("Ich war den ganzen Abend zu Hause bei meiner Schwester.", "de", "de"),
    Pause(1.0),
    Utterance("Nobody came to the door after ten o'clock.", "en-us", "en"),
)
PAD = 0.2


class Recording:
    def __init__(self, path: Path, spans: list[Spoken]) -> None:
        self.path = path
        self.spans = spans
        self.regions = [TimeSpan(start=max(s.start - PAD, 0.0), end=s.end + PAD) for s in spans]
        self.duration = spans[-1].end


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    path = tmp_path_factory.mktemp("speech") / "en_de.wav"
    return Recording(path, write_script_wav(path, SCRIPT))


@pytest.fixture(scope="module")
def whisper() -> Iterator[tuple[WhisperAudioServer, str]]:
    server = WhisperAudioServer(whisper_model_dir("base"))
    with serve_in_thread(server.app) as url:
        yield server, url + "/v1"


@pytest.fixture
def server(whisper: tuple[WhisperAudioServer, str]) -> WhisperAudioServer:
    whisper[0].reset()
    return whisper[0]


@pytest.fixture
def transcriber(whisper: tuple[WhisperAudioServer, str]) -> Callable[..., OpenAITranscriber]:
    def make(**settings: Any) -> OpenAITranscriber:
        block = {"backend": "openai", "endpoint": whisper[1], "model": "whisper-base", "api_key": "test-key"}
        return OpenAITranscriber(TranscriberSettings.model_validate(block | settings))

    return make


def assert_inside(transcript: Transcript, regions: list[TimeSpan]) -> None:
    for segment in transcript.segments:
        assert segment.region is not None
        region = regions[segment.region]
        assert region.start <= segment.start <= segment.end <= region.end
        for word in segment.words:
            assert region.start <= word.start <= word.end <= region.end


# -- the faithful server -------------------------------------------------------------------------


def test_every_region_gets_its_own_language_file_times_and_an_english_translation(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    model = transcriber()
    transcript = model.predict(
        TranscriptionInput(path=recording.path, regions=recording.regions, translate=True)
    )

    assert {segment.region for segment in transcript.segments} == {0, 1, 2}
    by_region = {segment.region: segment for segment in transcript.segments}
    assert [by_region[i].language for i in range(3)] == ["en", "de", "en"]
    assert "tuesday" in by_region[0].text.lower()
    assert "schwester" in by_region[1].text.lower()
    assert "door" in by_region[2].text.lower()
    assert_inside(transcript, recording.regions)
    # times are the file's, not the region's: the German words start after the first region
    assert by_region[1].words[0].start >= recording.regions[1].start >= 3.0
    assert all(segment.words for segment in transcript.segments)
    assert all(0 < (segment.confidence or 0) <= 1 for segment in transcript.segments)
    assert transcript.language == "en"
    assert transcript.duration_s == pytest.approx(recording.duration, abs=0.01)

    # the German region, and only it, is translated into English
    german = by_region[1].translation or ""
    assert any(word in german.lower() for word in ("evening", "sister", "home", "house")), german
    assert by_region[0].translation is None
    assert by_region[2].translation is None

    # one small WAV per region, the translation of the German one, and nothing else
    routes = [(seen.route, seen.seconds) for seen in server.seen]
    # (the last region, padded past the end of the file, is cut at the end)
    lengths = [round(min(r.end, recording.duration) - r.start, 3) for r in recording.regions]
    assert [route for route, _ in routes] == [
        "/v1/audio/transcriptions",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/audio/transcriptions",
    ]
    assert [seconds for _, seconds in routes] == pytest.approx(
        [lengths[0], lengths[1], lengths[1], lengths[2]], abs=0.01
    )
    transcription = server.seen[0].fields
    assert transcription == {
        "model": ["whisper-base"],
        "response_format": ["verbose_json"],
        "temperature": ["0.0"],
        "timestamp_granularities[]": ["word", "segment"],
    }
    assert server.seen[2].fields == {
        "model": ["whisper-base"],
        "response_format": ["verbose_json"],
        "temperature": ["0.0"],
    }


def test_the_whole_file_is_one_request_with_one_language(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    transcript = transcriber().predict(TranscriptionInput(path=recording.path))
    assert [(seen.route, seen.seconds) for seen in server.seen] == [
        ("/v1/audio/transcriptions", pytest.approx(recording.duration, abs=0.01))
    ]
    assert transcript.segments
    assert all(segment.region is None for segment in transcript.segments)
    assert {segment.language for segment in transcript.segments} == {"en"}  # why regions matter
    assert all(0 <= s.start <= s.end <= recording.duration for s in transcript.segments)
    assert "tuesday" in transcript.segments[0].text.lower()


def test_a_forced_language_is_sent_and_reported(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    german = [recording.regions[1]]
    model = transcriber(language="de")  # AIMA_MODELS__TRANSCRIBER__LANGUAGE
    transcript = model.predict(TranscriptionInput(path=recording.path, regions=german, language="en"))
    assert server.seen[-1].fields["language"] == ["en"]  # the input's language before the setting's
    assert {segment.language for segment in transcript.segments} == {"en"}
    assert transcript.language == "en"
    assert all(segment.language_probability is None for segment in transcript.segments)

    transcript = model.predict(TranscriptionInput(path=recording.path, regions=german))
    assert server.seen[-1].fields["language"] == ["de"]
    assert {segment.language for segment in transcript.segments} == {"de"}
    assert "schwester" in " ".join(s.text for s in transcript.segments).lower()


def test_audio_in_another_format_is_converted_to_16_khz_mono(
    server: WhisperAudioServer,
    transcriber: Callable[..., OpenAITranscriber],
    recording: Recording,
    tmp_path: Path,
) -> None:
    stereo = tmp_path / "stereo.ogg"
    argv = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(recording.path)]
    subprocess.run([*argv, "-ac", "2", "-ar", "44100", "-c:a", "libvorbis", str(stereo)], check=True)
    regions = [recording.regions[0]]
    transcript = transcriber().predict(TranscriptionInput(path=stereo, regions=regions))
    assert server.seen[-1].seconds == pytest.approx(regions[0].end - regions[0].start, abs=0.01)
    assert "tuesday" in transcript.segments[0].text.lower()
    assert_inside(transcript, regions)


def test_a_very_short_region_is_sent_with_silence_after_it(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    region = TimeSpan(start=1.0, end=1.04)  # OpenAI's API refuses audio under 0.1 s
    transcript = transcriber().predict(TranscriptionInput(path=recording.path, regions=[region]))
    assert server.seen[-1].seconds == 0.1
    assert_inside(transcript, [region])


def test_health_asks_the_models_route_with_the_key(transcriber: Callable[..., OpenAITranscriber]) -> None:
    model = transcriber()
    assert model.health().state == "not_loaded"
    model.load()
    assert model.health().state == "ready"
    assert transcriber(api_key="wrong").health().state == "not_configured"


def test_refused_credentials_are_not_configured(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    for key in ("wrong-key", None):
        model = transcriber(api_key=key)
        with pytest.raises(ModelNotConfigured, match="AIMA_MODELS__TRANSCRIBER__API_KEY") as caught:
            model.predict(TranscriptionInput(path=recording.path, regions=recording.regions[:1]))
        assert (caught.value.task, caught.value.backend) == ("transcriber", "openai")
    assert server.seen == []  # refused before the audio was looked at


def test_an_unknown_model_is_not_configured(
    transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    with pytest.raises(ModelNotConfigured, match="AIMA_MODELS__TRANSCRIBER__MODEL"):
        transcriber(model="whisper-huge").predict(
            TranscriptionInput(path=recording.path, regions=recording.regions[:1])
        )


def test_a_brief_outage_is_retried_and_a_lasting_one_is_unavailable(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    inputs = TranscriptionInput(path=recording.path, regions=recording.regions[:1])
    server.faults.append(Fault(503, headers={"Retry-After": "0"}))
    transcript = transcriber().predict(inputs)
    assert "tuesday" in transcript.segments[0].text.lower()
    assert len(server.seen) == 2

    server.reset()
    server.faults.extend(
        [Fault(503, headers={"Retry-After": "0"}), Fault(502), Fault(429, headers={"Retry-After": "7"})]
    )
    with pytest.raises(ModelUnavailable, match="HTTP 429") as caught:
        transcriber(options={"retry_backoff_seconds": 0}).predict(inputs)
    assert caught.value.retry_after == 7.0
    assert len(server.seen) == 3  # the first try and two retries


def test_a_timeout_is_unavailable(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    server.faults.append(Fault(503, delay=2.0))
    model = transcriber(timeout_seconds=0.5, options={"retries": 0})
    with pytest.raises(ModelUnavailable, match="timed out"):
        model.predict(TranscriptionInput(path=recording.path, regions=recording.regions[:1]))


def test_an_endpoint_that_is_down_is_unavailable(recording: Recording) -> None:
    settings = {"backend": "openai", "endpoint": f"http://127.0.0.1:{free_port()}/v1", "model": "m"}
    model = OpenAITranscriber(TranscriberSettings.model_validate(settings | {"options": {"retries": 0}}))
    with pytest.raises(ModelUnavailable, match="cannot reach"):
        model.predict(TranscriptionInput(path=recording.path, regions=recording.regions[:1]))
    assert model.health().state == "down"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Fault(200, b"<html>busy</html>", {"content-type": "text/html"}), "not JSON"),
        (Fault(200, {"segments": [{"start": "soon", "end": 1, "text": "hi"}]}), "segments.0.start"),
        (Fault(200, {"segments": "none"}), "segments"),
        (
            Fault(400, {"error": {"message": "Invalid file format.", "type": "invalid_request_error"}}),
            "refused",
        ),
    ],
)
def test_a_malformed_or_refused_answer_is_invalid_output(
    server: WhisperAudioServer,
    transcriber: Callable[..., OpenAITranscriber],
    recording: Recording,
    reply: Fault,
    message: str,
) -> None:
    server.faults.append(reply)
    with pytest.raises(InvalidModelOutput, match=message):
        transcriber().predict(TranscriptionInput(path=recording.path, regions=recording.regions[:1]))
    assert len(server.seen) == 1  # never retried


def test_an_answer_without_segments(
    server: WhisperAudioServer, transcriber: Callable[..., OpenAITranscriber], recording: Recording
) -> None:
    region = recording.regions[0]
    server.faults.append(Fault(200, {"text": " Where were you?", "language": "English"}))
    transcript = transcriber().predict(TranscriptionInput(path=recording.path, regions=[region]))
    (segment,) = transcript.segments
    assert (segment.start, segment.end, segment.text, segment.language, segment.region) == (
        round(region.start, 3),
        round(region.end, 3),
        "Where were you?",
        "en",
        0,
    )
    assert segment.words == []

    server.faults.append(Fault(200, {"text": "Where were you?"}))
    with pytest.raises(InvalidModelOutput, match="no segments"):
        transcriber().predict(TranscriptionInput(path=recording.path))


def test_the_pool_builds_it_from_settings(whisper: tuple[WhisperAudioServer, str], tmp_path: Path) -> None:
    block = {"backend": "openai", "endpoint": whisper[1], "model": "whisper-base", "api_key": "test-key"}
    pool = ModelPool.from_settings(load_settings(data_dir=tmp_path, models={"transcriber": block}))
    try:
        model = pool.get(Transcriber)
        assert isinstance(model, OpenAITranscriber)
        assert pool.health("transcriber").state == "not_loaded"
    finally:
        pool.close()


# -- faster-whisper-server (PyPI), another implementation of the routes ------------------------


@pytest.fixture(scope="module")
def faster_whisper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from faster_whisper_server import models
    from faster_whisper_server.api import app

    config = tmp_path_factory.mktemp("fws") / "models.yaml"
    model = {
        "name": "whisper-1",
        "path": str(whisper_model_dir("base")),
        "model_options": {"device": "cpu", "compute_type": "int8", "cpu_threads": 2},
        "transcribe_options": {"beam_size": 1, "condition_on_previous_text": False},
        "translate_options": {"beam_size": 1},
    }
    config.write_text(yaml.safe_dump({"models": [model]}))
    models.configure_models_from_config(str(config))
    with serve_in_thread(app) as url:
        yield url + "/v1"


def test_faster_whisper_server_regions_languages_translation_and_a_forced_language(
    faster_whisper_server: str, recording: Recording
) -> None:
    settings = {"backend": "openai", "endpoint": faster_whisper_server, "model": "whisper-1"}
    model = OpenAITranscriber(
        TranscriberSettings.model_validate(settings | {"options": {"health_path": "../health"}})
    )
    assert model.health().state == "not_loaded"

    transcript = model.predict(
        TranscriptionInput(path=recording.path, regions=recording.regions, translate=True)
    )
    by_region = {segment.region: segment for segment in transcript.segments}
    assert [by_region[i].language for i in range(3)] == ["en", "de", "en"]
    assert "schwester" in by_region[1].text.lower()
    german = by_region[1].translation or ""
    assert any(word in german.lower() for word in ("evening", "sister", "home", "house")), german
    assert by_region[0].translation is None
    assert_inside(transcript, recording.regions)
    assert by_region[1].start >= recording.regions[1].start >= 3.0
    assert all(segment.words == [] for segment in transcript.segments)  # it has no word timestamps

    forced = model.predict(
        TranscriptionInput(path=recording.path, regions=recording.regions[1:2], language="en")
    )
    assert {segment.language for segment in forced.segments} == {"en"}


# -- shapes the local servers do not produce (httpx.MockTransport) -------------------------------


def mock(answers: dict[str, list[Any]]) -> tuple[OpenAITranscriber, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        route = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=answers[route].pop(0))

    settings = {"backend": "openai", "endpoint": "http://audio.test/v1", "model": "m"}
    model = OpenAITranscriber(TranscriberSettings.model_validate(settings))
    model.transport = httpx.MockTransport(handle)
    return model, seen


def test_segment_words_with_probabilities_are_placed_and_clamped(recording: Recording) -> None:
    region = TimeSpan(start=3.0, end=5.0)
    answer = {
        "language": "de",
        "duration": 2.0,
        "segments": [
            {
                "start": 0.1,
                "end": 2.6,  # past the region: clamped
                "text": " Ich war zu Hause.",
                "avg_logprob": -0.2,
                "words": [
                    {"word": " Ich", "start": 0.1, "end": 0.4, "probability": 0.9},
                    {"word": " Hause.", "start": 1.8, "end": 2.6, "probability": 0.7},
                    {"word": " ", "start": 2.6, "end": 2.7},
                ],
            }
        ],
    }
    model, seen = mock({"transcriptions": [answer]})
    (segment,) = model.predict(TranscriptionInput(path=recording.path, regions=[region])).segments
    assert (segment.start, segment.end, segment.language, segment.region) == (3.1, 5.0, "de", 0)
    assert [(w.text, w.start, w.end, w.confidence) for w in segment.words] == [
        ("Ich", 3.1, 3.4, 0.9),
        ("Hause.", 4.8, 5.0, 0.7),
    ]
    assert segment.confidence == pytest.approx(0.8187, abs=1e-4)
    body = seen[0].read()
    assert b'name="file"; filename="audio.wav"' in body
    assert b"Content-Type: audio/wav" in body
    assert seen[0].headers["content-type"].startswith("multipart/form-data; boundary=")


def test_several_segments_of_a_region_each_get_their_translation(recording: Recording) -> None:
    region = recording.regions[1]
    transcription = {
        "language": "german",
        "segments": [
            {"start": 0.0, "end": 1.5, "text": "Ich war den ganzen Abend"},
            {"start": 1.6, "end": 3.0, "text": "zu Hause."},
            {"start": 3.1, "end": 3.8, "text": "Bei meiner Schwester."},
        ],
        "words": [
            {"word": "Ich", "start": 0.0, "end": 0.3},
            {"word": "Abend", "start": 1.0, "end": 1.5},
            {"word": "Hause.", "start": 2.0, "end": 2.9},
            {"word": "Schwester.", "start": 3.3, "end": 3.8},
        ],
    }
    translation = {
        "language": "english",
        "text": "I was at home the whole evening. With my sister.",
        "segments": [
            {"start": 0.0, "end": 1.4, "text": " I was the whole evening"},
            {"start": 1.5, "end": 3.0, "text": " at home."},
        ],
    }
    alone = {"text": " With my sister."}
    model, seen = mock({"transcriptions": [transcription], "translations": [translation, alone]})
    segments = model.predict(
        TranscriptionInput(path=recording.path, regions=[region], translate=True)
    ).segments
    assert [s.translation for s in segments] == ["I was the whole evening", "at home.", "With my sister."]
    assert [[w.text for w in s.words] for s in segments] == [["Ich", "Abend"], ["Hause."], ["Schwester."]]
    assert {s.language for s in segments} == {"de"}
    # the third segment had nothing of the region's translation: it was sent alone
    assert [r.url.path for r in seen][-1] == "/v1/audio/translations"
    assert len(seen) == 3


def test_language_names_and_codes() -> None:
    assert [
        language_code(v) for v in ("de", "German", "english", "haitian creole", "yue", "klingon", None)
    ] == [
        "de",
        "de",
        "en",
        "ht",
        "yue",
        None,
        None,
    ]


def test_settings_select_it_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIMA_MODELS__TRANSCRIBER__BACKEND", "openai")
    monkeypatch.setenv("AIMA_MODELS__TRANSCRIBER__ENDPOINT", "http://whisper.test/v1/")
    monkeypatch.setenv("AIMA_MODELS__TRANSCRIBER__MODEL", "whisper-large-v3")
    monkeypatch.setenv("AIMA_MODELS__TRANSCRIBER__API_KEY", "secret")
    settings = load_settings(data_dir=tmp_path)
    pool = ModelPool.from_settings(settings)
    model = pool.get(Transcriber)
    assert isinstance(model, OpenAITranscriber)
    assert model.settings.endpoint == "http://whisper.test/v1"
    assert "secret" not in json.dumps(repr(model.settings))
    pool.close()
