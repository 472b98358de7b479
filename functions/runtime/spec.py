"""One spec per function: the single place a function declares what it is.

Each function package has a module ``spec`` with a `FunctionSpec` named ``SPEC``: its name, the
catalogue events it consumes and emits, how it is built from the process's `Deps`, what its
readiness depends on, and resource hints. `aima serve NAME`, the bus consumer, the CloudEvents
HTTP endpoint, ``/readyz``, ``aima analyze`` and the Kubernetes packaging all read the spec, so
adding a function touches its own package and the event catalogue, nothing else.

`discover` finds the specs: every subpackage of ``functions`` (on every ``functions/`` folder on
``sys.path``, as `pkgutil.extend_path` sees them) that has a ``spec`` module.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aima.model_settings import ModelTask
from events.catalogue import CATALOGUE, EventData

if TYPE_CHECKING:
    from fastapi import FastAPI

    from functions.runtime.context import Context
    from functions.runtime.deps import Deps

IMAGES: dict[str, tuple[str, ...]] = {
    "core": (),
    "speech": ("speech",),
    "vision": ("vision",),
    "ocr": ("ocr",),
    "text": ("text",),
}
"""The container image families and the optional dependency groups each installs (``functions/Dockerfile``
has one target per family; a function names its family in `FunctionSpec.image`)."""
NEEDS = frozenset({"database", "objects", "documents", "vectors", "cache", "bus"})
"""What a function's readiness may depend on besides models (``model:<task>``)."""
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
PACKAGE = "functions"
RUNTIME = "runtime"


class SpecError(ValueError):
    """A function spec is inconsistent; the message names the function and the field."""


@dataclass(frozen=True)
class Resources:
    """Resource hints the Kubernetes packaging turns into requests, limits and scaling."""

    cpu: str = "500m"
    memory: str = "512Mi"
    gpu: int = 0
    concurrency: int = 4
    """Requests one replica handles at once (Knative ``containerConcurrency``)."""
    timeout_s: int = 300
    min_scale: int = 0
    max_scale: int = 10


class EventFunction(Protocol):
    """What an event function's ``build`` returns: a typed core."""

    async def handle(self, data: Any, ctx: Context) -> Sequence[EventData]:
        """Handle one event's validated data; return the payloads to emit."""
        ...


@dataclass(frozen=True)
class FunctionSpec:
    """A function, declared once (see module docstring).

    ``build`` makes the typed core of an event function; ``app`` the HTTP API of a function that
    serves one of its own (the gateway, ingest). A function may have both.
    """

    name: str
    description: str
    consumes: tuple[type[EventData], ...] = ()
    emits: tuple[type[EventData], ...] = ()
    build: Callable[[Deps], EventFunction] | None = None
    app: Callable[[Deps], FastAPI] | None = None
    needs: tuple[str, ...] = ("database",)
    resources: Resources = field(default_factory=Resources)
    public: bool = False
    """Reachable from outside the cluster (only the gateway)."""
    port: int = 8080
    """The port ``aima serve NAME`` listens on by default."""
    analysis: bool = False
    """A step of the analysis pipeline: ``aima analyze`` runs it and counts its results."""
    step: str | None = None
    """The per-file step it runs (its state kept per file of a job, `aima.storage.job_steps`);
    None for a function that is not one (the gateway, fuse, the scheduler)."""
    image: str = "core"
    """The image family it runs in (`IMAGES`): the smallest one that carries its models' packages."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SpecError(f"function name {self.name!r}: lowercase letters, digits and '-', at most 31")
        if self.build is None and self.app is None:
            raise SpecError(f"function {self.name}: needs build (an event function) or app (an HTTP API)")
        if self.consumes and self.build is None:
            raise SpecError(f"function {self.name}: consumes events but has no build")
        for payload in (*self.consumes, *self.emits):
            if CATALOGUE.get(payload.TYPE) is not payload:
                raise SpecError(f"function {self.name}: {payload.__name__} is not in the event catalogue")
        if self.image not in IMAGES:
            raise SpecError(f"function {self.name}: unknown image {self.image!r}; known: {', '.join(IMAGES)}")
        tasks = {f"model:{task.value}" for task in ModelTask}
        for need in self.needs:
            if need not in NEEDS and need not in tasks:
                known = ", ".join(sorted(NEEDS | tasks))
                raise SpecError(f"function {self.name}: unknown readiness need {need!r}; known: {known}")

    @property
    def types(self) -> tuple[str, ...]:
        """The CloudEvents types it consumes."""
        return tuple(payload.TYPE for payload in self.consumes)

    def consumed(self, event_type: str) -> type[EventData] | None:
        """The payload model of ``event_type`` if this function consumes it."""
        return next((p for p in self.consumes if event_type == p.TYPE), None)


def load(name: str) -> FunctionSpec | None:
    """The spec of the function ``name`` alone (importing no other function), or None."""
    if not _NAME.match(name) or name == RUNTIME:
        return None
    _functions_package()
    module_name = f"{PACKAGE}.{name.replace('-', '_')}.spec"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return None
        raise
    spec = getattr(module, "SPEC", None)
    return spec if isinstance(spec, FunctionSpec) and spec.name == name else None


def discover() -> dict[str, FunctionSpec]:
    """Every function spec on ``sys.path``, by name (see module docstring)."""
    package = _functions_package()
    specs: dict[str, FunctionSpec] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.ispkg or info.name == RUNTIME:
            continue
        module_name = f"{PACKAGE}.{info.name}.spec"
        if module_name not in sys.modules and importlib.util.find_spec(module_name) is None:
            continue
        spec = getattr(importlib.import_module(module_name), "SPEC", None)
        if not isinstance(spec, FunctionSpec):
            raise SpecError(f"{module_name} defines no SPEC = FunctionSpec(...)")
        if spec.name in specs:
            raise SpecError(f"two functions are named {spec.name!r}")
        specs[spec.name] = spec
    return specs


def _functions_package() -> Any:
    """The ``functions`` package, its path extended to every ``functions/`` folder on ``sys.path``."""
    package = importlib.import_module(PACKAGE)
    package.__path__ = pkgutil.extend_path(list(package.__path__), PACKAGE)
    return package
