"""Content typing from magic bytes: every accepted format as ffmpeg writes it, hostile and
unrecognisable bytes refused with what they look like, and no crash on arbitrary input."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.ingest.sniff import ACCEPTED, HEAD_BYTES, UnsupportedMedia, accepted_summary, sniff

from .conftest import Media

EXPECTED = {
    # name in the media fixture: (format, kind, content type)
    "mp4": ("mp4", "video", "video/mp4"),
    "mov": ("mov", "video", "video/quicktime"),
    "3gp": ("3gp", "video", "video/3gpp"),
    "mkv": ("matroska", "video", "video/x-matroska"),
    "webm": ("webm", "video", "video/webm"),
    "avi": ("avi", "video", "video/x-msvideo"),
    "ts": ("mpegts", "video", "video/mp2t"),
    "mpg": ("mpegps", "video", "video/mpeg"),
    "flv": ("flv", "video", "video/x-flv"),
    "wav": ("wav", "audio", "audio/wav"),
    "mp3": ("mp3", "audio", "audio/mpeg"),  # with an ID3v2 tag
    "mp3-bare": ("mp3", "audio", "audio/mpeg"),  # frame sync at byte 0
    "flac": ("flac", "audio", "audio/flac"),
    "ogg": ("ogg-vorbis", "audio", "audio/ogg"),
    "opus": ("ogg-opus", "audio", "audio/ogg"),
    "m4a": ("m4a", "audio", "audio/mp4"),
    "aac": ("aac", "audio", "audio/aac"),
    "aiff": ("aiff", "audio", "audio/aiff"),
    "amr": ("amr", "audio", "audio/amr"),
    "jpeg": ("jpeg", "image", "image/jpeg"),
    "png": ("png", "image", "image/png"),
    "gif": ("gif", "image", "image/gif"),
    "webp": ("webp", "image", "image/webp"),
    "tiff": ("tiff", "image", "image/tiff"),
    "bmp": ("bmp", "image", "image/bmp"),
    "heic": ("heic", "image", "image/heic"),
    "heif": ("heif", "image", "image/heif"),
    # a PNG signature followed by garbage is "PNG" here; the probe step rejects it when decoding
    "lying_png": ("png", "image", "image/png"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accepted_formats_are_recognised_from_their_head(media: Media, name: str) -> None:
    found = sniff(media[name][:HEAD_BYTES])
    assert (found.format, found.kind, found.content_type) == EXPECTED[name]
    assert found.format in {entry.format for entry in ACCEPTED}


def tar_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("notes.txt")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"note"))
    return buffer.getvalue()


REFUSED = {
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "html": "an HTML page",
    "empty": "empty",
    "text": "a text file",
    "avif": "an AVIF image",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_files_are_refused_naming_what_they_look_like(media: Media, name: str) -> None:
    with pytest.raises(UnsupportedMedia) as refused:
        sniff(media[name][:HEAD_BYTES])
    assert refused.value.reason.startswith(REFUSED[name])
    message = str(refused.value)
    assert REFUSED[name] in message
    assert all(entry.name in message for entry in ACCEPTED)


@pytest.mark.parametrize(
    ("head", "looks_like"),
    [
        (gzip.compress(b"x" * 100, mtime=0), "a gzip archive"),  # one test id in every worker
        (tar_archive(), "a tar archive"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 60, "an ELF executable"),
        (b"MZ\x90\x00" + b"\x00" * 60, "a Windows executable"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG image"),
        (b'<?xml version="1.0"?>\n<note/>', "an XML document"),
        (b"<script>alert(1)</script>", "an HTML page"),
        (b'{"not": "media"}', "JSON or other structured text"),
        (b"#!/bin/sh\nrm -rf /\n", "a script"),
        (b"0&\xb2u\x8ef\xcf\x11\xa6\xd9\x00\xaa\x00b\xcel", "a Windows Media (ASF/WMV/WMA) file"),
        (b"RIFF\x00\x00\x00\x00CDXAfmt ", "a RIFF file of type 'CDXA'"),
        (b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x1e\x80theora", "an Ogg Theora video"),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom", "a Canon raw image (CR3)"),
        (b"\x00\x00\x00\x14ftypzzzz\x00\x00\x00\x01zzzz", "an ISO media file of brand 'zzzz'"),
        (bytes([0x00, 0x01, 0x02, 0x03, 0xFE, 0xFD]) * 10, "unrecognised binary data"),
    ],
)
def test_other_content_is_described(head: bytes, looks_like: str) -> None:
    with pytest.raises(UnsupportedMedia) as refused:
        sniff(head)
    assert refused.value.reason.startswith(looks_like)


@pytest.mark.parametrize(
    "head", [b"G", b"\xff", b"\xff\xfb", b"ID3", b"RIFF", b"\x00\x00\x00\x20ftyp", b"BM"]
)
def test_cut_off_signatures_are_refused_not_guessed(head: bytes) -> None:
    with pytest.raises(UnsupportedMedia):
        sniff(head)


def test_random_bytes_after_a_frame_sync_are_no_mp3() -> None:
    """A lone MP3 header whose next frame is not where its length says is not taken for MP3."""
    with pytest.raises(UnsupportedMedia):
        sniff(b"\xff\xfb\x90\x00" + bytes(range(7, 255)) * 8)


def test_the_accepted_table_is_explicit_and_summarised() -> None:
    formats = [entry.format for entry in ACCEPTED]
    assert len(formats) == len(set(formats))
    assert {entry.kind for entry in ACCEPTED} == {"image", "video", "audio"}
    summary = accepted_summary()
    assert summary.startswith("image: JPEG, PNG")
    assert "video: MP4" in summary
    assert "audio: WAV" in summary


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=700))
def test_arbitrary_bytes_are_typed_or_refused_never_crash(head: bytes) -> None:
    reason = None
    try:
        found = sniff(head)
    except UnsupportedMedia as refused:
        reason = refused.reason
    else:
        assert found.format in {entry.format for entry in ACCEPTED}
    assert reason is None or reason.strip()
