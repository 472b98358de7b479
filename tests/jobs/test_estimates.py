"""Estimates before a job runs: units per kind of file, durations from the probe or from the size,
model time, GPU-seconds and price under a profile, wall time, calibration from finished jobs and the
error against what a job used."""

from __future__ import annotations

import pytest

from aima.config.schema import CPU_RATES, GpuProfile
from aima.domain import Media, MediaKind
from aima.estimates import (
    Estimate,
    MediaFacts,
    actual,
    calibration,
    error,
    estimate,
    facts_of,
    function_steps,
    units,
)

RATES = {"probe": 2.0, "probe_media_s": 0.01, "transcribe": 0.5, "faces": 0.1, "fuse": 3.0, "cues": 1.0}
PROFILE = GpuProfile(
    gpu="test-gpu", count=2, price_per_hour=36.0, seconds_per_unit=RATES, gpu_steps=["transcribe", "fuse"]
)

VIDEO = MediaFacts("v", MediaKind.VIDEO, 4_000_000, "video/mp4", duration_s=120.0)
SILENT = MediaFacts("s", MediaKind.VIDEO, 4_000_000, "video/mp4", duration_s=120.0, has_audio=False)
AUDIO = MediaFacts("a", MediaKind.AUDIO, 1_000_000, "audio/mpeg", duration_s=60.0)
IMAGE = MediaFacts("i", MediaKind.IMAGE, 300_000, "image/jpeg")


@pytest.mark.parametrize(
    ("facts", "step", "expected"),
    [
        (VIDEO, "probe", 1.0),  # per file
        (VIDEO, "fuse", 1.0),
        (VIDEO, "cues", 1.0),
        (VIDEO, "persons", 1.0),
        (VIDEO, "transcribe", 120.0),  # per second of audio
        (VIDEO, "speakers", 120.0),
        (VIDEO, "faces", 60.0),  # per frame: 120 s at 30 frames a minute
        (VIDEO, "sensitivity", 60.0),
        (SILENT, "transcribe", None),  # a video without sound has no audio steps
        (SILENT, "cues", None),
        (SILENT, "faces", 60.0),
        (AUDIO, "transcribe", 60.0),
        (AUDIO, "cues", 1.0),
        (AUDIO, "faces", None),  # audio has no frames
        (AUDIO, "persons", None),
        (IMAGE, "faces", 1.0),  # an image is one frame
        (IMAGE, "ocr", 1.0),
        (IMAGE, "transcribe", None),
        (IMAGE, "probe", 1.0),
        (MediaFacts("t", MediaKind.VIDEO, 10, "video/mp4", duration_s=0.5), "faces", 1.0),  # at least one
    ],
)
def test_units_per_kind_of_file(facts: MediaFacts, step: str, expected: float | None) -> None:
    """Each step counts files, seconds of audio or frames (at the tenant's ceiling), and is None for a
    kind of file it does not run on."""
    assert units(facts, step, frames_per_minute=30) == expected


@pytest.mark.parametrize(
    ("facts", "seconds", "basis"),
    [
        (MediaFacts("m", MediaKind.AUDIO, 882_000, "audio/wav"), 10.0, "size"),  # 88.2 kB/s
        (MediaFacts("m", MediaKind.AUDIO, 600_000, "audio/flac"), 10.0, "size"),
        (MediaFacts("m", MediaKind.AUDIO, 160_000, "audio/mpeg"), 10.0, "size"),  # compressed audio
        (MediaFacts("m", MediaKind.VIDEO, 4_000_000, "video/mp4"), 10.0, "size"),  # phone video
        (MediaFacts("m", None, 1_000_000, "application/octet-stream"), 10.0, "size"),  # unknown: 100 kB/s
        (MediaFacts("m", MediaKind.VIDEO, 4_000_000, "video/mp4", duration_s=33.0), 33.0, "probed"),
        (MediaFacts("m", MediaKind.IMAGE, 4_000_000, "image/png"), 0.0, "probed"),
    ],
)
def test_durations_are_measured_or_guessed_from_the_size(
    facts: MediaFacts, seconds: float, basis: str
) -> None:
    """Before the probe a duration comes from the size at a typical bitrate (basis ``size``); the
    probe's duration wins once known (``probed``); an image lasts nothing."""
    assert facts.seconds() == pytest.approx(seconds)
    assert facts.basis == basis


