"""The faces function: faces found, aligned and embedded in frames and images, followed as tracks."""

from __future__ import annotations

from aima.storage.faces import FaceRepository
from aima.storage.media import MediaRepository
from events.catalogue import FacesDetected, FramesExtracted
from functions.faces.core import FacesCore
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources
from inference.tasks.vision import FaceAnalyzer


def build(deps: Deps) -> FacesCore:
    """A core on the process's stores and face model."""
    stores = deps.stores
    return FacesCore(
        stores.objects,
        FaceRepository(stores.documents),
        MediaRepository(stores.db),
        stores.vectors,
        analyzer=lambda: deps.models.get(FaceAnalyzer),
    )


SPEC = FunctionSpec(
    name="faces",
    description="faces detected, aligned and embedded in frames and images, followed across frames as tracks",
    consumes=(FramesExtracted,),
    emits=(FacesDetected,),
    build=build,
    needs=("database", "objects", "documents", "vectors", "bus", "model:face_analyzer"),
    resources=Resources(cpu="1", memory="1Gi", concurrency=1, timeout_s=1800, max_scale=8),
    port=8089,
    analysis=True,
    step="faces",
    image="vision",
)
