"""What the server serves: a local model of AIMA's behind a v2 signature, and the settings it reads.

`ServedTextEmbedder` is the ``text_embedder`` task's model (`TextEmbedder`) as the v2 model the
``kserve`` client expects: one input ``text`` (``BYTES``, shape ``[n]``), one output ``embedding``
(``FP32``, shape ``[n, d]``), the vectors exactly those the local backend gives for the same texts,
as float32 values.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import os
import time
import uuid
from typing import Any, Literal

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from aima.model_settings import ModelsSettings, ModelTask, TextEmbedderSettings, model_env
from aima.settings import SettingsError
from aima.telemetry.metrics import REGISTRY
from inference.base import ModelHealth
from inference.errors import InvalidModelOutput, ModelError, ModelNotConfigured, ModelUnavailable
from inference.pool import ModelPool
from inference.server.protocol import InferRequest, V2Error, first_error
from inference.tasks.text import TextEmbedder, TextsInput

INFER_SECONDS = Histogram(
    "aima_model_infer_seconds",
    "Time a served model took for one inference request (loading included).",
    ("model",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
INFER_ITEMS = Counter(
    "aima_model_infer_items_total",
    "Texts a served model was asked to embed, by outcome: ok, refused (400; a request whose texts "
    "could not be read counts one), unavailable (503), failed.",
    ("model", "outcome"),
    registry=REGISTRY,
)

HUB_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
"""Set before any model library is imported: a model that lacks a file fails instead of fetching it."""


class _ServedModels(BaseModel):
    """The task blocks the server reads; other tasks' variables are not its business."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text_embedder: TextEmbedderSettings = Field(default_factory=TextEmbedderSettings)


