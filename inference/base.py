"""The one model interface, after Immich's ``InferenceModel``.

Every model (transcriber, speaker embedder, face detector/embedder, vision describer, text
embedder, narrator) is a subclass with ``task`` and ``backend`` class attributes: ``load()`` is
lazy and idempotent, ``predict()`` loads on first use and calls ``_predict()``. A local CPU
backend and a remote one (OpenAI-compatible, KServe v2) implement the same task interface and
are chosen by settings, so code above never knows which runs.
"""

from __future__ import annotations

import abc
import threading
from typing import Any, ClassVar, Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - input type
O = TypeVar("O")  # noqa: E741 - output type


class ModelUnavailable(RuntimeError):
    """The model cannot run here (no endpoint configured, weights missing); callers record 'not run'."""


class InferenceModel(abc.ABC, Generic[I, O]):
    """Lazy, idempotent load; predict loads on demand. Subclasses implement _load and _predict."""

    task: ClassVar[str] = ""
    backend: ClassVar[str] = ""

    def __init__(self, name: str, version: str = "", **options: Any) -> None:
        self.name = name
        self.version = version
        self.options = options
        self._loaded = False
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load weights or connect to the endpoint; safe to call many times and from threads."""
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def predict(self, inputs: I) -> O:
        """Run the model, loading it first if needed."""
        self.load()
        return self._predict(inputs)

    def health(self) -> None:
        """Raise if the model cannot serve (default: it must be loadable)."""
        self.load()

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _predict(self, inputs: I) -> O: ...


_REGISTRY: dict[tuple[str, str], type[InferenceModel[Any, Any]]] = {}


def register(cls: type[InferenceModel[Any, Any]]) -> type[InferenceModel[Any, Any]]:
    """Class decorator: make a backend selectable by (task, backend) in settings."""
    if not cls.task or not cls.backend:
        raise ValueError(f"{cls.__name__} must set task and backend")
    _REGISTRY[(cls.task, cls.backend)] = cls
    return cls


def create(task: str, backend: str, name: str, **options: Any) -> InferenceModel[Any, Any]:
    """Instantiate the backend registered for a task (not loaded yet)."""
    try:
        cls = _REGISTRY[(task, backend)]
    except KeyError:
        known = sorted(b for t, b in _REGISTRY if t == task)
        raise ModelUnavailable(f"no {backend!r} backend for task {task!r} (known: {known})") from None
    return cls(name, **options)