def test_facts_of_a_media_row_read_the_probes_metadata() -> None:
    """facts_of: kind, size and type from the row; duration and audio from the probe's metadata,
    ignored when they are not numbers and booleans."""
    row = Media(
        tenant_id="t",
        case_id="c",
        sha256="a" * 64,
        size=5,
        content_type="video/mp4",
        kind=MediaKind.VIDEO,
        object_key="k",
        metadata={"duration_s": 12, "has_audio": False},
    )
    facts = facts_of(row)
    assert (facts.kind, facts.size, facts.duration_s, facts.has_audio) == (MediaKind.VIDEO, 5, 12.0, False)
    odd = facts_of(row.model_copy(update={"metadata": {"duration_s": "long", "has_audio": "yes"}}))
    assert (odd.duration_s, odd.has_audio, odd.basis) == (None, None, "size")


def test_step_names_map_to_their_functions() -> None:
    """phrases run in cues and the report in fuse; each function once."""
    assert function_steps(["probe", "phrases", "cues", "report", "fuse"]) == ["probe", "cues", "fuse"]


def test_model_time_gpu_seconds_and_price_under_a_profile() -> None:
    """Model time is units x seconds per unit (the probe plus its decode per media second); GPU-seconds
    count only the profile's GPU steps, times its GPUs; the price is GPU-hours x the hourly price."""
    est = estimate(
        [VIDEO, AUDIO], ["probe", "transcribe", "faces", "fuse"], "test", PROFILE, frames_per_minute=30
    )

    per = est.per_step
    assert per["probe"].model_s == pytest.approx(2 * 2.0 + (120 + 60) * 0.01)
    assert per["transcribe"].units == 180.0
    assert per["transcribe"].model_s == pytest.approx(90.0)
    assert per["faces"].units == 60.0  # the audio file has no frames
    assert per["faces"].model_s == pytest.approx(6.0)
    assert per["fuse"].model_s == pytest.approx(6.0)
    assert est.model_s == pytest.approx(4 + 1.8 + 90 + 6 + 6)
    assert per["faces"].gpu_s == 0.0
    assert per["transcribe"].gpu_s == pytest.approx(180.0)  # two GPUs
    assert est.gpu_s == pytest.approx((90 + 6) * 2)
    assert est.cost == pytest.approx(est.gpu_s * 36.0 / 3600)
    assert per["transcribe"].cost == pytest.approx(1.8)
    assert (est.gpu_profile, est.currency, est.files, est.media_s, est.basis) == (
        "test",
        "USD",
        2,
        180.0,
        "probed",
    )


def test_a_cpu_profile_costs_nothing() -> None:
    """The default CPU profile holds no GPU: no GPU-seconds, no price, still model time."""
    cpu = GpuProfile(gpu="none", count=0, price_per_hour=0.0, gpu_steps=[])
    est = estimate([VIDEO], ["probe", "transcribe", "faces", "fuse"], "cpu", cpu)
    assert (est.gpu_s, est.cost) == (0.0, 0.0)
    assert est.per_step["transcribe"].model_s == pytest.approx(120 * CPU_RATES["transcribe"])


def test_wall_time_is_the_longest_chain_over_parallel_files() -> None:
    """Per file: its file steps plus the longer of the audio and the frame chain; files run
    ``parallel_files`` at once, and one long file bounds the whole job."""
    rates = {"probe": 1.0, "transcribe": 1.0, "faces": 0.5, "fuse": 2.0}
    profile = GpuProfile(gpu="g", count=1, price_per_hour=0.0, seconds_per_unit=rates, gpu_steps=[])
    file = MediaFacts("m", MediaKind.VIDEO, 1, "video/mp4", duration_s=10.0)  # audio 10 s, frames 5 s
    steps = ["probe", "transcribe", "faces", "fuse"]
    one = estimate([file], steps, "g", profile, frames_per_minute=60)
    assert one.wall_s == pytest.approx(1 + 10 + 2)
    four = estimate([file] * 4, steps, "g", profile, frames_per_minute=60, parallel_files=2)
    assert four.wall_s == pytest.approx(13 * 4 / 2)
    long = MediaFacts("l", MediaKind.VIDEO, 1, "video/mp4", duration_s=100.0)
    mixed = estimate([long, file, file], steps, "g", profile, frames_per_minute=60, parallel_files=3)
    assert mixed.wall_s == pytest.approx(1 + 100 + 2)
    assert estimate([], steps, "g", profile).wall_s == 0.0


