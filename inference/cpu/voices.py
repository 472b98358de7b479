"""Resemblyzer (a GE2E speaker encoder, 256-d) as AIMA's `VoiceEmbedder`; its weights ship in its package.

One call embeds every requested stretch of one audio file:

* the file is opened once and each stretch read from it in turn (memory stays flat on long
  audio); 16 kHz mono is what the probe writes, anything else is mixed down and resampled;
* each stretch is brought to Resemblyzer's loudness (-30 dBFS, raised only) and cut into its
  1.6 s partial windows, ``rate`` windows per second; the partials of a batch of stretches go
  through the network together, and a stretch's vector is the normalised mean of its partials
  (Resemblyzer's ``embed_utterance``, batched across stretches);
* a stretch shorter than one window is repeated until it fills one, rather than padded with
  silence, which would drag its vector towards the silence vector; a stretch with no samples at
  all (outside the file) gets the vector of silence: callers judge how long a turn must be to
  count (`MIN_RELIABLE_S` is the rule of thumb).

Vectors are unit length and non-negative (Resemblyzer's ReLU), so cosine similarity is in [0, 1].

Threads: PyTorch's intra-op thread count is per thread (OpenMP), but a thread that starts using
PyTorch copies the last count anyone set. Every call therefore sets ``threads`` on the model's
own executor thread and puts the previous count back afterwards, so other PyTorch users of the
process keep theirs.

Options (``AIMA_MODELS__VOICE_EMBEDDER__OPTIONS``): ``rate`` (partial windows per second, 1.0:
the speakers step's thresholds were calibrated at it; Resemblyzer's default 1.3 overlaps the
windows more and takes about 40 % longer), ``min_coverage`` (0.75: a last window that covers less
of the stretch is dropped, unless it is the only one).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from inference.errors import ModelNotConfigured
from inference.tasks.common import TimeSpan
from inference.tasks.speech import VoiceEmbedder, VoiceEmbedding, VoiceEmbeddings, VoiceInput

RATE = 16000
WINDOW_S = 1.6
"""One partial window of Resemblyzer (160 frames of 10 ms)."""
MIN_RELIABLE_S = 1.0
"""Below this a turn's vector is noticeably less stable (see docs/speakers.md)."""
TARGET_DBFS = -30.0
DEFAULTS: dict[str, float] = {"rate": 1.0, "min_coverage": 0.75}
INSTALL_HINT = "(pip install 'aima[speech]')"

if TYPE_CHECKING:  # numpy is imported when the model runs, not when it is created
    import numpy as np
    import numpy.typing as npt

    Samples = npt.NDArray[np.float32]


