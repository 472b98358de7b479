"""Vector collections sized by the model that fills them."""

from __future__ import annotations

from typing import Any

from aima.storage.vectors import VectorStore
from inference.tasks.common import Embedder


def ensure_collection_for(store: VectorStore, model: Embedder[Any, Any]) -> int:
    """Make sure the model's collection exists with the model's dimension and return it.

    Raises `aima.storage.vectors.VectorDimensionMismatch` when the collection already holds
    vectors of another size (a different model filled it): nothing is mixed or dropped.
    """
    dimension = model.dimension
    store.ensure_collection(model.collection, dimension)
    return dimension
