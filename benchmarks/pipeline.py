"""Pipeline: the whole main job on a 5-minute video with speech and faces; wall time and overhead.

Media (generated once, cached as ``~/.cache/aima/bench/pipeline-v{VERSION}-{seconds}s.mp4``): a
1280x720 H.264 video at ``FPS`` frames per second with an AAC speech track. The picture is a series
of scenes of 30 to 60 s, each on its own background, with one or two of four people
(`aima.samples_faces`, photographs from PyPI packages) walking across or standing; three of them
come back in later scenes, one is seen in one scene only; two scenes hold a sign of English and
German text. The sound is an
interview in English and German by espeak-ng voices (an officer in English and German, a witness
and a second witness in English) with pauses of 0.5 to 3 s and a stretch of noise.

The run is `aima.cli.analyze.run_analysis` in this process, as ``aima analyze`` runs it: the
embedded profile with the in-process bus in a temporary data folder, every step (probe,
transcribe, speakers, cues, ocr, faces, persons, pose, sensitivity, vision, which is not run
without a vision-language endpoint, fuse) and the report in every format. The probe samples
frames at the default runtime configuration's density (``analysis.max_frames_per_minute``, 60:
300 frames for 5 minutes), and the frame steps look at each of them. Models use their
defaults for a 2-core machine (1 thread, 1 worker each) except the transcriber, which gets
``TRANSCRIBER_THREADS`` as in `benchmarks/speech.py` (set ``AIMA_MODELS__TRANSCRIBER__THREADS``
to change it).

* **wall time ÷ media duration**: from the call of ``run_analysis`` to its return (settings, the
  steps, the report's JSON, CSV, HTML, PDF and WebVTT written), over the video's duration;
* **platform overhead**: the share of that wall time during which no model call and no media tool
  ran. Every model call passes through ``InferenceModel.predict`` (and ``load``, which the faces
  step also calls alone); the benchmark wraps both, and the probe's ffprobe/ffmpeg calls
  (``functions.probe.ffmpeg._run``), and the rendering of the report's formats (``write_all``:
  HTML, the PDF from it, CSV, WebVTT: a deliverable like the probe's transcoding, not platform
  plumbing), and records each call's start and end. Steps run side by side
  on the 2 cores, so the work time is the length of the *union* of those intervals, not their sum:
  overhead = (wall - union) ÷ wall. Loading a model's weights counts as model work (it is printed
  apart).

Also printed: each step's model calls and seconds (summed over calls, loads apart; the steps share
the cores, so a call's seconds are wall time, not its CPU), the frames the probe sampled, where the
time outside model calls went (setup, the probe storing frames, the report's export and its PDF,
the longest gaps), the CPU time used against the cores' capacity, and what the report found
(persons, speakers, timeline entries). The run must have found at least one person and two
speakers, or the benchmark stops with an error (exit code 1): a fast run that analysed nothing
proves nothing.

``AIMA_BENCH_PIPELINE_SECONDS`` sets a shorter video for development (default 300). There is no
baseline to measure in the same run: both figures are shares of the run's own wall time. The
last line is one JSON object with the checks; the exit code is 0 whatever the verdict.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aima.samples import Pause, Utterance, speak, write_script_wav

VERSION = "2"
SECONDS = int(os.environ.get("AIMA_BENCH_PIPELINE_SECONDS", "300"))
FPS = 2
SIZE = (1280, 720)
TRANSCRIBER_THREADS = 2
WALL_TARGET = 0.5
OVERHEAD_TARGET = 0.05
SHOWN_GAPS = 6

# --- the media ----------------------------------------------------------------------------------

OFFICER_EN, OFFICER_DE, WITNESS, SECOND = "en-gb+m3", "de+m3", "en-us+f3", "en-us+m1"

INTERVIEW: tuple[Utterance, ...] = (
    Utterance("Where were you on Tuesday evening between eight and eleven?", OFFICER_EN, "en"),
    Utterance("I was at home with my sister, we watched a film until midnight.", WITNESS, "en"),
    Utterance("Und danach, haben Sie noch jemanden gesehen oder gehört?", OFFICER_DE, "de"),
    Utterance("No. Nobody came to the door after ten o'clock.", WITNESS, "en"),
    Utterance("Did you hear anything from the flat next door that night?", OFFICER_EN, "en"),
    Utterance("Later I heard a woman shout: please help me, let me go.", WITNESS, "en"),
    Utterance("Wie spät war es, als Sie die Stimme gehört haben?", OFFICER_DE, "de"),
    Utterance("It must have been around half past eleven, maybe a little later.", WITNESS, "en"),
    Utterance("I was walking my dog past the harbour gate at that time.", SECOND, "en"),
    Utterance("There was a grey van parked next to the loading bay.", SECOND, "en"),
    Utterance("Haben Sie das Kennzeichen des Wagens gesehen?", OFFICER_DE, "de"),
    Utterance("Only the first letters, it started with H and B.", SECOND, "en"),
    Utterance("Two men carried a large box from the warehouse into the van.", SECOND, "en"),
    Utterance("Could you describe the two men for us, please?", OFFICER_EN, "en"),
    Utterance("One was tall with a dark jacket, the other wore a cap.", SECOND, "en"),
    Utterance("Die Tür der Lagerhalle stand die ganze Nacht offen.", OFFICER_DE, "de"),
    Utterance("My sister called the police when the shouting stopped.", WITNESS, "en"),
    Utterance("We drove to the station the next morning to make a statement.", WITNESS, "en"),
    Utterance("Ist Ihnen sonst noch etwas aufgefallen?", OFFICER_DE, "de"),
    Utterance("The light in the stairwell was broken for a week.", WITNESS, "en"),
    Utterance("Thank you, we will read your statement back to you now.", OFFICER_EN, "en"),
)
"""An interview of about 90 s of speech, spoken again and again to fill the track."""

PAUSES = (0.8, 1.5, 0.5, 2.5, 1.0, 3.0, 0.7)

SCENE_SECONDS = (45, 35, 60, 40, 50, 30, 40)
"""Scene lengths, repeated (and the last one cut) to fill the video: 300 s for one round."""


@dataclass(frozen=True)
class Role:
    """One person in a scene: walking across its row, or standing near ``x`` (a share of the width)."""

    person: str
    walks: bool
    row: int  # 0: upper row, 1: lower row
    x: float = 0.5
    face_px: int = 130


CAST: tuple[tuple[Role, ...], ...] = (
    (Role("biden", True, 0),),
    (Role("hopper", False, 1, 0.7), Role("obama", True, 0)),
    (Role("collins", False, 0, 0.35, 140),),
    (Role("biden", False, 1, 0.2, 120), Role("hopper", True, 0)),
    (Role("obama", True, 1, face_px=125),),
    (Role("obama", True, 0), Role("biden", False, 1, 0.75)),
    (Role("hopper", False, 0, 0.5, 145),),
)
SIGNS = {
    1: ("HARBOUR GATE 7 - PIER B", "Zutritt nur für Personal"),
    4: ("LAGERHALLE 3", "NO ENTRY AFTER 22:00"),
}
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/aima/bench`` (``~/.cache/aima/bench``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aima" / "bench"


def media(seconds: int) -> Path:
    """The benchmark's video of ``seconds``, made on first use and kept in `cache_folder`."""
    path = cache_folder() / f"pipeline-v{VERSION}-{seconds}s.mp4"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aima-bench-pipeline-", dir=path.parent) as tmp:
        wav = Path(tmp) / "speech.wav"
        spoken = write_script_wav(wav, script(seconds))
        made = Path(tmp) / "video.mp4"
        encode(frames(seconds), wav, made, seconds)
        made.replace(path)
    print(f"generated {path.name}: {len(spoken)} utterances, in {time.perf_counter() - started:.0f} s")
    return path


