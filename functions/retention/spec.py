"""The retention function: purges expired intermediate artefacts when a sweep is requested."""

from __future__ import annotations

from aima.storage.retention import RetentionSweeper
from events.catalogue import RetentionSweepRequested, RetentionSwept
from functions.retention.core import RetentionCore
from functions.runtime.deps import Deps
from functions.runtime.spec import FunctionSpec, Resources


def build(deps: Deps) -> RetentionCore:
    """A core on the process's stores."""
    stores = deps.stores
    return RetentionCore(
        RetentionSweeper(stores.db, stores.objects, stores.documents, deps.config, deps.audit)
    )


SPEC = FunctionSpec(
    name="retention",
    description="purges expired frames and audio extracts (originals stay with the case), audited",
    consumes=(RetentionSweepRequested,),
    emits=(RetentionSwept,),
    build=build,
    needs=("database", "objects", "documents", "bus"),
    resources=Resources(cpu="250m", memory="256Mi", concurrency=1, timeout_s=900, max_scale=1),
    port=8083,
)
