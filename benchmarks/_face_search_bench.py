"""Case-filtered face search in the vector store against NumPy brute force over the same vectors.

Part of the vision benchmark; alone: ``python benchmarks/_face_search_bench.py``. ``VECTORS`` random
unit 128-d float32 vectors in ``CASES`` cases of equal size (two tenants, each case in one of them),
stored as files of ``FILE_FACES`` faces of one case, the files shuffled so that the cases interleave
as they would when files arrive. They are written through `MilvusVectorStore.upsert` into a fresh
Milvus Lite file in a temporary folder (timed, then one `flush`, timed). ``QUERIES`` queries, each a
stored face of a case chosen at random plus noise (cosine about 0.96 to it), run on:

* **store**: ``store.search("faces", query, tenant_id=, case_id=, limit=10)``, the query as a list of
  floats (what the callers pass);
* **NumPy, brute force** (the baseline the check divides by): ``sims = vectors @ query`` over all
  ``VECTORS`` vectors, the other cases' scores set to minus infinity, ``np.argpartition`` for the
  ten best, sorted: every vector scored, then filtered by case, which is what brute force over the
  same vectors is;
* **NumPy, masked** (printed: the harder comparison): ``rows = np.flatnonzero(case_of == case)``,
  a boolean mask over all ``VECTORS`` case numbers; ``sims = vectors[rows] @ query``, the case's
  rows gathered and one matrix-vector product; ``np.argpartition(-sims, 10)[:10]`` sorted by score:
  the case's ten nearest by cosine (the vectors are unit length). The case number fixes the tenant;
* **NumPy, per case** (printed only): the same on the case's rows kept as a contiguous matrix of
  their own, so no mask and no gather.

The four alternate (their order reversed from query to query, ``ROUNDS`` passes over all queries
after a warm-up); each figure is the median of its per-query times, the check the store's median
over the brute-force NumPy median; the ratio to the masked NumPy search is printed beside it.
Recall@10 is the share of NumPy's ten ids the store returned.

For the record the same is measured on the layout this store had before (COSINE, a filter on the
tenant and case strings, no ``case_key``): the collection created with pymilvus as the store used to
create it, then written and searched through the store, which keeps an older collection's layout.
``PREVIOUS_QUERIES`` queries, one pass. `run` returns the checks.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import numpy.typing as npt

from aima.storage.vectors import VectorRecord
from aima.storage.vectors_milvus import PREFIX, MilvusVectorStore

VECTORS = 100_000
CASES = 10
TENANTS = 2
FILE_FACES = 50
DIM = 128
LIMIT = 10
QUERIES = 200
WARMUP = 20
ROUNDS = 3
PREVIOUS_QUERIES = 100
NOISE = 0.3  # length of the noise added to a stored face to make a query
RATIO_TARGET = 2.0
RECALL_TARGET = 0.99

Floats = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


class Faces:
    """The vectors, their case numbers, and what the store knows them by."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((VECTORS, DIM)).astype(np.float32)
        self.vectors: Floats = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        files = np.repeat(np.arange(CASES), VECTORS // CASES // FILE_FACES)
        rng.shuffle(files)
        self.case_of = np.repeat(files, FILE_FACES).astype(np.int64)
        self.case_ids = [uuid.UUID(bytes=rng.bytes(16)).hex for _ in range(CASES)]
        self.tenant_ids = [f"tenant-{n}" for n in range(TENANTS)]
        self.by_case: list[tuple[Ids, Floats]] = []
        for case in range(CASES):
            rows = np.flatnonzero(self.case_of == case)
            self.by_case.append((rows, np.ascontiguousarray(self.vectors[rows])))
        self.rng = rng

    def tenant(self, case: int) -> str:
        return self.tenant_ids[case % TENANTS]

    def records(self) -> list[VectorRecord]:
        return [
            VectorRecord(
                f"face-{row:06d}",
                self.tenant(int(case)),
                self.case_ids[int(case)],
                f"file-{row // FILE_FACES:05d}",
                vector,
                ref=f"face-{row:06d}",
            )
            for row, (case, vector) in enumerate(zip(self.case_of, self.vectors.tolist(), strict=True))
        ]

    def queries(self, count: int) -> list[tuple[int, Floats]]:
        found = []
        for _ in range(count):
            case = int(self.rng.integers(CASES))
            rows, _ = self.by_case[case]
            noise = self.rng.standard_normal(DIM).astype(np.float32)
            query = self.vectors[int(self.rng.choice(rows))] + NOISE * noise / np.linalg.norm(noise)
            found.append((case, (query / np.linalg.norm(query)).astype(np.float32)))
        return found

    def brute_force(self, query: Floats, case: int) -> Ids:
        """The baseline: every vector scored, the other cases' scores dropped, top ten."""
        sims = self.vectors @ query
        sims[self.case_of != case] = -np.inf
        top = np.argpartition(-sims, LIMIT)[:LIMIT]
        best: Ids = top[np.argsort(-sims[top])]
        return best

    def masked(self, query: Floats, case: int) -> Ids:
        """Mask, gather the case's rows, matrix-vector product, top ten."""
        rows = np.flatnonzero(self.case_of == case)
        sims = self.vectors[rows] @ query
        top = np.argpartition(-sims, LIMIT)[:LIMIT]
        best: Ids = rows[top[np.argsort(-sims[top])]]
        return best

    def per_case(self, query: Floats, case: int) -> Ids:
        rows, matrix = self.by_case[case]
        sims = matrix @ query
        top = np.argpartition(-sims, LIMIT)[:LIMIT]
        best: Ids = rows[top[np.argsort(-sims[top])]]
        return best


def load(store: MilvusVectorStore, faces: Faces) -> None:
    records = faces.records()
    started = time.perf_counter()
    store.upsert("faces", records)
    written = time.perf_counter() - started
    started = time.perf_counter()
    store.flush("faces")
    flushed = time.perf_counter() - started
    print(
        f"  upsert of {len(records):,} faces: {written:.1f} s ({len(records) / written:,.0f} a second); "
        f"flush {flushed * 1000:.0f} ms"
    )


def measure(
    store: MilvusVectorStore, faces: Faces, queries: list[tuple[int, Floats]], rounds: int
) -> tuple[dict[str, list[float]], float]:
    """Per-query times of the store and both NumPy searches (alternating), and the store's recall."""
    lists = [query.tolist() for _, query in queries]

    def store_search(index: int) -> list[str]:
        case, _ = queries[index]
        hits = store.search(
            "faces", lists[index], tenant_id=faces.tenant(case), case_id=faces.case_ids[case], limit=LIMIT
        )
        return [hit.id for hit in hits]

    sides: dict[str, Callable[[int], Any]] = {
        "store": store_search,
        "numpy brute force": lambda i: faces.brute_force(queries[i][1], queries[i][0]),
        "numpy masked": lambda i: faces.masked(queries[i][1], queries[i][0]),
        "numpy per case": lambda i: faces.per_case(queries[i][1], queries[i][0]),
    }
    for index in range(min(WARMUP, len(queries))):
        for side in sides.values():
            side(index)
    times: dict[str, list[float]] = {name: [] for name in sides}
    found: dict[int, list[str]] = {}
    for round_ in range(rounds):
        for index in range(len(queries)):
            order = list(sides) if (index + round_) % 2 == 0 else list(reversed(sides))
            for name in order:
                started = time.perf_counter()
                result = sides[name](index)
                times[name].append(time.perf_counter() - started)
                if name == "store":
                    found[index] = result
    recall = statistics.mean(
        len(set(found[i]) & {f"face-{row:06d}" for row in faces.masked(query, case)}) / LIMIT
        for i, (case, query) in enumerate(queries)
    )
    return times, recall


def report(label: str, times: dict[str, list[float]], recall: float) -> float:
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["numpy brute force"]
    print(f"  {label} ({len(times['store'])} searches each):")
    for name, median in medians.items():
        p90 = sorted(times[name])[int(len(times[name]) * 0.9)]
        print(
            f"    {name:17s} median {median * 1000:6.2f} ms  p90 {p90 * 1000:6.2f} ms  {median / base:5.2f}x"
        )
    print(f"    recall@{LIMIT} of the store against NumPy: {recall:.3f}")
    print(f"    store over the masked NumPy search: {medians['store'] / medians['numpy masked']:.2f}x")
    return medians["store"] / base


def previous_layout(path: str) -> None:
    """Create ``aima_faces`` at ``path`` as the store did before ``case_key`` (an older file)."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=path)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
    for field in ("tenant_id", "case_id", "media_id"):
        schema.add_field(field, DataType.VARCHAR, max_length=128)
    schema.add_field("ref", DataType.VARCHAR, max_length=512)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(PREFIX + "faces", schema=schema, consistency_level="Strong")
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
    for field in ("tenant_id", "case_id", "media_id"):
        params.add_index(field_name=field, index_type="INVERTED")
    client.create_index(PREFIX + "faces", params, sync=False)
    client.close()


def check(name: str, value: float, op: str, target: float) -> dict[str, Any]:
    ok = value <= target if op == "<=" else value >= target
    return {"name": name, "value": round(value, 3), "op": op, "target": target, "ok": ok}


def run() -> list[dict[str, Any]]:
    """Write the faces, measure the store against NumPy (and the previous layout); the checks."""
    faces = Faces()
    queries = faces.queries(QUERIES)
    print(
        f"face search: {VECTORS:,} unit {DIM}-d vectors in {CASES} cases of {VECTORS // CASES:,} "
        f"({TENANTS} tenants), Milvus Lite, top {LIMIT}, {QUERIES} queries x {ROUNDS} alternating passes"
    )
    with tempfile.TemporaryDirectory(prefix="aima-bench-face-search-") as tmp:
        store = MilvusVectorStore(str(Path(tmp) / "vectors.db"))
        try:
            store.ensure_collections()
            load(store, faces)
            times, recall = measure(store, faces, queries, ROUNDS)
        finally:
            store.close()
        ratio = report("case_key layout (this store)", times, recall)

        print("  the previous layout (COSINE, tenant and case strings filtered, strong), for the record:")
        path = str(Path(tmp) / "previous.db")
        previous_layout(path)
        old = MilvusVectorStore(path)
        try:
            old.ensure_collections()
            load(old, faces)
            old_times, old_recall = measure(old, faces, queries[:PREVIOUS_QUERIES], 1)
        finally:
            old.close()
        report("previous layout", old_times, old_recall)
    return [
        check("face search at 100k vectors vs NumPy brute force", ratio, "<=", RATIO_TARGET),
        check("face search recall@10 vs brute force", recall, ">=", RECALL_TARGET),
    ]


if __name__ == "__main__":
    print(json.dumps({"benchmark": "face_search", "checks": run()}))