class ServerSettings(BaseSettings):
    """``AIMA_MODELS__TEXT_EMBEDDER__*`` and the logging settings; no store, bus or data folder."""

    model_config = SettingsConfigDict(
        env_prefix="AIMA_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    models: _ServedModels = Field(default_factory=_ServedModels)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    health_timeout: float = Field(default=2.0, gt=0)

    @classmethod
    def load(cls, **overrides: Any) -> ServerSettings:
        """From the environment (plus overrides); `SettingsError` naming the variable, and a
        remote backend refused: the server serves models of its own."""
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            loc = [str(part) for part in exc.errors()[0].get("loc", ()) if isinstance(part, str)]
            reason = first_error(exc).split(": ", 1)[-1]
            raise SettingsError(f"AIMA_{'__'.join(loc).upper()}", reason) from None
        block = settings.models.text_embedder
        if block.remote or not block.configured:
            raise SettingsError(
                model_env(ModelTask.TEXT_EMBEDDER, "backend"),
                f"the model server serves a local backend, not {block.backend!r}",
            )
        return settings


class ServedTextEmbedder:
    """A `TextEmbedder` as a v2 model (see module docstring)."""

    platform = "aima_text_embedder"

    def __init__(
        self,
        name: str,
        model: TextEmbedder,
        *,
        input_name: str = "text",
        output_name: str = "embedding",
        max_batch: int = 256,
    ) -> None:
        self.name = name
        self.model = model
        self.input_name = input_name
        self.output_name = output_name
        self.max_batch = max_batch

    @classmethod
    def from_settings(
        cls, settings: ServerSettings, name: str, *, max_batch: int = 256
    ) -> ServedTextEmbedder:
        """The task's model from its settings, not loaded; the hub is switched offline first."""
        for key, value in HUB_OFFLINE.items():
            os.environ.setdefault(key, value)
        pool = ModelPool(ModelsSettings(text_embedder=settings.models.text_embedder))
        return cls(name, pool.get(TextEmbedder), max_batch=max_batch)

    # -- health and metadata -----------------------------------------------------------------------

    def health(self) -> ModelHealth:
        """Cheap; never loads weights."""
        return self.model.health()

    async def ready(self) -> None:
        """Raise `V2Error` 503 unless the model can serve (loaded, or loadable)."""
        status = await asyncio.to_thread(self.health)
        if not status.up:
            raise V2Error(503, f"model {self.name} is not ready: {status.error or status.state}")

    async def metadata(self) -> dict[str, Any]:
        """``$metadata_model_response``; the dimension is read without loading where the model's
        folder states it."""
        try:
            dimension = await asyncio.to_thread(lambda: self.model.dimension)
        except ModelError as exc:
            raise _unavailable(self.name, exc) from exc
        return {
            "name": self.name,
            "versions": [],
            "platform": self.platform,
            "inputs": [{"name": self.input_name, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": self.output_name, "datatype": "FP32", "shape": [-1, dimension]}],
        }

    def warm(self) -> None:
        """Load the weights now (``--preload``)."""
        self.model.load()

    def close(self) -> None:
        self.model.close()

    # -- inference ---------------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> dict[str, Any]:
        """``$inference_response`` for one request, or `V2Error`."""
        started = time.perf_counter()
        texts: list[str] = []
        outcome = "failed"
        try:
            texts = self._texts(request)
            vectors = await self._embed(texts)
            outcome = "ok"
        except V2Error as exc:
            outcome = "refused" if exc.status < 500 else "unavailable" if exc.status == 503 else "failed"
            raise
        finally:
            INFER_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            INFER_ITEMS.labels(self.name, outcome).inc(max(len(texts), 1))
        width = len(vectors[0])
        data = array.array("f", [value for vector in vectors for value in vector]).tolist()
        return {
            "model_name": self.name,
            "id": request.id if request.id is not None else str(uuid.uuid4()),
            "outputs": [
                {"name": self.output_name, "datatype": "FP32", "shape": [len(vectors), width], "data": data}
            ],
        }

    def _texts(self, request: InferRequest) -> list[str]:
        names = [tensor.name for tensor in request.inputs]
        if names != [self.input_name]:
            raise V2Error(
                400, f"model {self.name} takes one input {self.input_name!r} (BYTES, shape [n]), got {names}"
            )
        tensor = request.inputs[0]
        if tensor.datatype != "BYTES":
            raise V2Error(400, f"input {tensor.name} must be BYTES (UTF-8 text), got {tensor.datatype}")
        if len(tensor.shape) != 1 or tensor.shape[0] < 1:
            raise V2Error(400, f"input {tensor.name} must have shape [n] with n >= 1, got {tensor.shape}")
        if tensor.shape[0] > self.max_batch:
            raise V2Error(400, f"input {tensor.name} has {tensor.shape[0]} texts; at most {self.max_batch}")
        wanted = [output.name for output in request.outputs or []]
        unknown = sorted(set(wanted) - {self.output_name})
        if unknown:
            raise V2Error(400, f"model {self.name} has no outputs {unknown}; it has [{self.output_name!r}]")
        return [str(text) for text in tensor.data]

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        try:
            output = await self.model.apredict(TextsInput(texts=texts))
        except InvalidModelOutput as exc:
            raise V2Error(500, f"model {self.name} gave an invalid output: {exc.reason}") from exc
        except ModelError as exc:
            raise _unavailable(self.name, exc) from exc
        vectors = output.vectors
        if not vectors or not all(math.isfinite(v) for vector in vectors for v in vector):
            raise V2Error(500, f"model {self.name} gave no usable vectors")
        return vectors


def _unavailable(name: str, exc: ModelError) -> V2Error:
    """503 for a model that cannot load or answer now (with ``Retry-After`` when known)."""
    headers: dict[str, str] = {}
    if isinstance(exc, ModelUnavailable) and exc.retry_after is not None:
        with contextlib.suppress(ValueError, OverflowError):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    kind = "is not configured here" if isinstance(exc, ModelNotConfigured) else "is unavailable"
    return V2Error(503, f"model {name} {kind}: {exc.reason}", headers=headers)
