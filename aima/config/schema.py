"""The runtime settings, section by section, as pydantic models with defaults and bounds.

A stored configuration version is always one whole section, validated by its model here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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


class GpuProfile(_Section):
    """A GPU machine type the scheduler may request, with its (estimated) hourly price."""

    gpu: str = Field(min_length=1, max_length=100)
    count: int = Field(ge=1, le=64)
    price_per_hour: float = Field(ge=0.0)


class Gpu(_Section):
    """GPU profiles by name."""

    profiles: dict[str, GpuProfile] = Field(
        default_factory=lambda: {
            "standard": GpuProfile(gpu="nvidia-l4", count=1, price_per_hour=0.8),
            "large": GpuProfile(gpu="nvidia-a100-80gb", count=1, price_per_hour=3.5),
        }
    )


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
    phrases: Phrases = Field(default_factory=Phrases)


SECTIONS: dict[str, type[BaseModel]] = {
    "analysis": Analysis,
    "thresholds": Thresholds,
    "retention": Retention,
    "limits": Limits,
    "gpu": Gpu,
    "phrases": Phrases,
}
"""Section name (the configuration key) -> its model; the names match `RuntimeConfig`'s fields."""
