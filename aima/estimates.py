"""What a job will cost before it runs: model time per step, wall time and price under a GPU profile.

Each step works on one kind of unit: a **file** (probe, cues, persons, fuse), a **second of audio**
(transcribe, speakers) or a **frame** (faces, pose, vision, ocr, sensitivity). A file's units come
from what the probe measured (its duration) or, before the probe ran, from its size and type (a
typical bitrate; the estimate says which: ``basis``). A video's frames are its duration at the
tenant's sampling ceiling (``analysis.max_frames_per_minute``); an image is one frame.

Model time is units times the profile's measured seconds per unit (`aima.config.schema.GpuProfile`)
times a calibration factor per step: the median of actual ÷ estimated over the last finished jobs
under the same profile (1 until some finished), so estimates learn from what jobs really used.
GPU-seconds are the model time of the profile's ``gpu_steps``, times its GPU count; the price is
GPU-seconds times its hourly price. Wall time is each file's longest chain (probe, then the audio chain
or the frame chain, whichever is longer, then fuse), over ``parallel_files`` files at once.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from aima.config.schema import GpuProfile
from aima.domain import Media, MediaKind

AUDIO_STEPS = ("transcribe", "speakers", "cues")
FRAME_STEPS = ("faces", "persons", "pose", "vision", "ocr", "sensitivity")
PER_AUDIO_SECOND = frozenset({"transcribe", "speakers"})
PER_FRAME = frozenset({"faces", "pose", "vision", "ocr", "sensitivity"})
STEP_FUNCTIONS = {"phrases": "cues", "report": "fuse"}
"""Configuration step names (`aima.domain.Step`) whose function has another name."""

_BYTES_PER_SECOND = {  # typical bitrates, for a duration before the probe measured one
    "audio/wav": 88_200.0,
    "audio/x-wav": 88_200.0,
    "audio/flac": 60_000.0,
    MediaKind.AUDIO.value: 16_000.0,  # compressed audio, ~128 kbit/s
    MediaKind.VIDEO.value: 400_000.0,  # phone video, ~3.2 Mbit/s
}


@dataclass(frozen=True)
class MediaFacts:
    """What is known about one file before (or after) its probe."""

    media_id: str
    kind: MediaKind | None
    size: int
    content_type: str = ""
    duration_s: float | None = None
    has_audio: bool | None = None

    @property
    def basis(self) -> str:
        return "probed" if self.duration_s is not None or self.kind is MediaKind.IMAGE else "size"

    def seconds(self) -> float:
        """The file's duration: measured, or guessed from its size and type."""
        if self.kind is MediaKind.IMAGE:
            return 0.0
        if self.duration_s is not None:
            return self.duration_s
        rate = _BYTES_PER_SECOND.get(self.content_type) or _BYTES_PER_SECOND.get(
            self.kind.value if self.kind else "", 100_000.0
        )
        return self.size / rate


def facts_of(media: Media) -> MediaFacts:
    """What the media row knows: kind, size, type, and the probe's duration once it ran."""
    meta = media.metadata or {}
    duration = meta.get("duration_s")
    audio = meta.get("has_audio")
    return MediaFacts(
        media_id=media.id,
        kind=media.kind,
        size=media.size,
        content_type=media.content_type,
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        has_audio=audio if isinstance(audio, bool) else None,
    )


def function_steps(steps: Iterable[str]) -> list[str]:
    """Configuration step names as the functions that run them."""
    return list(dict.fromkeys(STEP_FUNCTIONS.get(step, step) for step in steps))


def units(facts: MediaFacts, step: str, frames_per_minute: int) -> float | None:
    """The work ``step`` does on the file (None: the step does not run on this kind of file)."""
    kind = facts.kind
    seconds = facts.seconds()
    audio = kind is MediaKind.AUDIO or (kind is MediaKind.VIDEO and facts.has_audio is not False)
    frames = kind in (MediaKind.IMAGE, MediaKind.VIDEO)
    if step in AUDIO_STEPS and not audio:
        return None
    if step in FRAME_STEPS and not frames:
        return None
    if step in PER_AUDIO_SECOND:
        return seconds
    if step in PER_FRAME:
        return 1.0 if kind is MediaKind.IMAGE else max(1.0, seconds * frames_per_minute / 60.0)
    return 1.0


class StepCost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    units: float = Field(ge=0)
    model_s: float = Field(ge=0)
    gpu_s: float = Field(ge=0)
    cost: float = Field(ge=0)


class Estimate(BaseModel):
    """A job's expected (or, as ``actual``, measured) model time, wall time and price."""

    model_config = ConfigDict(extra="forbid")

    gpu_profile: str
    currency: str
    files: int = Field(ge=0)
    media_s: float = Field(ge=0, description="seconds of audio and video")
    basis: str = Field(description="probed (measured durations) or size (guessed from bytes)")
    per_step: dict[str, StepCost]
    model_s: float = Field(ge=0)
    gpu_s: float = Field(ge=0)
    wall_s: float = Field(ge=0)
    cost: float = Field(ge=0)
    factors: dict[str, float] = Field(
        default_factory=dict, description="the calibration factor each step's model time was multiplied by"
    )
    revised: Estimate | None = Field(
        default=None,
        description="the same estimate made again when the job ended, on the durations the probe measured "
        "(calibration learns from it, so a size-based guess of a duration does not skew the rates)",
    )


