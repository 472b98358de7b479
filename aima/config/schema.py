"""The runtime settings, section by section, as pydantic models with defaults and bounds.

A stored configuration version is always one whole section, validated by its model here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from aima.domain import Step

Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Analysis(_Section):
    """Which pipeline steps run, for which languages, and how densely video is sampled."""

    steps: list[Step] = Field(default_factory=lambda: list(Step), min_length=1)
    languages: list[Language] = Field(default_factory=lambda: ["de", "en"], min_length=1)
    force_language: Language | None = Field(
        default=None,
        description="transcribe every file in this language instead of detecting one per segment",
    )
    max_frames_per_minute: int = Field(default=60, ge=1, le=600)
    context_prompt: str | None = Field(
        default=None, max_length=4000, description="the analyst's context for the vision model"
    )


class Thresholds(_Section):
    """Minimum scores (0..1) for a match or finding to be reported, and for blurring sensitive frames."""

    face_match: Probability = 0.6
    speaker_match: Probability = 0.7
    indicator_min_confidence: Probability = 0.5
    sensitive_blur: Probability = 0.8


class Retention(_Section):
    """How long intermediate artefacts are kept; originals stay until their case is deleted."""

    intermediate_days: int = Field(default=30, ge=1)
    originals: Literal["until_case_deleted"] = "until_case_deleted"
    # leftovers the retention sweep removes (aima/storage/retention.py): ages far above any live use
    upload_session_hours: int = Field(default=7 * 24, ge=24)
    temporary_file_hours: int = Field(default=24, ge=1)
    probe_folder_hours: int = Field(default=48, ge=12)


class Limits(_Section):
    """Upload limits."""

    max_upload_bytes: int = Field(default=10 * 1024**3, ge=1)
    max_files_per_request: int = Field(default=20, ge=1, le=1000)
    max_duration_s: int = Field(default=4 * 3600, ge=1)


Rates = dict[str, Annotated[float, Field(ge=0.0)]]

CPU_RATES: dict[str, float] = {
    # seconds per unit of work on this project's 2-core reference machine, from the pipeline
    # benchmark's run of record (docs/benchmarks.md): wall time per step while steps share the cores
    "probe": 2.0,  # per file, plus the decode below
    "probe_media_s": 0.01,  # per second of media: ffmpeg's decode and frame sampling
    "transcribe": 0.28,  # per second of audio
    "speakers": 0.1,  # per second of audio
    "cues": 3.0,  # per file
    "faces": 0.46,  # per frame
    "persons": 0.2,  # per file
    "pose": 0.05,  # per frame
    "vision": 0.0,  # no vision-language model runs on a CPU here
    "ocr": 0.62,  # per frame
    "sensitivity": 0.35,  # per frame
    "fuse": 0.0,  # the report is built by fuse, outside the per-file steps: no step measures it
}


class GpuProfile(_Section):
    """A machine type jobs are estimated and billed for: its GPUs, price and measured throughput.

    ``seconds_per_unit`` is the measured model time per unit of each step's work (a second of
    audio, a frame, a file; see `aima.estimates`) on this machine type; ``gpu_steps`` are the steps
    that hold its GPUs, whose seconds count against a tenant's GPU-seconds per day and its cost.
    """

    gpu: str = Field(min_length=1, max_length=100)
    count: int = Field(ge=0, le=64)
    price_per_hour: float = Field(ge=0.0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    seconds_per_unit: Rates = Field(default_factory=lambda: dict(CPU_RATES))
    gpu_steps: list[str] = Field(default_factory=lambda: ["transcribe", "vision", "fuse"])


def _gpu_rates(speedup: float, vision: float) -> dict[str, float]:
    rates = {step: rate / speedup for step, rate in CPU_RATES.items()}
    rates["vision"] = vision
    return rates


class Gpu(_Section):
    """GPU profiles by name (the prices are list prices to start from; set your own)."""

    profiles: dict[str, GpuProfile] = Field(
        default_factory=lambda: {
            "cpu": GpuProfile(gpu="none", count=0, price_per_hour=0.0, gpu_steps=[]),
            "l4": GpuProfile(
                gpu="nvidia-l4", count=1, price_per_hour=0.8, seconds_per_unit=_gpu_rates(8.0, 1.2)
            ),
            "a100": GpuProfile(
                gpu="nvidia-a100-80gb", count=1, price_per_hour=3.5, seconds_per_unit=_gpu_rates(20.0, 0.5)
            ),
            "h100": GpuProfile(
                gpu="nvidia-h100-80gb", count=1, price_per_hour=6.5, seconds_per_unit=_gpu_rates(30.0, 0.3)
            ),
        }
    )


class Jobs(_Section):
    """How a tenant's jobs are queued, estimated, approved and bounded."""

    gpu_profile: str = Field(
        default="cpu", min_length=1, max_length=100, description="a name in gpu.profiles"
    )
    max_running: int = Field(default=2, ge=1, le=1000, description="jobs of the tenant admitted at once")
    gpu_seconds_per_day: float | None = Field(
        default=None, ge=0, description="estimated GPU-seconds the tenant's jobs may start per UTC day"
    )
    approval_above_cost: float | None = Field(
        default=None, ge=0, description="a job estimated to cost more waits for approval"
    )
    low_priority_hours: (
        tuple[Annotated[int, Field(ge=0, le=23)], Annotated[int, Field(ge=0, le=23)]] | None
    ) = Field(default=None, description="UTC hours [start, end) in which low-priority jobs are admitted")

    @model_validator(mode="after")
    def _a_window(self) -> Jobs:
        if self.low_priority_hours is not None and self.low_priority_hours[0] == self.low_priority_hours[1]:
            raise ValueError("low_priority_hours: start and end must differ (an empty window admits nothing)")
        return self

    parallel_files: int = Field(default=2, ge=1, le=1000, description="files analysed at once (wall time)")


def _no_phrases() -> dict[str, list[str]]:
    return {"de": [], "en": []}


class Phrases(_Section):
    """A tenant's own phrases that flag distress or coercion in transcripts, by language.

    The cues function matches each as an extra lexical cue on the words of segments in its language,
    in addition to its cue list (functions/cues/cues.yaml), which already covers the common pleas,
    calls for help and threats: the defaults are empty lists.
    """

    distress: dict[Language, list[Phrase]] = Field(default_factory=_no_phrases)
    coercion: dict[Language, list[Phrase]] = Field(default_factory=_no_phrases)


class RuntimeConfig(_Section):
    """Every section: what a tenant's code reads at run time."""

    analysis: Analysis = Field(default_factory=Analysis)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    retention: Retention = Field(default_factory=Retention)
    limits: Limits = Field(default_factory=Limits)
    gpu: Gpu = Field(default_factory=Gpu)
    jobs: Jobs = Field(default_factory=Jobs)
    phrases: Phrases = Field(default_factory=Phrases)


SECTIONS: dict[str, type[BaseModel]] = {
    "analysis": Analysis,
    "thresholds": Thresholds,
    "retention": Retention,
    "limits": Limits,
    "gpu": Gpu,
    "jobs": Jobs,
    "phrases": Phrases,
}
"""Section name (the configuration key) -> its model; the names match `RuntimeConfig`'s fields."""