def script(seconds: float) -> list[Utterance | Pause]:
    """The interview repeated until ``seconds`` are filled (the rest stays silent)."""
    lengths = {u: len(speak(u)) / 16000 for u in INTERVIEW}
    parts: list[Utterance | Pause] = [Pause(1.0)]
    used, n = 1.0, 0
    while True:
        utterance = INTERVIEW[n % len(INTERVIEW)]
        pause = Pause(2.0, noise=0.05) if n % 17 == 16 else Pause(PAUSES[n % len(PAUSES)])
        if used + lengths[utterance] + pause.seconds > seconds - 0.5:
            return parts
        parts += [utterance, pause]
        used += lengths[utterance] + pause.seconds
        n += 1


def frames(seconds: int) -> Iterator[bytes]:
    """Raw RGB frames of the scenes at ``FPS``, ``seconds`` long."""
    from aima.samples_faces import degrade, face_samples, heads

    pool = {head.person: head for head in reversed(heads(face_samples()))}  # first photograph each
    rng = random.Random(7)
    start, scene = 0, 0
    while start < seconds:
        length = min(SCENE_SECONDS[scene % len(SCENE_SECONDS)], seconds - start)
        roles = CAST[scene % len(CAST)]
        background = _background(scene)
        pictures = [degrade(pool[role.person], "plain", role.face_px, rng) for role in roles]
        count = length * FPS
        for n in range(count):
            image = background.copy()
            for role, picture in zip(roles, pictures, strict=True):
                image.paste(picture, _place(role, picture.size, n, count))
            yield image.tobytes()
        start += length
        scene += 1


