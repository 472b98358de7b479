"""The real transcriber with a hook before each call, to make chosen calls fail or die."""

from __future__ import annotations

from collections.abc import Callable

from inference.tasks.speech import Transcriber, TranscriptionInput
from inference.tasks.speech import Transcript as ModelTranscript


class Wrapped(Transcriber):
    """Delegates to ``inner``; ``before(n, inputs)`` runs before the n-th call (from 1) and may raise."""

    backend = "wrapped"

    def __init__(self, inner: Transcriber, before: Callable[[int, TranscriptionInput], None]) -> None:
        super().__init__(inner.settings)
        self.inner = inner
        self.before = before
        self.calls: list[list[float]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def _load(self) -> None:
        self.inner.load()

    def _predict(self, inputs: TranscriptionInput) -> ModelTranscript:
        self.calls.append([region.start for region in inputs.regions])
        self.before(len(self.calls), inputs)
        return self.inner.predict(inputs)
