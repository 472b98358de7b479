"""Media made by the tests themselves (ffmpeg test sources, espeak-ng) and hostile files, once a session."""

from __future__ import annotations

import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

CUT_S = 2.4  # testsrc2 for 2.4 s, then SMPTE bars: a scene change at exactly 2.4 s (frame 60)
DURATION_S = 6.0
FPS = 25
CREATED = "2024-05-06T07:08:09"
LATITUDE, LONGITUDE = 48.1, 11.5


@dataclass(frozen=True)
class Media:
    video: Path  # 320x240, 25 fps, H.264 + AAC mono 44.1 kHz, 6 s, cut at 2.4 s, creation time, location
    rotated: Path  # the same, remuxed with rotate=90 (a display matrix)
    speech: Path  # espeak-ng WAV
    tone: Path  # 3 s 440 Hz stereo MP3 at 44.1 kHz
    photo: Path  # JPEG with EXIF make, model and GPS
    png: Path
    truncated: Path  # the video cut in half (no moov atom)
    lying_png: Path  # PNG magic, then garbage
    empty: Path
    bomb: Path  # a 30000x30000 PNG of a few kilobytes
    passwd: Path  # a text file


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int) -> bytes:
    """A grayscale PNG claiming ``side`` x ``side`` pixels whose IDAT holds only a few compressed rows."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
    )


def exif_segment(make: str, model: str, latitude: float, longitude: float) -> bytes:
    """A little-endian EXIF APP1 segment: IFD0 with Make, Model and a GPS IFD (whole degrees and minutes)."""

    def ifd(entries: list[tuple[int, int, int, bytes]], offset: int) -> bytes:
        data_at = offset + 2 + 12 * len(entries) + 4
        head, data = struct.pack("<H", len(entries)), b""
        for tag, kind, count, value in entries:
            if len(value) <= 4:
                head += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
            else:
                head += struct.pack("<HHII", tag, kind, count, data_at + len(data))
                data += value
        return head + struct.pack("<I", 0) + data

    def dms(value: float) -> bytes:
        degrees, minutes = int(value), round((value - int(value)) * 60)
        return struct.pack("<IIIIII", degrees, 1, minutes, 1, 0, 1)

    text = [(0x010F, make.encode() + b"\0"), (0x0110, model.encode() + b"\0")]
    base = [(tag, 2, len(value), value) for tag, value in text]
    gps_at = 8 + len(ifd([*base, (0x8825, 4, 1, b"\0" * 4)], 8))
    ifd0 = ifd([*base, (0x8825, 4, 1, struct.pack("<I", gps_at))], 8)
    gps = ifd(
        [(1, 2, 2, b"N\0"), (2, 5, 3, dms(latitude)), (3, 2, 2, b"E\0"), (4, 5, 3, dms(longitude))], gps_at
    )
    payload = b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd0 + gps
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    root = tmp_path_factory.mktemp("media")
    video, rotated = root / "video.mp4", root / "rotated.mp4"
    sources = [
        *("-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}:duration={CUT_S}"),
        *("-f", "lavfi", "-i", f"smptebars=size=320x240:rate={FPS}:duration={DURATION_S - CUT_S}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:duration={DURATION_S}"),
    ]
    ffmpeg(
        *sources,
        *("-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-map", "2:a"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "44100"),
        *(
            "-metadata",
            f"creation_time={CREATED}Z",
            "-metadata",
            f"location=+{LATITUDE:.4f}+{LONGITUDE:08.4f}/",
        ),
        str(video),
    )
    ffmpeg("-i", str(video), "-c", "copy", "-map_metadata", "0", "-metadata:s:v:0", "rotate=90", str(rotated))

    speech = root / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Meet me at the station at nine."], check=True)
    tone = root / "tone.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-ac", "2", "-ar", "44100", str(tone))

    plain, photo, png = root / "plain.jpg", root / "photo.jpg", root / "image.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x480", "-frames:v", "1", str(plain))
    jpeg = plain.read_bytes()
    photo.write_bytes(jpeg[:2] + exif_segment("AIMA Cam", "Probe One", LATITUDE, LONGITUDE) + jpeg[2:])
    ffmpeg("-f", "lavfi", "-i", "smptebars=size=320x240", "-frames:v", "1", str(png))

    truncated = root / "truncated.mp4"
    whole = video.read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    lying_png = root / "lying.png"
    lying_png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    empty = root / "empty.bin"
    empty.write_bytes(b"")
    bomb = root / "bomb.png"
    bomb.write_bytes(bomb_png(30000))
    passwd = root / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    return Media(video, rotated, speech, tone, photo, png, truncated, lying_png, empty, bomb, passwd)