def _background(scene: int) -> Any:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    tint = np.array([(90, 100, 120), (120, 110, 90), (80, 120, 100), (130, 130, 135)][scene % 4])
    noise = np.random.default_rng(scene).random((SIZE[1], SIZE[0], 3)) * 70 + tint
    image = Image.fromarray(noise.clip(0, 255).astype("uint8")).filter(ImageFilter.GaussianBlur(10))
    sign = SIGNS.get(scene % len(CAST))
    if sign is not None:
        pen = ImageDraw.Draw(image)
        font = ImageFont.truetype(FONT, 26)
        pen.rectangle((40, 326, 500, 412), fill=(235, 235, 225))  # between the rows people walk in
        for line, text in enumerate(sign):
            pen.text((56, 334 + 38 * line), text, font=font, fill=(20, 20, 40))
    return image


def _place(role: Role, size: tuple[int, int], n: int, count: int) -> tuple[int, int]:
    """Where a person's picture goes in frame ``n`` of ``count``: walking or swaying a little."""
    width, height = size
    top = 30 if role.row == 0 else SIZE[1] - height - 20
    if role.walks:
        share = n / max(1, count - 1)
        x = 20 + (SIZE[0] - width - 40) * (share if role.row == 0 else 1 - share)
        return int(x), int(top + 8 * math.sin(n / 2))
    x = role.x * (SIZE[0] - width)
    return int(x + 6 * math.sin(n / 5)), int(top + 3 * math.sin(n / 3))


def encode(raw: Iterator[bytes], wav: Path, out: Path, seconds: int) -> None:
    """The frames and the speech as H.264 + AAC in MP4; the sound padded with silence to the end."""
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    argv += ["-s", f"{SIZE[0]}x{SIZE[1]}", "-framerate", str(FPS), "-i", "pipe:0", "-i", str(wav)]
    argv += ["-af", "apad", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "28"]
    argv += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", str(out)]
    encoder = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert encoder.stdin is not None
    try:
        for frame in raw:
            encoder.stdin.write(frame)
    finally:
        encoder.stdin.close()
    if encoder.wait(timeout=600) != 0:
        raise RuntimeError(f"ffmpeg failed: {encoder.stderr.read().decode() if encoder.stderr else ''}")


def duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


# --- recording the work -------------------------------------------------------------------------

TASK_STEP = {
    "speech_detector": "transcribe",
    "transcriber": "transcribe",
    "voice_embedder": "speakers",
    "text_embedder": "cues",
    "face_analyzer": "faces",
    "pose_estimator": "pose",
    "ocr": "ocr",
    "sensitivity_scorer": "sensitivity",
    "vision_describer": "vision",
    "narrator": "fuse",
}
"""The step of a model call whose caller cannot be seen on the stack."""

_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_step", default=None)


