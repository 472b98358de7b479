"""Runtime sessions get the thread counts and device of their model's settings."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from aima.model_settings import SensitivityScorerSettings, TranscriberSettings
from inference.sessions import ctranslate2_options, onnx_session


class FakeOrt(types.ModuleType):
    """Just enough of onnxruntime to see what a session is built with."""

    class SessionOptions:
        intra_op_num_threads = 0
        inter_op_num_threads = 0
        execution_mode: Any = None

    class ExecutionMode:
        ORT_SEQUENTIAL = "sequential"

    def __init__(self, providers: list[str]) -> None:
        super().__init__("onnxruntime")
        self.providers = providers
        self.built: list[tuple[str, Any, list[str]]] = []

    def get_available_providers(self) -> list[str]:
        return self.providers

    def InferenceSession(self, path: str, sess_options: Any, providers: list[str]) -> str:
        self.built.append((path, sess_options, providers))
        return "session"


def test_onnx_session_takes_threads_and_device_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = FakeOrt(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert onnx_session("nsfw.onnx", SensitivityScorerSettings(threads=2)) == "session"
    path, options, providers = ort.built[-1]
    assert (path, options.intra_op_num_threads, options.inter_op_num_threads) == ("nsfw.onnx", 2, 1)
    assert options.execution_mode == "sequential"
    assert providers == ["CPUExecutionProvider"]  # device cpu: CUDA is not used even if present
    onnx_session("nsfw.onnx", SensitivityScorerSettings(device="cuda"))
    assert ort.built[-1][2] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_ctranslate2_options_take_threads_from_settings() -> None:
    assert ctranslate2_options(TranscriberSettings(threads=2)) == {
        "device": "cpu",
        "cpu_threads": 2,
        "num_workers": 1,
        "compute_type": "int8",
    }
