"""Models behind one interface (`InferenceModel`: lazy ``load()``, ``predict()``/``apredict()``,
``unload()``, ``health()``), one task class per task, backends chosen by settings.

Importing this package imports nothing else: the names below load their module on first use,
and backends are registered as ``"module:Class"`` strings, imported when a model is created
(`inference.registry`), so no ML library is imported before a model is.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aima.model_settings import ModelSettings, ModelsSettings, ModelTask
    from inference.base import InferenceModel, ModelHealth
    from inference.errors import (
        InvalidModelOutput,
        ModelError,
        ModelNotConfigured,
        ModelUnavailable,
        Outcome,
        outcome_of,
    )
    from inference.pool import ModelPool
    from inference.registry import REGISTRY, Registry, check_models

_EXPORTS = {
    "ModelSettings": "aima.model_settings",
    "ModelsSettings": "aima.model_settings",
    "ModelTask": "aima.model_settings",
    "InferenceModel": "inference.base",
    "ModelHealth": "inference.base",
    "InvalidModelOutput": "inference.errors",
    "ModelError": "inference.errors",
    "ModelNotConfigured": "inference.errors",
    "ModelUnavailable": "inference.errors",
    "Outcome": "inference.errors",
    "outcome_of": "inference.errors",
    "ModelPool": "inference.pool",
    "REGISTRY": "inference.registry",
    "Registry": "inference.registry",
    "check_models": "inference.registry",
}

__all__ = [
    "REGISTRY",
    "InferenceModel",
    "InvalidModelOutput",
    "ModelError",
    "ModelHealth",
    "ModelNotConfigured",
    "ModelPool",
    "ModelSettings",
    "ModelTask",
    "ModelUnavailable",
    "ModelsSettings",
    "Outcome",
    "Registry",
    "check_models",
    "outcome_of",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