def estimate(
    media: Sequence[MediaFacts],
    steps: Iterable[str],
    profile_name: str,
    profile: GpuProfile,
    *,
    frames_per_minute: int = 60,
    parallel_files: int = 2,
    calibration: Mapping[str, float] | None = None,
) -> Estimate:
    """The estimate of running ``steps`` on ``media`` under ``profile`` (see module docstring)."""
    chosen = function_steps(steps)
    factors = calibration or {}
    per_step: dict[str, StepCost] = {}
    paths: list[float] = []
    for facts in media:
        chain = {"audio": 0.0, "frames": 0.0, "file": 0.0}
        for step in chosen:
            amount = units(facts, step, frames_per_minute)
            if amount is None:
                continue
            rate = profile.seconds_per_unit.get(step, 0.0) * factors.get(step, 1.0)
            seconds = amount * rate
            if step == "probe":
                seconds += facts.seconds() * profile.seconds_per_unit.get("probe_media_s", 0.0)
            _add(per_step, step, amount, seconds, profile)
            chain["audio" if step in AUDIO_STEPS else "frames" if step in FRAME_STEPS else "file"] += seconds
        paths.append(chain["file"] + max(chain["audio"], chain["frames"]))
    model_s = sum(c.model_s for c in per_step.values())
    gpu_s = sum(c.gpu_s for c in per_step.values())
    lanes = max(1, min(parallel_files, len(media) or 1))
    wall_s = max(max(paths, default=0.0), sum(paths) / lanes)
    return Estimate(
        gpu_profile=profile_name,
        currency=profile.currency,
        files=len(media),
        media_s=round(sum(f.seconds() for f in media), 3),
        basis="probed" if all(f.basis == "probed" for f in media) else "size",
        per_step=per_step,
        model_s=round(model_s, 3),
        gpu_s=round(gpu_s, 3),
        wall_s=round(wall_s, 3),
        cost=round(gpu_s * profile.price_per_hour / 3600.0, 6),
        factors={step: factors[step] for step in per_step if step in factors},
    )


def actual(
    seconds_by_step: Mapping[str, float],
    units_by_step: Mapping[str, float],
    profile_name: str,
    profile: GpuProfile,
    *,
    files: int,
    media_s: float,
    wall_s: float,
) -> Estimate:
    """What a finished job used, in the estimate's shape (seconds measured per step)."""
    per_step: dict[str, StepCost] = {}
    for step, seconds in seconds_by_step.items():
        _add(per_step, step, units_by_step.get(step, 0.0), seconds, profile)
    gpu_s = sum(c.gpu_s for c in per_step.values())
    return Estimate(
        gpu_profile=profile_name,
        currency=profile.currency,
        files=files,
        media_s=round(media_s, 3),
        basis="measured",
        per_step=per_step,
        model_s=round(sum(c.model_s for c in per_step.values()), 3),
        gpu_s=round(gpu_s, 3),
        wall_s=round(wall_s, 3),
        cost=round(gpu_s * profile.price_per_hour / 3600.0, 6),
    )


def calibration(pairs: Iterable[tuple[Estimate, Estimate]]) -> dict[str, float]:
    """Per step, the median over (estimate, actual) pairs of actual ÷ the uncalibrated estimate (the
    estimate divided by the factor it was calibrated with): the factor that would have been right."""
    ratios: dict[str, list[float]] = {}
    for upfront, act in pairs:
        est = upfront.revised or upfront
        for step, cost in est.per_step.items():
            used = act.per_step.get(step)
            if used is not None and cost.model_s > 0:
                ratios.setdefault(step, []).append(used.model_s * est.factors.get(step, 1.0) / cost.model_s)
    return {step: statistics.median(values) for step, values in ratios.items()}


def error(est: Estimate, act: Estimate) -> float | None:
    """|estimate - actual| ÷ actual of the model time (None when nothing was measured)."""
    if act.model_s <= 0:
        return None
    return abs(est.model_s - act.model_s) / act.model_s


def _add(
    per_step: dict[str, StepCost], step: str, amount: float, seconds: float, profile: GpuProfile
) -> None:
    gpu = seconds * profile.count if step in profile.gpu_steps else 0.0
    before = per_step.get(step) or StepCost(units=0, model_s=0, gpu_s=0, cost=0)
    per_step[step] = StepCost(
        units=round(before.units + amount, 3),
        model_s=round(before.model_s + seconds, 3),
        gpu_s=round(before.gpu_s + gpu, 3),
        cost=round(before.cost + gpu * profile.price_per_hour / 3600.0, 6),
    )
