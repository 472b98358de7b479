"""The one model interface, after Immich's ``InferenceModel``.

A model is a subclass of a task class (`inference.tasks`: ``Transcriber``, ``FaceAnalyzer``,
``Narrator``, ...) with a ``backend`` class attribute, built from its task's `ModelSettings`:

* ``load()`` is lazy and idempotent (one load however many threads ask); ``predict()`` loads on
  first use, runs ``_predict()`` and checks the output against the task's pydantic model;
* ``apredict()`` runs ``predict`` from async code on the model's own small executor, sized by
  ``workers`` (default 1 local, 4 remote), so a model never takes more threads than it was given;
* ``unload()`` frees the weights (waiting for running calls); after ``idle_unload_seconds``
  without a call the model unloads itself, and the next call loads it again;
* ``health()`` is cheap: it never loads weights, and a model that is not loaded is only checked
  for being loadable (``_check_available``).

Failures are the three kinds of `inference.errors`. Import errors while loading (an optional
dependency group not installed) become `ModelNotConfigured`; any other error while loading
becomes `ModelUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from aima.model_settings import ModelSettings, ModelTask
from inference.errors import InvalidModelOutput, ModelError, ModelNotConfigured, ModelUnavailable

__all__ = ["LOADING", "InferenceModel", "ModelHealth", "ModelUnavailable", "import_lazily"]

log = logging.getLogger(__name__)

I = TypeVar("I", bound=BaseModel)  # noqa: E741 - input type
O = TypeVar("O", bound=BaseModel)  # noqa: E741 - output type

HealthState = Literal["not_configured", "not_loaded", "ready", "down"]

LOADING = threading.RLock()
"""Held while any model loads, and while step code imports a heavy library late (`import_lazily`).
Loads import torch, scipy, transformers and the like; when two threads import such interdependent
packages at once, CPython may hand one of them a module that is not initialised yet (a step of
`aima analyze` failed so: "Module 'scipy' has no attribute '_lib'", the speakers step clustering
while another model loaded). Loads are rare, so taking them one at a time costs little."""


def import_lazily(name: str) -> ModuleType:
    """``importlib.import_module(name)`` while no model loads and no other such import runs."""
    with LOADING:
        return importlib.import_module(name)


class ModelHealth(BaseModel):
    """One model's state for readiness: ``not_loaded`` and ``ready`` are up, ``down`` is not,
    ``not_configured`` is neither (the step records "not run")."""

    task: str
    backend: str
    model: str = ""
    state: HealthState
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.state in ("not_loaded", "ready")


class InferenceModel(Generic[I, O]):
    """Lazy, idempotent load; predict loads on demand. Backends implement ``_load`` and ``_predict``.

    (Not an ABC on purpose: task classes stay concrete for type checkers, so ``pool.get(Transcriber)``
    type-checks; the registry only accepts subclasses that name their ``backend``.)
    """

    task: ClassVar[ModelTask]
    backend: ClassVar[str] = ""
    input_type: ClassVar[type[BaseModel]]
    output_type: ClassVar[type[BaseModel]]
    extra: ClassVar[str] = ""
    """The optional dependency group the backend needs (``pip install aima[<extra>]``)."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.load_attempts = 0
        self._loaded = False
        self._in_flight = 0
        self._last_used = time.monotonic()
        self._cond = threading.Condition(threading.RLock())
        self._idle_timer: threading.Timer | None = None
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task}/{self.backend} {self.name!r} loaded={self._loaded}>"

    @property
    def name(self) -> str:
        return self.settings.model

    @property
    def version(self) -> str:
        """Which model and runtime versions answer, for the evidence of every finding ("" unknown)."""
        return ""

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def threads(self) -> int:
        """Intra-op threads this model may use (a local backend passes it to its runtime)."""
        return self.settings.threads

    # -- lifecycle -------------------------------------------------------------------------------

    def load(self) -> None:
        """Load weights or connect to the endpoint; safe to call many times and from threads."""
        if self._loaded:
            return
        with LOADING, self._cond:  # LOADING first, always: a load inside a load takes it again
            if self._loaded:
                return
            self.load_attempts += 1
            started = time.perf_counter()
            try:
                self._load()
            except (ModelError, NotImplementedError) as exc:
                if isinstance(exc, ModelError):
                    self._tag(exc)
                raise
            except ImportError as exc:
                missing = exc.name or str(exc)
                hint = f" (pip install 'aima[{self.extra}]')" if self.extra else ""
                raise self._tag(
                    ModelNotConfigured(f"{self.backend} backend needs {missing}, not installed{hint}")
                ) from exc
            except Exception as exc:
                raise self._tag(ModelUnavailable(f"loading failed: {type(exc).__name__}: {exc}")) from exc
            self._loaded = True
            self._last_used = time.monotonic()
            self._schedule_idle_unload()
            seconds = round(time.perf_counter() - started, 3)
            log.info("model loaded", extra={"task": str(self.task), "model": self.name, "seconds": seconds})

    def unload(self, *, wait: bool = True) -> bool:
        """Free the model, after running calls finish (or not at all if ``wait`` is false and
        calls are running). Returns whether it unloaded; the next call loads it again."""
        with self._cond:
            if not self._loaded:
                return False
            while self._in_flight:
                if not wait:
                    return False
                self._cond.wait()
            if not self._loaded:  # unloaded by someone else meanwhile
                return False
            try:
                self._unload()
            finally:
                self._loaded = False
                if self._idle_timer is not None:
                    self._idle_timer.cancel()
                    self._idle_timer = None
            log.info("model unloaded", extra={"task": str(self.task), "model": self.name})
            return True

    def close(self) -> None:
        """Unload, release what stays open and stop the executor; the model can still be used
        afterwards (it loads again)."""
        self.unload()
        self._close()
        with self._cond:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- calls -----------------------------------------------------------------------------------

    def predict(self, inputs: I) -> O:
        """Run the model on one input, loading it first if needed; the output is checked."""
        if not isinstance(inputs, self.input_type):
            raise TypeError(
                f"{type(self).__name__} takes {self.input_type.__name__}, got {type(inputs).__name__}"
            )
        with self._cond:
            self.load()
            self._in_flight += 1
        try:
            output = self._predict(inputs)
        except ModelError as exc:
            self._tag(exc)
            raise
        except ValidationError as exc:  # the backend built its output model from a bad answer
            raise self._tag(InvalidModelOutput(_first_error(exc))) from exc
        finally:
            with self._cond:
                self._in_flight -= 1
                self._last_used = time.monotonic()
                self._cond.notify_all()
                self._schedule_idle_unload()
        return self.check_output(inputs, output)

    async def apredict(self, inputs: I) -> O:
        """`predict` on this model's executor; the caller's context (trace) goes along."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, self.predict, inputs)
        return await loop.run_in_executor(self.executor, call)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The model's executor: ``settings.max_workers`` threads, created on first use."""
        with self._cond:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.settings.max_workers, thread_name_prefix=f"model-{self.task}"
                )
            return self._executor

    def check_output(self, inputs: I, output: Any) -> O:
        """Refuse an output that is not the task's model or breaks its rules (`_check`)."""
        if not isinstance(output, self.output_type):
            raise self._tag(
                InvalidModelOutput(f"expected {self.output_type.__name__}, got {type(output).__name__}")
            )
        try:
            self._check(inputs, output)  # type: ignore[arg-type]
        except InvalidModelOutput as exc:
            self._tag(exc)
            raise
        return output  # type: ignore[return-value]

    # -- health ----------------------------------------------------------------------------------

    def health(self) -> ModelHealth:
        """Cheap status for readiness; never loads weights and never raises."""
        try:
            if self._loaded:
                self._check_loaded()
            else:
                self._check_available()
        except ModelNotConfigured as exc:
            return self._health("not_configured", str(exc))
        except Exception as exc:
            return self._health("down", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return self._health("ready" if self._loaded else "not_loaded")

    # -- for subclasses --------------------------------------------------------------------------

    def _load(self) -> None:
        """Load weights (with ``self.threads``) or open the client; raise a `ModelError` kind."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load")

    def _predict(self, inputs: I) -> O:
        """Run the loaded model on one input."""
        raise NotImplementedError(f"{type(self).__name__} must implement _predict")

    def _unload(self) -> None:
        """Release what ``_load`` acquired (default: nothing)."""
        return None

    def _close(self) -> None:
        """Release what outlives a load, e.g. a client opened by a health probe (default: nothing)."""
        return None

    def _check(self, inputs: I, output: O) -> None:
        """Task rules beyond the output model's own (counts, dimensions, citations)."""
        return None

    def _check_available(self) -> None:
        """Cheap check that the model could load (files present, endpoint ready); raise if not."""
        return None

    def _check_loaded(self) -> None:
        """Cheap check that a loaded model still serves; raise if not."""
        return None

    # -- internals -------------------------------------------------------------------------------

    def _health(self, state: HealthState, error: str | None = None) -> ModelHealth:
        return ModelHealth(
            task=str(self.task), backend=self.backend, model=self.name, state=state, error=error
        )

    def _tag(self, exc: ModelError) -> ModelError:
        exc.task = exc.task or str(self.task)
        exc.backend = exc.backend or self.backend
        return exc

    def _schedule_idle_unload(self) -> None:
        """(Lock held.) Make sure a timer will unload the model once it has been idle long enough."""
        seconds = self.settings.idle_unload_seconds
        if seconds <= 0 or not self._loaded or self._idle_timer is not None:
            return
        delay = max(self._last_used + seconds - time.monotonic(), 0.005)
        timer = threading.Timer(delay, self._idle_check)
        timer.daemon = True
        self._idle_timer = timer
        timer.start()

    def _idle_check(self) -> None:
        with self._cond:
            self._idle_timer = None
            if not self._loaded:
                return
            idle = time.monotonic() - self._last_used
            if self._in_flight or idle < self.settings.idle_unload_seconds:
                self._schedule_idle_unload()
                return
            log.info("model idle", extra={"task": str(self.task), "idle_seconds": round(idle, 1)})
            self.unload(wait=False)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
