"""The ffprobe/ffmpeg wrappers on generated media: metadata, frames, audio, previews and hostile input."""

from __future__ import annotations

import math
import os
import time
import wave
from pathlib import Path

import pytest

from functions.probe import ffmpeg
from functions.probe.ffmpeg import MediaError, RunLimits, header_dimensions

from .conftest import CREATED, CUT_S, DURATION_S, FPS, LATITUDE, LONGITUDE, Media

FRAME = 1 / FPS


def test_video_metadata_matches_what_was_generated(media: Media) -> None:
    info = ffmpeg.probe(media.video)

    assert info.kind == "video"
    assert info.format_name.startswith("mov,mp4")
    assert info.duration_s == pytest.approx(DURATION_S, abs=0.05)
    assert (info.width, info.height, info.fps, info.rotation) == (320, 240, FPS, 0)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.audio_channels, info.audio_sample_rate) == (1, 44100)
    assert (info.video_streams, info.audio_streams, info.subtitle_streams) == (1, 1, 0)
    assert str(info.creation_time).startswith(CREATED)
    assert info.location is not None
    assert (info.location.latitude, info.location.longitude) == (LATITUDE, LONGITUDE)
    assert info.to_dict()["location"] == {"latitude": LATITUDE, "longitude": LONGITUDE, "altitude": None}


def test_rotation_is_read_from_the_display_matrix_and_frames_come_out_upright(
    media: Media, tmp_path: Path
) -> None:
    info = ffmpeg.probe(media.rotated)
    assert (info.width, info.height, info.rotation) == (320, 240, 90)
    assert str(info.creation_time).startswith(CREATED)

    frames = ffmpeg.sample_frames(media.rotated, tmp_path, max_per_minute=20, scene_threshold=0.3)
    assert header_dimensions(frames[0][1]) == (240, 320)


def test_a_photo_gives_its_camera_and_gps_from_exif(media: Media) -> None:
    info = ffmpeg.probe(media.photo)

    assert info.kind == "image"
    assert (info.width, info.height, info.video_codec, info.duration_s) == (640, 480, "mjpeg", None)
    assert (info.make, info.model) == ("AIMA Cam", "Probe One")
    assert info.location is not None
    assert info.location.latitude == pytest.approx(LATITUDE, abs=1e-6)
    assert info.location.longitude == pytest.approx(LONGITUDE, abs=1e-6)
    assert info.tags["exif:GPSLatitudeRef"] == "N"

    png = ffmpeg.probe(media.png)
    assert (png.kind, png.width, png.height, png.video_codec, png.location) == (
        "image",
        320,
        240,
        "png",
        None,
    )


def test_audio_files_are_audio(media: Media) -> None:
    speech, tone = ffmpeg.probe(media.speech), ffmpeg.probe(media.tone)

    assert (speech.kind, speech.audio_codec, speech.audio_channels, speech.width) == (
        "audio",
        "pcm_s16le",
        1,
        None,
    )
    assert 1.0 < (speech.duration_s or 0) < 5.0
    assert (tone.kind, tone.audio_codec, tone.audio_channels, tone.audio_sample_rate) == (
        "audio",
        "mp3",
        2,
        44100,
    )
    assert tone.duration_s == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("per_minute", [60, 20, 12])
def test_frames_catch_the_scene_change_exactly_and_keep_the_floor_and_the_cap(
    media: Media, tmp_path: Path, per_minute: int
) -> None:
    frames = ffmpeg.sample_frames(media.video, tmp_path, max_per_minute=per_minute, scene_threshold=0.3)
    times = [t for t, _ in frames]

    assert times == sorted(times)
    cut = [t for t in times if abs(t - CUT_S) <= FRAME]
    assert cut == [pytest.approx(CUT_S, abs=1e-6)]  # exact: pts times the time base, not a guess
    step = 60 / per_minute
    windows = math.ceil(DURATION_S / step)
    assert len(frames) <= math.ceil(per_minute * DURATION_S / 60)  # the cap
    for k in range(windows):  # the floor: every window of 60/per_minute seconds has its frame
        assert sum(k * step <= t < (k + 1) * step for t in times) == 1, (k, times)
    assert sorted(tmp_path.iterdir()) == sorted(path for _, path in frames)
    assert all(header_dimensions(path) == (320, 240) for _, path in frames)


