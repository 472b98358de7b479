"""The models of one process: made on first use from settings, shared by its steps, checked for readiness.

The function runtime holds one `ModelPool`::

    pool = ModelPool.from_settings(get_settings())
    transcriber = pool.get(Transcriber)            # typed; ModelNotConfigured if backend is none
    transcript = await transcriber.apredict(TranscriptionInput(path=wav))
    for name, check in pool.readiness_checks([ModelTask.TRANSCRIBER]).items():
        health.add(name, check)                    # "model:transcriber"

A task whose backend is ``none`` gets no readiness check (it is not down, it is not configured:
`statuses` reports it as such); its step records "not run" from the `ModelNotConfigured` reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aima.model_settings import NONE, ModelsSettings, ModelTask, model_env
from aima.settings import Settings
from inference.base import InferenceModel, ModelHealth
from inference.errors import ModelNotConfigured, ModelUnavailable
from inference.registry import REGISTRY, Registry

M = TypeVar("M", bound=InferenceModel[Any, Any])


class ModelPool:
    """One model per task, created (not loaded) on first request and kept."""

    def __init__(self, settings: ModelsSettings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or REGISTRY
        self._models: dict[ModelTask, InferenceModel[Any, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry | None = None) -> ModelPool:
        return cls(settings.models, registry)

    def configured(self, task: ModelTask | str) -> bool:
        """Whether the task has a backend other than ``none`` (it may still fail to load)."""
        return self.settings.for_task(task).configured

    def model(self, task: ModelTask | str) -> InferenceModel[Any, Any]:
        """The task's model (not loaded yet); `ModelNotConfigured` when it has none here."""
        task = ModelTask(task)
        with self._lock:
            model = self._models.get(task)
            if model is None:
                model = self._models[task] = self.registry.create(task, self.settings.for_task(task))
            return model

    def get(self, kind: type[M]) -> M:
        """The model of a task class, typed: ``pool.get(Transcriber)``."""
        model = self.model(kind.task)
        if not isinstance(model, kind):
            raise TypeError(f"the {kind.task} model is a {type(model).__name__}, not a {kind.__name__}")
        return model

    def health(self, task: ModelTask | str) -> ModelHealth:
        """Cheap status of one task's model; never loads it and never raises."""
        task = ModelTask(task)
        settings = self.settings.for_task(task)
        try:
            model = self.model(task)
        except Exception as exc:  # not configured, or a backend entry that does not resolve
            configured = isinstance(exc, ModelNotConfigured)
            return ModelHealth(
                task=str(task),
                backend=settings.backend,
                model=settings.model,
                state="not_configured" if configured else "down",
                error=str(exc) if configured else f"{type(exc).__name__}: {exc}",
            )
        return model.health()

    def statuses(self, tasks: Iterable[ModelTask | str] | None = None) -> dict[str, ModelHealth]:
        """``model:<task>`` -> status, for every given task (all by default), configured or not."""
        return {f"model:{ModelTask(t)}": self.health(t) for t in (ModelTask if tasks is None else tasks)}

    def readiness_checks(self, tasks: Iterable[ModelTask | str]) -> dict[str, Callable[[], None]]:
        """One check per *configured* task, named ``model:<task>``, for the health registry.

        A check raises when the model is down, or configured but unusable here (unknown backend,
        dependency group not installed, credentials refused); a model not yet loaded is up.
        """
        checks: dict[str, Callable[[], None]] = {}
        for task in (ModelTask(t) for t in tasks):
            if self.configured(task):
                checks[f"model:{task}"] = self._check(task)
        return checks

    def unload_all(self) -> None:
        """Unload every loaded model (they load again on their next call)."""
        for model in self._created():
            model.unload()

    def close(self) -> None:
        """Unload every model and stop its executor."""
        for model in self._created():
            model.close()

    def _created(self) -> list[InferenceModel[Any, Any]]:
        with self._lock:
            return list(self._models.values())

    def _check(self, task: ModelTask) -> Callable[[], None]:
        def check() -> None:
            status = self.health(task)
            if status.state == "down":
                raise ModelUnavailable(status.error or "down", task=str(task))
            if status.state == "not_configured":
                backend = self.settings.for_task(task).backend
                where = model_env(task, "backend") if backend != NONE else str(task)
                raise ModelNotConfigured(f"{where}={backend}: {status.error}", task=str(task))

        return check