@dataclass(frozen=True)
class Call:
    """One interval of pipeline work: a model call, a model load or a media tool run."""

    kind: str  # "model", "load", "tool" or "render"
    what: str  # the model task or the tool
    step: str
    start: float
    end: float
    thread: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Recorder:
    """The intervals of every model call, model load and media tool call, from any thread."""

    calls: list[Call] = field(default_factory=list)
    phases: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    frames_sampled: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, what: str, step: str, start: float) -> None:
        call = Call(kind, what, step, start, time.perf_counter(), threading.get_ident())
        with self._lock:
            self.calls.append(call)

    def phase(self, name: str, start: float) -> None:
        with self._lock:
            self.phases[name].append((start, time.perf_counter()))


def _caller_step() -> str | None:
    """The pipeline step (``functions.<step>``) on the calling stack, if any."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("functions.") and not module.startswith("functions.runtime"):
            return module.split(".")[1]
        frame = frame.f_back
    return None


def instrument(recorder: Recorder) -> Callable[[], None]:
    """Wrap the model interface, the probe's tool runner and the job's platform phases; returns undo."""
    import aima.cli.analyze as analyze
    import aima.reports.exports as exports
    from functions.fuse.spec import ReportBuilder
    from functions.ingest.core import IngestCore
    from functions.probe import ffmpeg
    from functions.probe.core import ProbeCore
    from functions.runtime.host import Host
    from inference.base import InferenceModel

    undo: list[tuple[Any, str, Any]] = []

    def replace(owner: Any, name: str, wrapper: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        undo.append((owner, name, original))
        setattr(owner, name, wrapper(original))

    def step_of(model: Any) -> str:
        return _STEP.get() or _caller_step() or TASK_STEP.get(str(model.task), str(model.task))

    def timed_predict(predict: Callable[..., Any]) -> Callable[..., Any]:
        def timed(self: Any, inputs: Any) -> Any:
            step, started = step_of(self), time.perf_counter()
            try:
                return predict(self, inputs)
            finally:
                recorder.add("model", str(self.task), step, started)

        return timed

    def timed_apredict(apredict: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(self: Any, inputs: Any) -> Any:
            token = _STEP.set(step_of(self))  # predict runs on the model's thread, in this context
            try:
                return await apredict(self, inputs)
            finally:
                _STEP.reset(token)

        return timed

    def timed_load(load: Callable[..., Any]) -> Callable[..., Any]:
        def timed(self: Any) -> Any:
            if self.loaded:
                return load(self)
            step, attempts, started = step_of(self), self.load_attempts, time.perf_counter()
            try:
                return load(self)
            finally:
                if self.load_attempts != attempts:  # this call loaded (or failed to); others waited
                    recorder.add("load", str(self.task), step, started)

        return timed

    def timed_run(run: Callable[..., Any]) -> Callable[..., Any]:
        def timed(command: list[str], *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return run(command, *args, **kwargs)
            finally:
                recorder.add("tool", Path(command[0]).name, "probe", started)

        return timed

    def rendering(render: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return render(*args, **kwargs)
            finally:
                recorder.add("render", "report formats", "report", started)

        return timed

    def counted(sample: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            found = sample(*args, **kwargs)
            recorder.frames_sampled.append(len(found))
            return found

        return timed

    def phase(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(function):

                async def timed_async(*args: Any, **kwargs: Any) -> Any:
                    started = time.perf_counter()
                    try:
                        return await function(*args, **kwargs)
                    finally:
                        recorder.phase(name, started)

                return timed_async

            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    recorder.phase(name, started)

            return timed

        return wrap

    replace(InferenceModel, "predict", timed_predict)
    replace(InferenceModel, "apredict", timed_apredict)
    replace(InferenceModel, "load", timed_load)
    replace(ffmpeg, "_run", timed_run)
    replace(ffmpeg, "sample_frames", counted)
    replace(analyze, "discover", phase("finding the steps (imports)"))
    replace(Host, "start", phase("starting the steps (stores, cores, consumers)"))
    replace(IngestCore, "bulk", phase("ingest (store the upload)"))
    replace(ProbeCore, "_store", phase("probe: storing the frames, audio and metadata"))
    replace(ReportBuilder, "build", phase("fuse: building and signing the report"))
    replace(analyze, "_export", phase("export (json, csv, html, pdf, vtt)"))
    replace(analyze, "write_all", rendering)
    replace(exports, "html_to_pdf", phase("  of it the PDF (WeasyPrint)"))
    replace(Host, "stop", phase("stopping (stores closed)"))

    def restore() -> None:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)

    return restore


def union(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The intervals merged where they overlap or touch, in order."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(merged: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` inside the merged intervals."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in merged)


def gaps(merged: Sequence[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The stretches of ``[start, end]`` outside the merged intervals."""
    found, at = [], start
    for a, b in merged:
        if a > at:
            found.append((at, min(a, end)))
        at = max(at, b)
    if at < end:
        found.append((at, end))
    return [(a, b) for a, b in found if b > a]


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    started: float
    ended: float
    cpu: float
    out: Path | None
    echoed: list[str]


