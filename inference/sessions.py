"""Runtime sessions for local backends, with thread counts taken from the model's settings.

A local backend builds its engine through these helpers, so every engine gets the threads its
settings give it (``AIMA_MODELS__<TASK>__THREADS``) and the device they name, and nothing more:
models sharing a small machine then do not fight over its cores. Each helper imports its engine
only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aima.model_settings import ModelSettings


def onnx_session(path: Path | str, settings: ModelSettings) -> Any:
    """An ONNX Runtime session: ``threads`` intra-op threads, one inter-op thread, sequential
    execution, and the providers of ``device`` (``cuda`` falls back to CPU)."""
    import onnxruntime as ort  # imported when a model loads, not with this module

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    available = set(ort.get_available_providers())
    wanted = ["CPUExecutionProvider"]
    if settings.device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        wanted.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), sess_options=options, providers=wanted)


def ctranslate2_options(settings: ModelSettings) -> dict[str, Any]:
    """Keyword arguments for a CTranslate2 model (e.g. ``faster_whisper.WhisperModel``):
    ``threads`` CPU threads and one worker, int8 on CPU."""
    device = settings.device
    return {
        "device": device,
        "cpu_threads": settings.threads,
        "num_workers": 1,
        "compute_type": "int8" if device == "cpu" else "default",
    }
