"""KServe v2 (Open Inference Protocol) over REST: typed tensors in, typed tensors out.

Any v2 server works: KServe's model server, Triton, MLServer, OpenVINO Model Server.
``ENDPOINT`` is the server root (``http://embedder.aima.svc``); the routes used are::

    GET  v2/models/{name}[/versions/{v}]/ready   200 when the model can serve
    GET  v2/models/{name}[/versions/{v}]         metadata: input/output tensor names, types, shapes
    POST v2/models/{name}[/versions/{v}]/infer   {"id", "inputs": [tensor], "outputs": [{"name"}]}

A tensor is ``{"name", "shape", "datatype", "data"}`` with ``data`` in row-major order; its length
must be the product of ``shape`` (answers may nest it; it is flattened).

`KServeTextEmbedder` sends the texts as one ``BYTES`` tensor of shape ``[n]`` and reads an
``FP32``/``FP16``/``FP64`` tensor of shape ``[n, d]``. Options: ``input_name`` (``text``),
``output_name`` (``embedding``), ``version``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable
from inference.remote.http import RemoteBackend
from inference.tasks.text import TextEmbedder, TextEmbeddings, TextsInput

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
FLOATS = ("FP16", "FP32", "FP64")


class Tensor(BaseModel):
    """One v2 tensor; ``data`` is flat, row-major, and matches ``shape`` and ``datatype``."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    shape: list[int]
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Tensor:
        if any(n < 0 for n in self.shape):
            raise ValueError(f"tensor {self.name}: negative shape {self.shape}")
        self.data = _flatten(self.data)
        if len(self.data) != math.prod(self.shape):
            raise ValueError(f"tensor {self.name}: {len(self.data)} values for shape {self.shape}")
        if not all(_fits(value, self.datatype) for value in self.data):
            raise ValueError(f"tensor {self.name}: values are not all {self.datatype}")
        return self

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": self.shape,
            "datatype": self.datatype,
            "data": self.data,
        }
        if self.parameters:
            out["parameters"] = self.parameters
        return out


class _InferAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[Tensor]


class KServeBackend(RemoteBackend):
    """The v2 protocol, shared by the task classes below."""

    backend: ClassVar[str] = "kserve"

    @property
    def model_path(self) -> str:
        path = f"v2/models/{quote(self.settings.model, safe='')}"
        version = self.settings.options.get("version")
        return f"{path}/versions/{quote(str(version), safe='')}" if version else path

    def ready(self) -> None:
        """Raise unless ``GET .../ready`` says the model can serve."""
        response = self.request("GET", f"{self.model_path}/ready")
        status = response.status_code
        if status in (401, 403, 404):
            raise ModelNotConfigured(f"GET {self.model_path}/ready: HTTP {status}: no such model, or refused")
        if status != 200:
            raise ModelUnavailable(f"model {self.settings.model!r} is not ready (HTTP {status})")
        try:
            body = response.json()
        except ValueError:
            return  # Triton answers 200 with an empty body
        if isinstance(body, dict) and body.get("ready") is False:
            raise ModelUnavailable(f"model {self.settings.model!r} is not ready")

    def metadata(self) -> dict[str, Any]:
        answer = self.call("GET", self.model_path)
        if not isinstance(answer, dict):
            raise InvalidModelOutput("model metadata is not a JSON object")
        return answer

    def infer(self, inputs: list[Tensor], outputs: list[str]) -> dict[str, Tensor]:
        """One inference request; the answer's tensors by name (those asked for must be there)."""
        request_id = str(uuid.uuid4())
        body = {
            "id": request_id,
            "inputs": [t.wire() for t in inputs],
            "outputs": [{"name": n} for n in outputs],
        }
        try:
            answer = _InferAnswer.model_validate(self.call("POST", f"{self.model_path}/infer", json=body))
        except ValidationError as exc:
            error = exc.errors()[0]
            raise InvalidModelOutput(
                f"unexpected infer answer: {error.get('loc')}: {error.get('msg')}"
            ) from exc
        if answer.id is not None and answer.id != request_id:
            raise InvalidModelOutput(f"infer answer for request {answer.id!r}, not {request_id!r}")
        tensors = {t.name: t for t in answer.outputs}
        missing = [n for n in outputs if n not in tensors]
        if missing:
            raise InvalidModelOutput(f"infer answer lacks output tensors {missing}")
        return tensors

    def _check_available(self) -> None:
        self.ready()

    def _check_loaded(self) -> None:
        self.ready()


class KServeTextEmbedder(KServeBackend, TextEmbedder):
    @property
    def input_name(self) -> str:
        return str(self.settings.options.get("input_name", "text"))

    @property
    def output_name(self) -> str:
        return str(self.settings.options.get("output_name", "embedding"))

    def _load(self) -> None:
        """Wait for readiness, then learn the dimension: from the metadata's output shape, else
        (unless configured) from one probe; a configured dimension must match what the server says."""
        self.ready()
        if self.reported_dimension is not None:
            return
        for output in self.metadata().get("outputs") or []:
            if isinstance(output, dict) and output.get("name") == self.output_name:
                shape = output.get("shape") or []
                if shape and isinstance(shape[-1], int) and shape[-1] > 0:
                    self.check_dimension(shape[-1])
                    return
        if self.configured_dimension is None:
            self.check_dimension(len(self._embed(["dimension probe"])[0]))

    def _predict(self, inputs: TextsInput) -> TextEmbeddings:
        return TextEmbeddings(vectors=self._embed(list(inputs.texts)))

    def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        size = self.settings.batch_size
        for start in range(0, len(texts), size):
            batch = texts[start : start + size]
            request = Tensor(name=self.input_name, shape=[len(batch)], datatype="BYTES", data=batch)
            tensor = self.infer([request], [self.output_name])[self.output_name]
            if tensor.datatype not in FLOATS or len(tensor.shape) != 2 or tensor.shape[0] != len(batch):
                raise InvalidModelOutput(
                    f"output {tensor.name} is {tensor.datatype} {tensor.shape}, "
                    f"expected floats [{len(batch)}, d]"
                )
            width = tensor.shape[1]
            values = [float(v) for v in tensor.data]
            vectors.extend(values[row * width : (row + 1) * width] for row in range(len(batch)))
        return vectors


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _fits(value: Any, datatype: str) -> bool:
    if datatype == "BYTES":
        return isinstance(value, str)
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype in FLOATS:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, int) and not isinstance(value, bool)