def test_without_scene_changes_the_frames_are_an_even_grid(media: Media, tmp_path: Path) -> None:
    frames = ffmpeg.sample_frames(media.video, tmp_path, max_per_minute=60, scene_threshold=0.99)
    assert [t for t, _ in frames] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], abs=1e-6)


def test_large_frames_are_scaled_to_the_max_edge(media: Media, tmp_path: Path) -> None:
    frames = ffmpeg.sample_frames(media.video, tmp_path, max_per_minute=12, scene_threshold=0.3, max_edge=160)
    assert {header_dimensions(path) for _, path in frames} == {(160, 120)}


def test_audio_is_extracted_as_16_khz_mono_wav(media: Media, tmp_path: Path) -> None:
    for source, expected in ((media.video, DURATION_S), (media.tone, 3.0)):
        out = tmp_path / f"{source.stem}.wav"
        duration = ffmpeg.extract_audio(source, out)
        with wave.open(str(out), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            assert wav.getnframes() / 16000 == pytest.approx(duration)
        assert duration == pytest.approx(expected, abs=0.1)


def test_thumbnail_and_preview_strip(media: Media, tmp_path: Path) -> None:
    thumb, preview = tmp_path / "thumb.jpg", tmp_path / "preview.jpg"
    ffmpeg.thumbnail(media.video, thumb, duration_s=DURATION_S, edge=200)
    ffmpeg.preview_strip(media.video, preview, 8, duration_s=DURATION_S, edge=100)

    assert header_dimensions(thumb) == (200, 150)
    assert header_dimensions(preview) == (8 * 100, 75)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty", "the file is empty (0 bytes)"),
        (
            "bomb",
            "30000x30000 pixels (900 megapixels), over the limit of 100 megapixels; refused without decoding",
        ),
        ("lying_png", "the picture size could not be read"),
        ("truncated", "not a readable audio, video or image file (moov atom not found"),
        ("passwd", "not a readable audio, video or image file"),
    ],
)
def test_hostile_files_are_refused_with_a_reason(media: Media, name: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(MediaError) as caught:
        ffmpeg.probe(getattr(media, name))
    assert reason in caught.value.reason
    assert time.monotonic() - started < 5


def test_a_playlist_cannot_pull_in_other_files(media: Media, tmp_path: Path) -> None:
    playlist = tmp_path / "upload"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\nfile://{media.video}\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(MediaError, match=r"unsupported container format \(hls\)"):
        ffmpeg.probe(playlist)


def test_limits_on_pixels_and_duration_apply_before_decoding(media: Media) -> None:
    with pytest.raises(MediaError, match="320x240 pixels"):
        ffmpeg.probe(media.video, RunLimits(max_pixels=320 * 240 - 1))
    with pytest.raises(MediaError, match="the video lasts 6 s, longer than the limit of 3 s"):
        ffmpeg.probe(media.video, RunLimits(max_duration_s=3))


def test_a_hanging_tool_is_stopped_at_the_wall_clock_timeout(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # ffmpeg blocks opening it forever
    started = time.monotonic()
    with pytest.raises(MediaError, match=r"sampling frames took longer than 0\.5 s and was stopped"):
        ffmpeg.sample_frames(
            fifo, tmp_path / "out", max_per_minute=12, scene_threshold=0.3, limits=RunLimits(0.5)
        )
    assert time.monotonic() - started < 3


def test_the_memory_limit_applies_to_the_child(media: Media) -> None:
    with pytest.raises(MediaError, match=r"MiB of memory|crashed"):
        ffmpeg.probe(media.video, RunLimits(memory_bytes=16 << 20))
