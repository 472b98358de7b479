"""Vision: faces, persons' thresholds, face search, OCR and sensitivity against their baselines, in one run.

Media: 1280x720 frames the benchmark makes from shipped photographs (`aima.samples_faces`): each
holds four heads on a calm background, degraded in turn (as they are, a quarter of the size,
blurred, strongly compressed, turned 20-30 degrees, the lower part covered).

* **detection**: recall of the faces step's fast detectors (MediaPipe full range on the frame,
  short range on tiles, each candidate confirmed) against plain dlib HOG (``detector(img, 0)``) on
  the same frames, each with its image decoding; frames per second of each;
* **face pipeline**: the faces step as it runs (`FacesCore` over the embedded stores: frames from
  the object store, detection, alignment and embedding, tracks, crops, the face document and the
  track vectors) against the bare model calls (`DlibFaceAnalyzer.predict` on each frame file), in
  frames per second; then two worker processes, each with its own stores and a file of half the
  frames, against the bare calls in one process;
* **calibration**: the similarity of every degraded face the detectors found to each person's
  photographs: how often another person's face reaches the persons step's ``join`` and ``new``
  similarities (docs/persons.md), and how often the same person's face misses them;
* **face search** and **OCR and sensitivity per frame**: `benchmarks/_face_search_bench.py` and
  `benchmarks/_frame_steps_bench.py`.

Runs alternate and each figure is the median of ``ROUNDS``. The last line is one JSON object with
the checks; the exit code is 0 either way.
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aima.model_settings import FaceAnalyzerSettings
from aima.samples_faces import FaceSamples, Head, PlacedFace, face_samples, heads, scene
from functions.persons.core import LinkRules

ROUNDS = 3
DETECTION_FRAMES = 30
PIPELINE_FRAMES = 16
CALIBRATION_FRAMES = 30


def check(name: str, value: float, op: str, target: float) -> dict[str, object]:
    ok = value >= target if op == ">=" else value <= target
    return {"name": name, "value": round(value, 4), "op": op, "target": target, "ok": ok}


def make_frames(
    pool: Sequence[Head], folder: Path, count: int, first_seed: int
) -> list[tuple[Path, list[PlacedFace]]]:
    made = []
    for seed in range(first_seed, first_seed + count):
        image, placed = scene(pool, seed)
        path = folder / f"frame-{seed:04d}.jpg"
        image.save(path, quality=92)
        made.append((path, placed))
    return made


def recall(
    found: Sequence[Sequence[tuple[float, float, float, float]]],
    frames: Sequence[tuple[Path, list[PlacedFace]]],
) -> float:
    hits = total = 0
    for boxes, (_, placed) in zip(found, frames, strict=True):
        for face in placed:
            total += 1
            hits += any(face.inside(*box) for box in boxes)
    return hits / total


# --- detection ----------------------------------------------------------------------------------


def detection(model: Any, frames: list[tuple[Path, list[PlacedFace]]]) -> list[dict[str, object]]:
    import cv2
    import dlib

    from inference.cpu.faces import merge

    hog = dlib.get_frontal_face_detector()

    def decode(path: Path) -> Any:
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)

    def run_ours() -> list[list[tuple[float, float, float, float]]]:
        out = []
        for path, _ in frames:
            image = decode(path)
            out.append([c.box for c in merge(model.confirm(image, merge(model.detect(image))))])
        return out

    def run_hog() -> list[list[tuple[float, float, float, float]]]:
        out = []
        for path, _ in frames:
            out.append([(b.left(), b.top(), b.width(), b.height()) for b in hog(decode(path), 0)])
        return out

    timings: dict[str, list[float]] = {"ours": [], "hog": []}
    found: dict[str, list[list[tuple[float, float, float, float]]]] = {}
    for round_ in range(ROUNDS):
        order = [("ours", run_ours), ("hog", run_hog)]
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            found[name] = run()
            timings[name].append(len(frames) / (time.perf_counter() - started))
    fps = {name: statistics.median(values) for name, values in timings.items()}
    recalls = {name: recall(found[name], frames) for name in found}
    kinds: dict[str, list[bool]] = {}
    for boxes, (_, placed) in zip(found["ours"], frames, strict=True):
        for face in placed:
            kinds.setdefault(face.degradation, []).append(any(face.inside(*box) for box in boxes))
    by_kind = ", ".join(f"{kind} {sum(v)}/{len(v)}" for kind, v in sorted(kinds.items()))
    print(f"detection on {len(frames)} frames with {sum(len(p) for _, p in frames)} faces:")
    print(f"  ours: recall {recalls['ours']:.3f} ({by_kind}), {fps['ours']:.1f} frames/s")
    print(f"  dlib HOG: recall {recalls['hog']:.3f}, {fps['hog']:.1f} frames/s")
    return [
        check("detection recall on degraded faces", recalls["ours"], ">=", 0.9),
        check("detection frames/s vs plain dlib HOG", fps["ours"] / fps["hog"], ">=", 1.0),
    ]


# --- the face pipeline --------------------------------------------------------------------------


def _stores(folder: Path) -> Any:
    """Embedded stores with a tenant, a case and one video media row per call of ``media``."""
    from tests.support import case_stores

    return case_stores(folder, "bench")


def _pipeline_worker(folder: str, frame_paths: list[str], ready: Any, start: Any, out: Any) -> None:
    """A worker process: its own stores and model; handles one file of ``frame_paths`` when told."""
    seconds = asyncio.run(_pipeline(Path(folder), [Path(p) for p in frame_paths], ready, start))
    out.put(seconds)


async def _pipeline(folder: Path, frame_paths: list[Path], ready: Any = None, start: Any = None) -> float:
    from aima.access.scope import Scope
    from aima.storage.faces import FaceRepository
    from aima.storage.media import MediaRepository
    from aima.storage.vectors_milvus import MilvusVectorStore
    from events.catalogue import FrameRef, FramesExtracted, make_event
    from functions.faces.core import FacesCore
    from functions.runtime.context import Context
    from inference.cpu.faces import DlibFaceAnalyzer
    from tests.support import add_media

    model = DlibFaceAnalyzer(FaceAnalyzerSettings(idle_unload_seconds=0))
    model.load()
    vectors = MilvusVectorStore(str(folder / "vectors.db"))
    vectors.ensure_collections()
    with _stores(folder) as made:
        media = MediaRepository(made.db)
        scope = Scope.for_case(made.tenant_id, made.case_id, "bench")

        def stored(frames: list[Path]) -> FramesExtracted:
            media_id, base = add_media(
                made.objects, media, scope, made.case_id, b"", content_type="video/mp4", filename="clip.mp4"
            )
            refs = []
            for index, path in enumerate(frames):
                key = f"{base}/frames/{index * 1000:010d}.jpg"
                made.objects.put(key, io.BytesIO(path.read_bytes()), content_type="image/jpeg")
                refs.append(
                    FrameRef(frame_id=f"{media_id}-f{index}", object_key=key, timestamp_s=float(index))
                )
            return FramesExtracted(
                tenant_id=made.tenant_id, case_id=made.case_id, media_id=media_id, frames=refs
            )

        data = stored(frame_paths)
        core = FacesCore(made.objects, FaceRepository(made.documents), media, vectors, analyzer=lambda: model)
        warm = stored(frame_paths[:1])  # a serving process is warm: its worker thread has its detectors
        await core.handle(warm, Context("faces", make_event(warm, source="/aima/bench")))
        context = Context("faces", make_event(data, source="/aima/bench"))
        if ready is not None and start is not None:
            ready.put(True)
            start.wait()
        started = time.perf_counter()
        await core.handle(data, context)
        seconds = time.perf_counter() - started
    vectors.close()
    model.close()
    return seconds


def pipeline(model: Any, frames: list[tuple[Path, list[PlacedFace]]], work: Path) -> list[dict[str, object]]:
    from inference.tasks.vision import FaceInput

    paths = [path for path, _ in frames]

    def bare() -> float:
        started = time.perf_counter()
        for path in paths:
            model.predict(FaceInput(path=path))
        return time.perf_counter() - started

    def ours(round_: int) -> float:
        folder = work / f"pipeline-{round_}"
        folder.mkdir()
        return asyncio.run(_pipeline(folder, paths))

    bare_fps: list[float] = []
    ours_fps: list[float] = []
    for round_ in range(ROUNDS):
        if round_ % 2 == 0:
            ours_fps.append(len(paths) / ours(round_))
            bare_fps.append(len(paths) / bare())
        else:
            bare_fps.append(len(paths) / bare())
            ours_fps.append(len(paths) / ours(round_))
    two = []
    for round_ in range(ROUNDS):
        two.append(len(paths) / two_workers(paths, work / f"two-{round_}"))
    bare_m, ours_m, two_m = (statistics.median(v) for v in (bare_fps, ours_fps, two))
    print(f"face pipeline on {len(paths)} frames with 4 faces each:")
    print(f"  bare detector + embedder calls: {bare_m:.2f} frames/s")
    print(f"  faces step (one process): {ours_m:.2f} frames/s ({ours_m / bare_m:.2f}x)")
    print(f"  faces step (two worker processes): {two_m:.2f} frames/s ({two_m / bare_m:.2f}x)")
    return [
        check("face pipeline frames/s vs bare calls, one process", ours_m / bare_m, ">=", 0.9),
        check("face pipeline frames/s vs bare calls, two workers", two_m / bare_m, ">=", 1.7),
    ]


def two_workers(paths: list[Path], folder: Path) -> float:
    """Two processes, each with its own stores and half the frames as one file; wall time of both."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    ready = context.Queue()
    out = context.Queue()
    halves = [paths[: len(paths) // 2], paths[len(paths) // 2 :]]
    workers = []
    for n, half in enumerate(halves):
        sub = folder / f"worker-{n}"
        sub.mkdir(parents=True)
        worker = context.Process(
            target=_pipeline_worker, args=(str(sub), [str(p) for p in half], ready, start, out)
        )
        worker.start()
        workers.append(worker)
    for _ in workers:  # each has loaded its model and stores, and stored its frames
        ready.get(timeout=300)
    started = time.perf_counter()
    start.set()
    for _ in workers:
        out.get(timeout=600)
    seconds = time.perf_counter() - started
    for worker in workers:
        worker.join(timeout=60)
    return seconds


# --- calibration --------------------------------------------------------------------------------


def calibration(
    model: Any, samples: FaceSamples, frames: list[tuple[Path, list[PlacedFace]]]
) -> list[dict[str, object]]:
    from inference.tasks.vision import FaceInput

    references: dict[str, list[list[float]]] = {}
    for person, files in samples.people.items():
        for file in files:
            found = model.predict(FaceInput(path=file, thorough=True)).faces
            if found:
                best = max(found, key=lambda face: face.box.height)
                references.setdefault(person, []).append(best.embedding)
    genuine: list[float] = []
    impostor: list[float] = []
    for path, placed in frames:
        faces = model.predict(FaceInput(path=path)).faces
        for face in placed:
            match = [f for f in faces if face.inside(f.box.x, f.box.y, f.box.width, f.box.height)]
            if not match or match[0].embedding is None:
                continue
            vector = match[0].embedding
            for person, vectors in references.items():
                best = max(sum(a * b for a, b in zip(vector, other, strict=True)) for other in vectors)
                (genuine if person == face.person else impostor).append(best)
    rules = LinkRules()
    false_join = sum(s >= rules.join for s in impostor) / len(impostor)
    missed_join = sum(s < rules.join for s in genuine) / len(genuine)
    near_new = sum(s >= rules.new for s in impostor) / len(impostor)
    print(f"calibration: {len(genuine)} same-person and {len(impostor)} other-person similarities")
    print(f"  same person: median {statistics.median(genuine):.3f}, lowest {min(genuine):.3f}")
    print(f"  other person: median {statistics.median(impostor):.3f}, highest {max(impostor):.3f}")
    print(
        f"  join at {rules.join}: {false_join:.2%} of other-person faces would join, "
        f"{missed_join:.2%} of same-person faces would not; {near_new:.2%} of other-person faces reach "
        f"new={rules.new} (they stay unassigned instead of starting a person)"
    )
    return [check("other-person faces reaching the join similarity", false_join, "<=", 0.01)]


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    from benchmarks import _face_search_bench, _frame_steps_bench
    from inference.cpu.faces import DlibFaceAnalyzer

    samples = face_samples()
    pool = heads(samples)
    model = DlibFaceAnalyzer(FaceAnalyzerSettings(idle_unload_seconds=0))
    model.load()
    checks: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="aima-bench-vision-") as tmp:
        work = Path(tmp)
        checks += detection(model, make_frames(pool, work, DETECTION_FRAMES, 1000))
        checks += pipeline(model, make_frames(pool, work, PIPELINE_FRAMES, 2000), work)
        checks += calibration(model, samples, make_frames(pool, work, CALIBRATION_FRAMES, 3000))
    model.close()
    checks += _face_search_bench.run()
    checks += _frame_steps_bench.run()
    print(json.dumps({"benchmark": "vision", "checks": checks}))


if __name__ == "__main__":
    main()
