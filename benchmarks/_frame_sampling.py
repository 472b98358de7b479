"""Frame extraction: the probe's sampler vs a bare ``ffmpeg -vf fps=1`` decode of the same video.

Part of ``benchmarks/ingest.py``; alone: ``python benchmarks/_frame_sampling.py`` (needs ffmpeg).
A 60 s 1280x720 25 fps H.264 video is generated
into a temporary folder from ffmpeg's test sources (testsrc2, smptebars, mandelbrot) with scene cuts
at 12.4, 21.7, 31.7 and 47.3 s. Ours is `functions.probe.ffmpeg.sample_frames` with the probe's
default limits (12 frames a minute, scene threshold 0.3, frames of at most 1280 pixels), called as
the probe calls it, so it includes writing the JPEGs and reading ffmpeg's log; the baseline is
``ffmpeg -i VIDEO -vf fps=1 -f null -``. Each runs ``ROUNDS`` times, interleaved so a noisy
neighbour hits both alike; the median wall-clock time counts (CPU time of the children is printed
for context). The target: ours takes at most ``RATIO_TARGET`` times the bare decode.

Printed readably, then as the last line one JSON object with the checks; the exit code is 0 either
way. `frame_checks` is the reusable part.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from functions.probe import ffmpeg
from functions.probe.core import ProbeLimits

ROUNDS = 3
RATIO_TARGET = 1.2
SIZE, FPS = "1280x720", 25
SEGMENTS = (  # (lavfi source, seconds): concatenated, each boundary is a scene cut
    ("testsrc2", 12.4),
    ("smptebars", 9.3),
    ("mandelbrot", 10.0),
    ("testsrc2", 15.6),
    ("smptebars", 12.7),
)
GENERATE_TIMEOUT_S = 300


def make_video(folder: Path) -> Path:
    """The 60 s test video with its scene cuts, encoded like a camera would (H.264 with B-frames)."""
    out = folder / "scenes.mp4"
    inputs: list[str] = []
    for source, seconds in SEGMENTS:  # -t bounds every source (mandelbrot has no duration of its own)
        inputs += ["-t", f"{seconds}", "-f", "lavfi", "-i", f"{source}=size={SIZE}:rate={FPS}"]
    streams = "".join(f"[{i}:v]" for i in range(len(SEGMENTS)))
    command = [
        *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs),
        *("-filter_complex", f"{streams}concat=n={len(SEGMENTS)}:v=1:a=0[v]", "-map", "[v]"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out)),
    ]
    subprocess.run(command, check=True, timeout=GENERATE_TIMEOUT_S)
    return out


def bare_decode(video: Path, work: Path) -> None:
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(video)]
    subprocess.run([*command, "-vf", "fps=1", "-f", "null", "-"], check=True, timeout=GENERATE_TIMEOUT_S)


def sampler(video: Path, work: Path) -> list[tuple[float, Path]]:
    limits = ProbeLimits()
    return ffmpeg.sample_frames(
        video,
        work,
        max_per_minute=limits.max_frames_per_minute,
        scene_threshold=limits.scene_threshold,
        max_edge=limits.frame_edge,
        limits=limits.run_limits().scaled(sum(seconds for _, seconds in SEGMENTS)),
    )


def timed(run: Callable[[Path, Path], Any], video: Path, folder: Path) -> tuple[float, float, Any]:
    """(wall s, children's CPU s, result) of one run, in a fresh output folder."""
    with tempfile.TemporaryDirectory(dir=folder) as work:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = run(video, Path(work))
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result


def check(name: str, value: float, target: float) -> dict[str, object]:
    return {"name": name, "value": round(value, 3), "op": "<=", "target": target, "ok": value <= target}


def frame_checks() -> list[dict[str, object]]:
    """Generate the video, measure both sides, print the figures; returns the checks."""
    with tempfile.TemporaryDirectory(prefix="aima-bench-frames-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        video = make_video(folder)
        print(f"generated a 60 s {SIZE} {FPS} fps H.264 video in {time.perf_counter() - started:.1f} s")
        ours: list[tuple[float, float]] = []
        bare: list[tuple[float, float]] = []
        frames: list[tuple[float, Path]] = []
        for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits both alike
            wall, cpu, _ = timed(bare_decode, video, folder)
            bare.append((wall, cpu))
            wall, cpu, frames = timed(sampler, video, folder)
            ours.append((wall, cpu))
    ours_wall, ours_cpu = (statistics.median(column) for column in zip(*ours, strict=True))
    bare_wall, bare_cpu = (statistics.median(column) for column in zip(*bare, strict=True))
    ratio = ours_wall / bare_wall
    print(f"median of {ROUNDS} interleaved rounds; per round wall s (bare, ours):")
    for (b, _), (o, _) in zip(bare, ours, strict=True):
        print(f"  {b:.2f}, {o:.2f}")
    print(f"  bare decode (fps=1) : {bare_wall:6.2f} s wall, {bare_cpu:6.2f} s CPU")
    print(f"  sampler             : {ours_wall:6.2f} s wall, {ours_cpu:6.2f} s CPU ({ratio:.2f}x the bare)")
    print(f"  {len(frames)} frames at " + ", ".join(f"{t:.2f}" for t, _ in frames) + " s")
    return [check("sampler_vs_bare_decode", ratio, RATIO_TARGET)]


if __name__ == "__main__":
    print(json.dumps({"benchmark": "frames", "checks": frame_checks()}))
