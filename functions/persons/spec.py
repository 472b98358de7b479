"""The persons function: a file's face tracks linked to the persons of its case, incrementally."""

from __future__ import annotations

from aima.storage.faces import FaceRepository
from aima.storage.persons import PersonRepository
from events.catalogue import FacesDetected, PersonsClustered
from functions.persons.core import LinkRules, PersonsCore
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources


def build(deps: Deps) -> PersonsCore:
    """A core on the process's stores; how similar a face must be to join a person comes from each
    tenant's ``thresholds.face_match``."""
    stores = deps.stores

    def rules_for(tenant_id: str) -> LinkRules:
        return LinkRules.from_face_match(deps.config.effective(tenant_id).thresholds.face_match)

    return PersonsCore(
        FaceRepository(stores.documents),
        PersonRepository(stores.documents, cache=stores.cache),
        lambda: stores.vectors,
        rules_for=rules_for,
    )


SPEC = FunctionSpec(
    name="persons",
    description="face tracks linked to the persons of their case as files arrive; unsure ones unassigned",
    consumes=(FacesDetected,),
    emits=(PersonsClustered,),
    build=build,
    needs=("database", "documents", "vectors", "cache", "bus"),
    resources=Resources(cpu="500m", memory="512Mi", concurrency=4, timeout_s=600, max_scale=4),
    port=8090,
    analysis=True,
    step="persons",
)