def analyse(video: Path, work: Path) -> Run:
    from aima.cli.analyze import run_analysis
    from aima.settings import load_settings

    settings = load_settings(profile="embedded", data_dir=work / "data")
    echoed: list[str] = []
    before = os.times()
    started = time.perf_counter()
    out = asyncio.run(
        run_analysis(
            settings, [video], case_name="pipeline benchmark", echo=echoed.append, out=work / "report"
        )
    )
    ended = time.perf_counter()
    after = os.times()
    cpu = sum(
        getattr(after, f) - getattr(before, f) for f in ("user", "system", "children_user", "children_system")
    )
    return Run(ended - started, started, ended, cpu, out, echoed)


def check(name: str, value: float, op: str, target: float) -> dict[str, object]:
    ok = value >= target if op == ">=" else value <= target
    return {"name": name, "value": round(value, 4), "op": op, "target": target, "ok": ok}


@dataclass(frozen=True)
class StepFigures:
    """One step's model work in the run."""

    seconds: float  # model calls and tool runs, summed, without loading
    loading: float  # loading models' weights
    calls: int
    first: float  # seconds from the run's start
    last: float
    detail: str  # per model task: calls and the median call


def per_step(calls: Sequence[Call], run: Run) -> dict[str, StepFigures]:
    """Each step's model time (loads apart), calls and span; printed, biggest first."""
    by_step: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_step[c.step].append(c)
    figures = {}
    for step, found in by_step.items():
        used = [c for c in found if c.kind != "load"]
        loads = [c for c in found if c.kind == "load"]
        nested = sum(  # a load inside a predict on the same thread is part of that call's time
            c.seconds
            for c in loads
            if any(u.thread == c.thread and u.start <= c.start <= u.end for u in used)
        )
        tasks: dict[str, list[float]] = defaultdict(list)
        for c in used:
            tasks[c.what].append(c.seconds)
        figures[step] = StepFigures(
            seconds=sum(c.seconds for c in used) - nested,
            loading=sum(c.seconds for c in loads),
            calls=len(used),
            first=min(c.start for c in found) - run.started,
            last=max(c.end for c in found) - run.started,
            detail=", ".join(
                f"{what} {len(times)} x {statistics.median(times) * 1000:.0f} ms"
                for what, times in sorted(tasks.items())
            ),
        )
    print("\nper step (model seconds summed over calls, loading apart; the steps overlap in time):")
    for step, f in sorted(figures.items(), key=lambda kv: -kv[1].seconds):
        print(
            f"  {step:12s} {f.seconds:6.1f} s  {f.detail} (median call); loading {f.loading:.1f} s; "
            f"from {f.first:.1f} to {f.last:.1f} s"
        )
    return figures


