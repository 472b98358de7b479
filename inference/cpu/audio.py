"""Reading the 16 kHz mono WAV that the probe extracts: whole, or one stretch of it.

Only PCM WAV is read here (the probe converts everything else); a file that is not one raises
`AudioError` with a reason a reviewer can read.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported when audio is read, not with this module (cold start)
    import numpy as np
    import numpy.typing as npt

    Samples = npt.NDArray[np.float32]
else:
    Samples = Any

RATE = 16000


class AudioError(ValueError):
    """The audio file is missing, damaged or not the 16 kHz mono PCM the probe writes."""


def duration(path: Path) -> float:
    """Length of the WAV in seconds (header only)."""
    with _open(path) as source:
        return source.getnframes() / source.getframerate()


def read(path: Path, start: float = 0.0, end: float | None = None) -> Samples:
    """Samples of ``[start, end)`` seconds as float32 in [-1, 1], mono, 16 kHz."""
    with _open(path) as source:
        total = source.getnframes()
        first = min(max(round(start * RATE), 0), total)
        last = total if end is None else min(max(round(end * RATE), first), total)
        source.setpos(first)
        raw = source.readframes(last - first)
    import numpy as np

    if len(raw) < 2 * (last - first):
        raise AudioError(f"the audio ends early: {len(raw) // 2} of {last - first} samples could be read")
    return (np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def _open(path: Path) -> wave.Wave_read:
    try:
        source = wave.open(str(path), "rb")  # noqa: SIM115 - returned open to the caller
    except FileNotFoundError as exc:
        raise AudioError("the extracted audio is missing") from exc
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"the extracted audio is damaged: {exc}") from exc
    shape = (source.getnchannels(), source.getsampwidth(), source.getframerate())
    if shape != (1, 2, RATE):
        source.close()
        raise AudioError(
            f"expected 16 kHz mono 16-bit PCM audio, got {shape[0]} channel(s), "
            f"{8 * shape[1]}-bit, {shape[2]} Hz"
        )
    return source
