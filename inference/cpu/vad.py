"""Silero VAD (the ONNX copy bundled with faster-whisper) as AIMA's `SpeechDetector`.

The file is read in blocks of ``block_s`` (default 600 s) so memory stays flat on long audio;
a region that runs into a block's end is joined with the one that starts the next block.

Options (``AIMA_MODELS__SPEECH_DETECTOR__OPTIONS``): ``threshold`` (0.5), ``min_silence_ms``
(300: a pause this long separates two regions, so an English sentence and a German answer
become two regions with a language each), ``speech_pad_ms`` (200), ``min_speech_ms`` (250),
``max_speech_s`` (28: a region fits one Whisper window), ``block_s`` (600).
"""

from __future__ import annotations

from typing import Any, ClassVar

from inference.cpu import audio
from inference.errors import InvalidModelOutput
from inference.tasks.common import AudioInput, TimeSpan
from inference.tasks.speech import SpeechDetector, SpeechRegions

DEFAULTS: dict[str, float] = {
    "threshold": 0.5,
    "min_silence_ms": 300,
    "speech_pad_ms": 200,
    "min_speech_ms": 250,
    "max_speech_s": 28.0,
    "block_s": 600.0,
}
JOIN_GAP_S = 0.05


class SileroSpeechDetector(SpeechDetector):
    """Speech regions of a 16 kHz WAV, from Silero VAD v6 on ONNX Runtime (one thread)."""

    backend: ClassVar[str] = "silero"
    extra: ClassVar[str] = "speech"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._options: Any = None

    @property
    def name(self) -> str:
        return self.settings.model or "silero-vad-v6"

    @property
    def version(self) -> str:
        from importlib.metadata import version

        return f"silero-vad v6 (faster-whisper {version('faster-whisper')})"

    def option(self, key: str) -> float:
        return float(self.settings.options.get(key, DEFAULTS[key]))

    def _check_available(self) -> None:
        import importlib.util

        if (
            importlib.util.find_spec("faster_whisper") is None
            or importlib.util.find_spec("onnxruntime") is None
        ):
            raise ImportError(name="faster_whisper")

    def _load(self) -> None:
        from faster_whisper.vad import VadOptions, get_vad_model

        get_vad_model()  # the ONNX session, cached by faster-whisper for the process
        self._options = VadOptions(
            threshold=self.option("threshold"),
            min_silence_duration_ms=int(self.option("min_silence_ms")),
            speech_pad_ms=int(self.option("speech_pad_ms")),
            min_speech_duration_ms=int(self.option("min_speech_ms")),
            max_speech_duration_s=self.option("max_speech_s"),
        )

    def _predict(self, inputs: AudioInput) -> SpeechRegions:
        from faster_whisper.vad import get_speech_timestamps

        try:
            total = audio.duration(inputs.path)
        except audio.AudioError as exc:
            raise InvalidModelOutput(str(exc)) from exc
        block = self.option("block_s")
        regions: list[TimeSpan] = []
        start = 0.0
        while start < total:
            end = min(start + block, total)
            samples = audio.read(inputs.path, start, end)
            for found in get_speech_timestamps(samples, self._options, sampling_rate=audio.RATE):
                span = TimeSpan(
                    start=round(start + found["start"] / audio.RATE, 3),
                    end=round(min(start + found["end"] / audio.RATE, total), 3),
                )
                at_seam = start > 0 and span.start - start <= JOIN_GAP_S
                if at_seam and regions and start - regions[-1].end <= JOIN_GAP_S:
                    regions[-1] = TimeSpan(start=regions[-1].start, end=span.end)
                else:
                    regions.append(span)
            start = end
        return SpeechRegions(duration_s=round(total, 3), regions=regions)