def outside(calls: Sequence[Call], phases: dict[str, list[tuple[float, float]]], run: Run) -> float:
    """Where the time without a model call or a media tool went; returns that time."""
    merged = union([(max(c.start, run.started), min(c.end, run.ended)) for c in calls])
    idle = run.wall - covered(merged, run.started, run.ended)
    print(f"\noutside model calls and media tools: {idle:.2f} s")
    explained: list[tuple[float, float]] = []
    for name, spans in sorted(phases.items(), key=lambda kv: min(kv[1])):
        total = sum(b - a for a, b in spans)
        free = sum(b - a - covered(merged, a, b) for a, b in spans)
        explained += spans
        print(f"  {name}: {total:.2f} s, {free:.2f} s of it without a model call")
    rest = run.wall - covered(union([*merged, *explained]), run.started, run.ended)
    print(f"  elsewhere (events, stores, steps' own work between calls): {rest:.2f} s")
    longest = sorted(gaps(merged, run.started, run.ended), key=lambda g: g[0] - g[1])[:SHOWN_GAPS]
    longest = [(a, b) for a, b in longest if b - a >= 0.01]
    print("  longest gaps: " + ", ".join(f"{b - a:.2f} s at {a - run.started:.1f} s" for a, b in longest))
    return idle


def main() -> None:
    from aima.reports.model import CaseReport

    os.environ.setdefault("AIMA_MODELS__TRANSCRIBER__THREADS", str(TRANSCRIBER_THREADS))
    video = media(SECONDS)
    seconds = duration(video)
    print(
        f"media: {video.name}, {seconds:.1f} s, {SIZE[0]}x{SIZE[1]} at {FPS} fps, "
        f"{video.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} cores, load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    recorder = Recorder()
    restore = instrument(recorder)
    work = Path(tempfile.mkdtemp(prefix="aima-bench-pipeline-"))
    try:
        run = analyse(video, work)
        if run.out is None or not (run.out / "report.json").is_file():
            raise SystemExit("pipeline benchmark: the analysis wrote no report\n" + "\n".join(run.echoed))
        report = CaseReport.model_validate_json((run.out / "report.json").read_bytes())
    finally:
        restore()
        shutil.rmtree(work, ignore_errors=True)
    for line in run.echoed:
        print("  | " + line)
    print(f"load average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    calls = [c for c in recorder.calls if run.started <= c.start <= run.ended]
    figures = per_step(calls, run)
    idle = outside(calls, recorder.phases, run)
    overhead = idle / run.wall
    wall_ratio = run.wall / seconds
    cores = os.cpu_count() or 1
    frames = sum(recorder.frames_sampled)
    per_frame = {
        s: figures[s].seconds / frames for s in ("ocr", "faces", "sensitivity", "pose") if s in figures
    }

    print(
        f"\nframes sampled by the probe: {frames} ({frames / seconds * 60:.0f} per minute); model seconds "
        f"per frame: {', '.join(f'{s} {v:.2f}' for s, v in per_frame.items())} "
        f"= {sum(per_frame.values()):.2f} s"
    )
    print(
        f"CPU time (process and children): {run.cpu:.1f} s "
        f"= {run.cpu / (run.wall * cores):.0%} of {cores} cores"
    )
    kinds: dict[str, int] = defaultdict(int)
    for entry in report.timeline:
        kinds[entry.kind] += 1
    steps = {s.step: s.status for f in report.files for s in f.steps}
    print(
        f"report: {len(report.persons)} person(s), {len(report.speakers)} speaker(s), {len(report.timeline)} "
        f"timeline entries ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}), "
        f"{len(report.indicators)} indicator(s); steps: {', '.join(f'{k} {v}' for k, v in steps.items())}"
    )
    print(f"wall time {run.wall:.1f} s for {seconds:.1f} s of media = {wall_ratio:.3f}x its duration")
    print(
        f"platform overhead: {idle:.2f} s without a model call or media tool "
        f"= {overhead:.1%} of the wall time"
    )
    if len(report.persons) < 1 or len(report.speakers) < 2:
        raise SystemExit(
            f"pipeline benchmark: the report has {len(report.persons)} person(s) and {len(report.speakers)} "
            "speaker(s); at least 1 and 2 were expected, so the run did not analyse the media"
        )

    checks = [
        check("wall_over_duration", wall_ratio, "<=", WALL_TARGET),
        check("platform_overhead", overhead, "<=", OVERHEAD_TARGET),
        check("report_persons", len(report.persons), ">=", 1),
        check("report_speakers", len(report.speakers), ">=", 2),
    ]
    print(json.dumps({"benchmark": "pipeline", "checks": checks}))


if __name__ == "__main__":
    main()
