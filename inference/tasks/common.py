"""Types shared by the tasks: inputs that point at media on local disk, boxes, points, embedders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aima.model_settings import EmbedderSettings, model_env
from inference.base import InferenceModel
from inference.errors import InvalidModelOutput, ModelNotConfigured

Score = Annotated[float, Field(ge=0, le=1)]
"""A confidence or probability in [0, 1]."""

Seconds = Annotated[float, Field(ge=0)]


class IO(BaseModel):
    """Base of every task input and output: no unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageInput(IO):
    """One still image or extracted frame, as a file on local disk."""

    path: Path
    frame_id: str | None = None
    timestamp_s: Seconds | None = None


class AudioInput(IO):
    """An audio file on local disk (probe writes 16 kHz mono WAV)."""

    path: Path
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$", description="force a language")


class TimeSpan(IO):
    start: Seconds
    end: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> TimeSpan:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class Box(IO):
    """An axis-aligned box in pixels of the input image."""

    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(ge=0)
    height: float = Field(ge=0)


class Point(IO):
    """A point in pixels of the input image."""

    x: float
    y: float


I = TypeVar("I", bound=BaseModel)  # noqa: E741
O = TypeVar("O", bound=BaseModel)  # noqa: E741


class Embedder(InferenceModel[I, O]):
    """A model whose vectors go to a vector collection; it owns their dimension.

    A local backend knows its dimension (``native_dimension``); a remote one reports it when it
    loads (``self.reported_dimension``), or the settings state it (``DIMENSION``). Every vector
    of an output must have that many finite values, not all zero.
    """

    native_dimension: ClassVar[int | None] = None
    collection: ClassVar[str]
    """The vector collection this task's vectors are stored in."""

    reported_dimension: int | None = None

    @property
    def configured_dimension(self) -> int | None:
        """The dimension the settings state (``DIMENSION``), if any."""
        return self.settings.dimension if isinstance(self.settings, EmbedderSettings) else None

    @property
    def dimension(self) -> int:
        """The vector dimension; a remote model without a configured one is loaded to learn it."""
        native, configured = self.native_dimension, self.configured_dimension
        if native is not None and configured is not None and native != configured:
            raise self._mismatch(native, configured)
        known = native or configured
        if known is None:
            self.load()
            known = self.reported_dimension
        if known is None:
            setting = model_env(self.task, "dimension")
            raise ModelNotConfigured(
                f"the {self.task} model did not report its dimension; set {setting}",
                task=str(self.task),
                backend=self.backend,
            )
        return known

    def check_dimension(self, reported: int) -> None:
        """Called by a backend that learned its dimension: refuse a mismatch with the settings."""
        expected = self.native_dimension or self.configured_dimension
        if expected is not None and reported != expected:
            raise self._mismatch(reported, expected)
        self.reported_dimension = reported

    def _mismatch(self, actual: int, configured: int) -> ModelNotConfigured:
        return ModelNotConfigured(
            f"the {self.task} model {self.name!r} gives {actual}-d vectors, but "
            f"{model_env(self.task, 'dimension')}={configured}",
            task=str(self.task),
            backend=self.backend,
        )

    def check_vector(self, vector: list[float], what: str = "vector") -> None:
        if len(vector) != self.dimension:
            raise InvalidModelOutput(
                f"{what} has {len(vector)} values, the model's dimension is {self.dimension}"
            )
        if not all(math.isfinite(x) for x in vector) or not any(vector):
            raise InvalidModelOutput(f"{what} is not finite or all zero")
