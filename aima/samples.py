"""Sample media the repository generates itself, so `make run` needs no downloads.

Pure Python (no ffmpeg): a 16 kHz mono WAV tone sequence and a PNG test pattern. Output is
deterministic, so the same files (and checksums) come out on every machine.
"""

from __future__ import annotations

import math
import struct
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


def generate(directory: Path) -> list[Path]:
    """Write the sample set into ``directory`` (created if needed) and return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        write_tone_wav(directory / "tones.wav"),
        write_pattern_png(directory / "pattern.png"),
    ]
