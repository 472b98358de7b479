"""Sample media the repository generates itself, so `make run` needs no downloads.

A 16 kHz mono WAV tone sequence and a PNG test pattern in pure Python; with ffmpeg and espeak-ng
installed (`make run` installs them), also a short video with a scene cut and a tone track, and
a spoken English sentence. The pure-Python files are byte-identical on every machine.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import wave
import zlib
from pathlib import Path


def write_tone_wav(path: Path, *, seconds: float = 3.0, rate: int = 16000) -> Path:
    """Three tones (440, 660, 880 Hz), one per second, 16-bit mono."""
    frames = bytearray()
    total = int(seconds * rate)
    for i in range(total):
        freq = (440.0, 660.0, 880.0)[min(2, i * 3 // total)]
        frames += struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def write_pattern_png(path: Path, *, width: int = 320, height: int = 240) -> Path:
    """An RGB gradient with a grid, written as a valid PNG."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            grid = 255 if x % 40 == 0 or y % 40 == 0 else 0
            rows += bytes((x * 255 // width, y * 255 // height, grid))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


def write_clip_mp4(path: Path, *, seconds: int = 6) -> Path:
    """A 320x240 H.264 clip: test pattern, then colour bars from the middle on (one scene cut),
    with a 440 Hz tone track. Needs ffmpeg."""
    half = seconds / 2
    graph = (
        f"testsrc2=size=320x240:rate=25:duration={half}[a];"
        f"smptebars=size=320x240:rate=25:duration={half}[b];"
        "[a][b]concat=n=2:v=1:a=0[v]"
    )
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph]
    argv += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-map", "[v]", "-map", "0:a"]
    argv += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    _run(argv)
    return path


def write_speech_wav(path: Path, text: str = "This is a sample recording for the AIMA test case.") -> Path:
    """A spoken English sentence (espeak-ng), as WAV."""
    _run(["espeak-ng", "-v", "en", "-w", str(path), text])
    return path


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def generate(directory: Path) -> list[Path]:
    """Write the sample set into ``directory`` (created if needed) and return the paths.

    The video and speech samples are made only when ffmpeg and espeak-ng are installed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = [write_tone_wav(directory / "tones.wav"), write_pattern_png(directory / "pattern.png")]
    if shutil.which("ffmpeg"):
        paths.append(write_clip_mp4(directory / "clip.mp4"))
    if shutil.which("espeak-ng"):
        paths.append(write_speech_wav(directory / "speech.wav"))
    return paths