def test_a_size_based_file_makes_the_whole_estimate_size_based() -> None:
    """basis is ``probed`` only when every file's duration was measured."""
    guessed = MediaFacts("g", MediaKind.VIDEO, 4_000_000, "video/mp4")
    assert estimate([VIDEO, guessed], ["probe"], "test", PROFILE).basis == "size"
    assert estimate([VIDEO, IMAGE], ["probe"], "test", PROFILE).basis == "probed"


def _with_model_s(**model_s: float) -> Estimate:
    per = {step: {"units": 1.0, "model_s": s, "gpu_s": 0.0, "cost": 0.0} for step, s in model_s.items()}
    return Estimate.model_validate(
        {
            "gpu_profile": "test",
            "currency": "USD",
            "files": 1,
            "media_s": 0.0,
            "basis": "probed",
            "per_step": per,
            "model_s": sum(model_s.values()),
            "gpu_s": 0.0,
            "wall_s": 0.0,
            "cost": 0.0,
        }
    )


def test_calibration_is_the_median_of_actual_over_estimated_per_step() -> None:
    """Per step, the median of actual / estimated model time; steps estimated at zero or not measured
    are left out (no factor: 1)."""
    pairs = [
        (_with_model_s(transcribe=10, faces=5, fuse=0), _with_model_s(transcribe=10, faces=50, fuse=3)),
        (_with_model_s(transcribe=10, faces=5), _with_model_s(transcribe=20, faces=5)),
        (_with_model_s(transcribe=10, faces=5, ocr=4), _with_model_s(transcribe=40, faces=10)),
    ]
    assert calibration(pairs) == {"transcribe": 2.0, "faces": 2.0}
    assert calibration([]) == {}


def test_a_calibration_factor_scales_its_steps_model_time() -> None:
    """A factor of 2 doubles that step's model time, GPU-seconds and price; others are untouched."""
    plain = estimate([AUDIO], ["transcribe", "fuse"], "test", PROFILE)
    calibrated = estimate([AUDIO], ["transcribe", "fuse"], "test", PROFILE, calibration={"transcribe": 2.0})
    assert calibrated.per_step["transcribe"].model_s == pytest.approx(
        2 * plain.per_step["transcribe"].model_s
    )
    assert calibrated.per_step["transcribe"].gpu_s == pytest.approx(2 * plain.per_step["transcribe"].gpu_s)
    assert calibrated.per_step["fuse"] == plain.per_step["fuse"]


def test_what_a_job_used_has_the_estimates_shape() -> None:
    """actual: measured seconds per step, GPU-seconds of the GPU steps times the GPUs, the price."""
    used = actual(
        {"transcribe": 30.0, "faces": 10.0},
        {"transcribe": 60.0, "faces": 20.0},
        "test",
        PROFILE,
        files=1,
        media_s=60.0,
        wall_s=45.0,
    )
    assert used.basis == "measured"
    assert (used.model_s, used.gpu_s, used.wall_s) == (40.0, 60.0, 45.0)
    assert used.cost == pytest.approx(60.0 * 36.0 / 3600)
    assert used.per_step["faces"].units == 20.0


def test_error_is_relative_to_what_was_used() -> None:
    """error = |estimate - actual| / actual of the model time; None when nothing was measured."""
    assert error(_with_model_s(a=8.0), _with_model_s(a=10.0)) == pytest.approx(0.2)
    assert error(_with_model_s(a=15.0), _with_model_s(a=10.0)) == pytest.approx(0.5)
    assert error(_with_model_s(a=15.0), _with_model_s(a=0.0)) is None


def test_estimates_learn_a_steps_true_speed_from_finished_jobs() -> None:
    """The scheduler's loop (functions/scheduler/core.py): each job is estimated with the calibration
    of the finished (estimate, actual) pairs so far, then runs and stores what it used. A step that
    really takes twice its profile's rate must end up estimated at that: after a few jobs the error
    is small."""
    pairs: list[tuple[Estimate, Estimate]] = []
    errors = []
    for _ in range(12):
        est = estimate([AUDIO], ["transcribe"], "test", PROFILE, calibration=calibration(pairs))
        truth = 2 * AUDIO.seconds() * RATES["transcribe"]  # the machine is twice as slow as its rate says
        used = actual(
            {"transcribe": truth}, {"transcribe": 60.0}, "test", PROFILE, files=1, media_s=60, wall_s=truth
        )
        errors.append(error(est, used))
        pairs.append((est, used))
    assert errors[0] == pytest.approx(0.5)
    assert errors[-1] is not None
    assert errors[-1] < 0.05, errors
