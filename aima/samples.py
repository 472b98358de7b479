"""Sample media the repository generates itself, so `make run` needs no downloads.

A 16 kHz mono WAV tone sequence and a PNG test pattern in pure Python; with ffmpeg and espeak-ng
installed (`make run` installs them), also a short video with a scene cut and a tone track, a
spoken English sentence and a conversation in English and German with two voices, silence and
noise (`write_script_wav`, which the speech tests and benchmark use too); with the DejaVu fonts, a
photographed-notice-like image of printed English and German text (`write_notice_png`). The
pure-Python files are byte-identical on every machine.
"""

from __future__ import annotations

import io
import math
import random
import shutil
import struct
import subprocess
import wave
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RATE = 16000


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


@dataclass(frozen=True)
class Utterance:
    """A sentence spoken by espeak-ng in ``voice`` (e.g. ``en-us``, ``de``, ``en-gb+m3``)."""

    text: str
    voice: str
    language: str
    speed: int = 140


@dataclass(frozen=True)
class Pause:
    """Silence, or white noise of peak amplitude ``noise`` (0..1)."""

    seconds: float
    noise: float = 0.0


@dataclass(frozen=True)
class Spoken:
    """Where an utterance landed in a written script: seconds from the start."""

    start: float
    end: float
    utterance: Utterance


def speak(utterance: Utterance, rate: int = RATE) -> array[int]:
    """The utterance as 16-bit samples at ``rate`` (espeak-ng, resampled linearly)."""
    out = subprocess.run(
        ["espeak-ng", "-v", utterance.voice, "-s", str(utterance.speed), "--stdout", utterance.text],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    with wave.open(io.BytesIO(out)) as source:
        source_rate = source.getframerate()
        samples = array("h", source.readframes(source.getnframes()))
    if source_rate == rate or not samples:
        return samples
    count = int(len(samples) * rate / source_rate)
    step = (len(samples) - 1) / max(count - 1, 1)
    resampled = array("h", bytes(2 * count))
    for i in range(count):
        position = i * step
        left = int(position)
        right = min(left + 1, len(samples) - 1)
        fraction = position - left
        resampled[i] = int(samples[left] * (1 - fraction) + samples[right] * fraction)
    return resampled


def write_script_wav(
    path: Path, script: Sequence[Utterance | Pause], *, rate: int = RATE, seed: int = 0
) -> list[Spoken]:
    """Speak a script of utterances and pauses into one mono WAV; return each utterance's span."""
    noise = random.Random(seed)
    samples = array("h")
    spans: list[Spoken] = []
    for part in script:
        start = len(samples) / rate
        if isinstance(part, Pause):
            count = int(part.seconds * rate)
            peak = int(32767 * part.noise)
            samples.extend(noise.randint(-peak, peak) if peak else 0 for _ in range(count))
        else:
            samples.extend(speak(part, rate))
            spans.append(Spoken(round(start, 3), round(len(samples) / rate, 3), part))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return spans


CONVERSATION: tuple[Utterance | Pause, ...] = (
    Utterance("Where were you on Tuesday evening?", "en-gb+m3", "en"),
    Pause(0.8),
    Utterance("I was at home with my sister, we watched a film until midnight.", "en-us+f3", "en"),
    Pause(2.0),
    Utterance("Und danach, haben Sie noch jemanden gesehen oder gehört?", "de+m3", "de"),
    Pause(0.8),
    Pause(1.5, noise=0.05),
    Utterance("No. Nobody came to the door after ten o'clock.", "en-us+f3", "en"),
    Pause(1.0),
    Utterance("But later I heard a woman shout: please help me, let me go.", "en-us+f3", "en"),
)
"""The sample conversation of `make run`: an officer (one voice, English and German) and a
witness (another voice, English)."""


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
        conversation = directory / "conversation.wav"
        write_script_wav(conversation, CONVERSATION)
        paths.append(conversation)
    if Path(FONT).is_file():
        paths.append(write_notice_png(directory / "notice.png"))
    return paths


FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
NOTICE = ("STORAGE HALL 3", "NO ENTRY AFTER 22:00", "LAGERHALLE 3 - KEIN ZUTRITT")
"""The printed lines of the notice sample, top to bottom."""


def write_notice_png(path: Path, lines: Sequence[str] = NOTICE) -> Path:
    """A notice of printed text, dark on a light, slightly uneven background (Pillow, DejaVu Sans)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 40)
    image = Image.new("RGB", (900, 80 + 70 * len(lines)), (236, 232, 220))
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((40, 40 + 70 * n), line, fill=(25, 25, 30), font=font)
    image.save(path, format="PNG")
    return path
