"""The REST shapes of the Open Inference Protocol (KServe v2) as the server reads and answers them.

Tensors are `inference.remote.kserve.Tensor`, the client's own model: data flat (or nested, then
flattened) in row-major order, its length the product of the shape, every value of the datatype.
A request must not carry fields the protocol does not define, so a client's typo (``"dtype"``)
is a 400 naming it instead of a silently ignored field.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.remote.kserve import Tensor


class V2Error(Exception):
    """An answer other than 200: ``{"error": message}`` with ``status`` (and headers)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class RequestInput(Tensor):
    """``$request_input``: name, shape, datatype, optional parameters, data."""

    model_config = ConfigDict(extra="forbid")


class RequestOutput(BaseModel):
    """``$request_output``: the name of an output tensor asked for."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``$inference_request``; ``outputs`` absent means every output of the model."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


def read_infer_request(body: bytes) -> InferRequest:
    """The request of a POST body; `V2Error` 400 naming the first problem."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise V2Error(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise V2Error(400, "the body must be a JSON object with an inputs list")
    try:
        return InferRequest.model_validate(data)
    except ValidationError as exc:
        raise V2Error(400, f"invalid inference request: {first_error(exc)}") from None


def first_error(exc: ValidationError) -> str:
    """``where: what`` of a validation error's first problem."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
