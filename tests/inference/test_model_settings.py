"""Model settings: one nested block per task from AIMA_MODELS__<TASK>__<FIELD>; bad values name themselves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aima.model_settings import ModelsSettings, ModelTask, model_env
from aima.settings import SettingsError, load_settings
from inference.registry import check_models

CPU_DEFAULTS = {
    ModelTask.SPEECH_DETECTOR: "silero",
    ModelTask.TRANSCRIBER: "faster-whisper",
    ModelTask.VOICE_EMBEDDER: "resemblyzer",
    ModelTask.TEXT_EMBEDDER: "sentence-transformers",
    ModelTask.OCR: "tesseract",
    ModelTask.FACE_ANALYZER: "dlib",
    ModelTask.POSE_ESTIMATOR: "mediapipe",
    ModelTask.SENSITIVITY_SCORER: "open-nsfw",
}


def test_defaults_are_the_cpu_backends_or_none_with_one_thread_per_model(tmp_path: Path) -> None:
    models = load_settings(data_dir=tmp_path).models
    assert set(models.configured()) == set(CPU_DEFAULTS)
    for task in ModelTask:
        block = models.for_task(task)
        backend = CPU_DEFAULTS.get(task, "none")
        assert (block.backend, block.threads, block.max_workers, block.device) == (backend, 1, 1, "cpu")
        assert block.configured == (task in CPU_DEFAULTS)
    assert (models.transcriber.model, models.text_embedder.model) == ("base", "all-MiniLM-L6-v2")
    assert models.text_embedder.batch_size == 32  # task-specific defaults survive a partial override


def test_nested_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIMA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__BACKEND", "openai")
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__ENDPOINT", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__MODEL", "gemma3-270m")
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__API_KEY", "s3cret-key")
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__OPTIONS", '{"temperature": 0.2}')
    monkeypatch.setenv("AIMA_MODELS__TEXT_EMBEDDER__THREADS", "2")
    monkeypatch.setenv("AIMA_MODELS__TRANSCRIBER__LANGUAGE", "de")
    models = load_settings().models
    narrator = models.narrator
    assert (narrator.backend, narrator.endpoint, narrator.model) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        "gemma3-270m",
    )
    assert narrator.api_key is not None
    assert narrator.api_key.get_secret_value() == "s3cret-key"
    assert "s3cret" not in repr(models)
    assert "s3cret" not in str(models.model_dump())
    assert narrator.options == {"temperature": 0.2}
    assert narrator.remote
    assert narrator.max_workers == 4
    assert (models.text_embedder.threads, models.text_embedder.batch_size) == (2, 32)
    assert models.transcriber.language == "de"
    assert set(models.configured()) == {*CPU_DEFAULTS, ModelTask.NARRATOR}


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"AIMA_MODELS__TRANSCRIBER__THREADS": "0"}, "AIMA_MODELS__TRANSCRIBER__THREADS"),
        ({"AIMA_MODELS__TRANSCRIBER__THREADS": "many"}, "AIMA_MODELS__TRANSCRIBER__THREADS"),
        ({"AIMA_MODELS__FACE_ANALYZER__DEVICE": "tpu"}, "AIMA_MODELS__FACE_ANALYZER__DEVICE"),
        ({"AIMA_MODELS__TEXT_EMBEDDER__DIMENSION": "-3"}, "AIMA_MODELS__TEXT_EMBEDDER__DIMENSION"),
        ({"AIMA_MODELS__NARRATOR__BACKEND": "Open AI"}, "AIMA_MODELS__NARRATOR__BACKEND"),
        ({"AIMA_MODELS__NARRATOR__ENDPOINT": "ftp://x"}, "AIMA_MODELS__NARRATOR__ENDPOINT"),
        ({"AIMA_MODELS__NARRATOR__IDLE_UNLOAD_SECONDS": "-1"}, "AIMA_MODELS__NARRATOR__IDLE_UNLOAD_SECONDS"),
        ({"AIMA_MODELS__NARRATOR__OPTIONS": "{not json"}, "AIMA_MODELS__NARRATOR__OPTIONS"),
        ({"AIMA_MODELS__TRANSCRIBR__BACKEND": "x"}, "AIMA_MODELS__TRANSCRIBR"),
        ({"AIMA_MODELS__TRANSCRIBER__THREAD": "2"}, "AIMA_MODELS__TRANSCRIBER__THREAD"),
        (  # a remote backend needs its model name and endpoint
            {"AIMA_MODELS__NARRATOR__BACKEND": "openai", "AIMA_MODELS__NARRATOR__ENDPOINT": "http://x/v1"},
            "AIMA_MODELS__NARRATOR__MODEL",
        ),
        (
            {"AIMA_MODELS__TEXT_EMBEDDER__BACKEND": "kserve", "AIMA_MODELS__TEXT_EMBEDDER__MODEL": "m"},
            "AIMA_MODELS__TEXT_EMBEDDER__ENDPOINT",
        ),
        ({"AIMA_BUS_BACKOFF": '[1, "x"]'}, "AIMA_BUS_BACKOFF"),  # list items still name their field
        ({"AIMA_OIDC_ROLE_MAP": '{"a": 1}'}, "AIMA_OIDC_ROLE_MAP"),  # so do dict keys
    ],
)
def test_bad_model_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], setting: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert err.value.setting == setting
    assert "\n" not in str(err.value)


def test_unknown_backend_is_refused_at_start_up_naming_the_variable() -> None:
    models = ModelsSettings.model_validate({"transcriber": {"backend": "whisper-on-mars"}})
    with pytest.raises(SettingsError) as err:
        check_models(models)
    assert err.value.setting == "AIMA_MODELS__TRANSCRIBER__BACKEND"
    assert "whisper-on-mars" in err.value.reason
    assert "none" in err.value.reason
    check_models(ModelsSettings())  # nothing configured: fine
    check_models(models, [ModelTask.NARRATOR])  # only the tasks asked about


def test_model_env_names_the_variable() -> None:
    assert model_env(ModelTask.VOICE_EMBEDDER, "threads") == "AIMA_MODELS__VOICE_EMBEDDER__THREADS"


def test_cli_fails_with_one_line_naming_the_nested_variable(tmp_path: Path) -> None:
    env = {"AIMA_MODELS__TRANSCRIBER__THREADS": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "aima.cli", "health"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aima: invalid setting AIMA_MODELS__TRANSCRIBER__THREADS:")