class ResemblyzerVoiceEmbedder(VoiceEmbedder):
    """256-d speaker vectors of stretches of a WAV, on the CPU (or CUDA when asked and present)."""

    backend: ClassVar[str] = "resemblyzer"
    extra: ClassVar[str] = "speech"
    native_dimension: ClassVar[int | None] = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder: Any = None
        self._torch: Any = None
        self._mel: Any = None
        self._slices: Any = None

    @property
    def name(self) -> str:
        return self.settings.model or "resemblyzer-ge2e"

    @property
    def version(self) -> str:
        try:
            return f"resemblyzer {metadata.version('resemblyzer')}"
        except metadata.PackageNotFoundError:
            return ""

    def option(self, key: str) -> float:
        return float(self.settings.options.get(key, DEFAULTS[key]))

    # -- lifecycle ---------------------------------------------------------------------------------

    def _check_available(self) -> None:
        """Cheap: the packages are installed and the weights are in resemblyzer's folder."""
        for module in ("torch", "resemblyzer"):
            if importlib.util.find_spec(module) is None:
                raise ModelNotConfigured(
                    f"{self.backend} backend needs {module}, not installed {INSTALL_HINT}"
                )
        spec = importlib.util.find_spec("resemblyzer")
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        if not folders or not (Path(folders[0]) / "pretrained.pt").is_file():
            raise ModelNotConfigured(f"resemblyzer's weights (pretrained.pt) are missing {INSTALL_HINT}")

    def _load(self) -> None:
        with warnings.catch_warnings():
            # webrtcvad imports pkg_resources, resemblyzer scipy.ndimage.morphology: both warn on import
            warnings.simplefilter("ignore")
            import torch
            from resemblyzer import VoiceEncoder
            from resemblyzer.audio import wav_to_mel_spectrogram
        wanted = self.settings.device
        device = "cuda" if wanted in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self._torch = torch
        with self._threads():
            encoder = VoiceEncoder(device, verbose=False)
        encoder.eval()
        self._encoder = encoder
        self._mel = wav_to_mel_spectrogram
        self._slices = VoiceEncoder.compute_partial_slices

    def _unload(self) -> None:
        self._encoder = None

    @contextmanager
    def _threads(self) -> Iterator[None]:
        """Run the block with ``threads`` intra-op threads on this thread, then restore its count."""
        torch = self._torch
        previous = torch.get_num_threads()
        if previous != self.threads:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if previous != self.threads:
                torch.set_num_threads(previous)

    # -- calls ---------------------------------------------------------------------------------------

    def _predict(self, inputs: VoiceInput) -> VoiceEmbeddings:

        rate, coverage = self.option("rate"), self.option("min_coverage")
        if not (1 / WINDOW_S) <= rate <= 10 or not 0 < coverage <= 1:
            raise ModelNotConfigured(
                "voice embedder options: rate must be 0.625..10 windows per second, min_coverage in (0, 1]"
            )
        vectors: list[npt.NDArray[np.float32]] = []
        batch: list[Samples] = []
        with _Reader(inputs.path) as reader, self._threads():
            for span in inputs.segments:
                batch.append(_prepared(reader.read(span)))
                if len(batch) >= self.settings.batch_size:
                    vectors.extend(self._embed(batch, rate, coverage))
                    batch = []
            if batch:
                vectors.extend(self._embed(batch, rate, coverage))
        return VoiceEmbeddings(
            embeddings=[
                VoiceEmbedding(start=span.start, end=span.end, vector=[float(x) for x in vector])
                for span, vector in zip(inputs.segments, vectors, strict=True)
            ]
        )

    def _embed(self, stretches: list[Samples], rate: float, coverage: float) -> list[npt.NDArray[np.float32]]:
        """One unit vector per stretch: the normalised mean of its partial windows' vectors."""
        import numpy as np

        mels: list[npt.NDArray[np.float32]] = []
        owners: list[int] = []
        for index, wav in enumerate(stretches):
            wav_slices, mel_slices = self._slices(len(wav), rate, coverage)
            needed = wav_slices[-1].stop
            if needed > len(wav):
                wav = np.pad(wav, (0, needed - len(wav)))
            mel = self._mel(wav)
            for part in mel_slices:
                mels.append(mel[part])
                owners.append(index)
        torch = self._torch
        with torch.inference_mode():
            batch = torch.from_numpy(np.stack(mels)).to(self._encoder.device)
            partials = self._encoder(batch).cpu().numpy()
        out = []
        which = np.asarray(owners)
        for index in range(len(stretches)):
            mean = partials[which == index].mean(axis=0)
            norm = float(np.linalg.norm(mean))
            if not math.isfinite(norm) or norm == 0.0:  # every unit off: a flat direction, never NaN
                mean, norm = np.ones_like(mean), math.sqrt(mean.size)
            out.append((mean / norm).astype(np.float32))
        return out


def _prepared(wav: Samples) -> Samples:
    """A stretch as Resemblyzer wants it: raised to -30 dBFS, at least one window long (repeated)."""
    import numpy as np

    window = int(WINDOW_S * RATE)
    if wav.size == 0:
        return np.zeros(window, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms > 0:
        gain = 10 ** ((TARGET_DBFS - 20 * math.log10(rms)) / 20)
        if gain > 1:
            wav = np.clip(wav * gain, -1.0, 1.0).astype(np.float32)
    if wav.size < window:
        wav = np.tile(wav, math.ceil(window / wav.size))[:window]
    return wav


class _Reader:
    """One audio file, opened once; stretches read by seeking (mono, 16 kHz float32)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: Any = None

    def __enter__(self) -> _Reader:
        import soundfile

        try:
            self._file = soundfile.SoundFile(str(self._path))
        except (soundfile.LibsndfileError, OSError) as exc:
            raise ValueError(f"the audio could not be read: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def read(self, span: TimeSpan) -> Samples:
        import numpy as np

        source = self._file
        native = int(source.samplerate)
        first = min(round(span.start * native), int(source.frames))
        last = min(max(round(span.end * native), first), int(source.frames))
        source.seek(first)
        data = source.read(last - first, dtype="float32", always_2d=True)
        if len(data) < last - first:
            raise ValueError(f"the audio ends early: {len(data)} of {last - first} samples could be read")
        wav: Samples = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        if native != RATE and wav.size:
            import librosa

            wav = librosa.resample(wav, orig_sr=native, target_sr=RATE).astype(np.float32)
        return np.ascontiguousarray(wav, dtype=np.float32)
