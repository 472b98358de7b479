"""The chart's KServe InferenceServices (charts/aima/templates/inference) and the model settings it
gives the functions, rendered offline with Helm's engine for the small and large profiles.

The values are the chart's own `inference` block (values.yaml) plus each test's changes. Every
InferenceService is validated against KServe's CRD (tests/deploy/kube.py); the functions'
AIMA_MODELS__* variables are read by AIMA's own settings and registry, so a wrong variable name or
backend fails here.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import helm_python as helm
import pytest
import yaml

from aima.model_settings import ModelTask
from aima.settings import load_settings
from inference.registry import check_models
from tests.deploy import kube
from tests.deploy.chart import CHART, find, render, values_of

EXAMPLE = CHART / "values.yaml"
NAMESPACE = "media"

Obj = dict[str, Any]

PROFILES: dict[str, dict[str, tuple[str, int]]] = {
    # model key -> (storage URI, GPUs)
    "small": {
        "vision": ("hf://llava-hf/llava-v1.6-mistral-7b-hf", 1),
        "narrator": ("hf://meta-llama/Llama-3.1-8B-Instruct", 1),
        "transcriber": ("hf://openai/whisper-large-v3-turbo", 1),
    },
    "large": {
        "vision": ("hf://llava-hf/llava-v1.6-34b-hf", 2),
        "narrator": ("hf://meta-llama/Llama-3.1-70B-Instruct", 4),
        "transcriber": ("hf://openai/whisper-large-v3", 1),
    },
}
ISVC = {
    "vision": "aima-llava",
    "narrator": "aima-llama",
    "transcriber": "aima-whisper",
    "embedder": "aima-embedder",
}
TASKS = {  # AIMA task -> (model key, backend, API path under the predictor's root)
    ModelTask.VISION_DESCRIBER: ("vision", "openai", "/openai/v1"),
    ModelTask.NARRATOR: ("narrator", "openai", "/openai/v1"),
    ModelTask.TRANSCRIBER: ("transcriber", "openai", "/v1"),
    ModelTask.TEXT_EMBEDDER: ("embedder", "kserve", ""),
}


def merged(base: Any, changes: Any) -> Any:
    """``changes`` deep-merged over ``base`` (maps merge, anything else replaces), as Helm merges values."""
    if isinstance(base, dict) and isinstance(changes, dict):
        out = dict(base)
        for key, value in changes.items():
            out[key] = merged(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(changes)


def example() -> dict[str, Any]:
    return {"inference": yaml.safe_load(EXAMPLE.read_text())["inference"]}


def values(**inference: Any) -> dict[str, Any]:
    """The example's inference block with ``inference`` merged over it (enabled unless told)."""
    return merged(example(), {"inference": {"enabled": True, **inference}})


def isvcs(objects: list[Obj]) -> dict[str, Obj]:
    found = {o["metadata"]["name"]: o for o in find(objects, "InferenceService")}
    for obj in found.values():
        assert obj["apiVersion"] == "serving.kserve.io/v1beta1"
    return found


def predictor_container(isvc: Obj) -> Obj:
    predictor = isvc["spec"]["predictor"]
    if "model" in predictor:
        return dict(predictor["model"])
    [container] = predictor["containers"]
    assert container["name"] == "kserve-container"
    return dict(container)


def env_of(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.mark.parametrize("profile", ["small", "large"])
def test_each_model_server_of_a_profile(profile: str) -> None:
    vals = values(profile=profile)
    objects = render(vals, namespace=NAMESPACE)
    found = isvcs(objects)
    assert sorted(found) == sorted(ISVC.values())
    block = vals["inference"]

    for obj in found.values():
        assert kube.validate(obj) == [], obj["metadata"]["name"]
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
        predictor = obj["spec"]["predictor"]
        assert predictor["minReplicas"] == 0  # scale to zero
        assert predictor["maxReplicas"] >= 1
        container = predictor_container(obj)
        assert container["securityContext"]["runAsNonRoot"] is True
        assert predictor["securityContext"]["runAsNonRoot"] is True

    for key, (storage_uri, gpus) in PROFILES[profile].items():
        obj = found[ISVC[key]]
        predictor = obj["spec"]["predictor"]
        container = predictor_container(obj)
        served = block["profiles"][profile][key]["servedModelName"]
        for side in ("limits", "requests"):
            assert container["resources"][side]["nvidia.com/gpu"] == gpus, (key, side)
        assert predictor["nodeSelector"] == block["gpu"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert predictor["tolerations"] == block["gpu"]["tolerations"]
        args = container["args"]
        if key == "transcriber":  # vLLM's own server: OpenAI audio routes, model from STORAGE_URI
            assert container["image"] == block["vllmImage"]
            assert container["command"] == ["vllm", "serve"]
            assert args[0] == "/mnt/models"
            assert f"--served-model-name={served}" in args
            assert "--port=8080" in args
            assert env_of(container)["STORAGE_URI"] == storage_uri
            assert ("--tensor-parallel-size=" + str(gpus) in args) == (gpus > 1)
        else:  # KServe's Hugging Face runtime with the vLLM backend
            assert container["modelFormat"] == {"name": "huggingface"}
            assert container["storageUri"] == storage_uri
            max_len = block["profiles"][profile][key]["maxModelLen"]
            assert args[:4] == [
                f"--model_name={served}",
                "--backend=vllm",
                f"--max_model_len={max_len}",
                f"--tensor-parallel-size={gpus}",
            ]

    embedder = found[ISVC["embedder"]]
    predictor = embedder["spec"]["predictor"]
    container = predictor_container(embedder)
    assert container["image"] == "aima-models:0.1.0"  # include "aima.image" ... "models"
    assert container["command"] == ["python", "-m", "inference.server"]
    assert "--model-name=minilm" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {p["httpGet"]["path"] for p in (container["readinessProbe"], container["livenessProbe"])} == {
        "/readyz",
        "/healthz",
    }
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert "nodeSelector" not in predictor
    assert "tolerations" not in predictor
    assert "STORAGE_URI" not in env_of(container)  # the MiniLM packaged in the image


def test_storage_uris_args_resources_and_gpus_come_from_values() -> None:
    objects = render(
        values(
            profile="large",
            serviceAccountName="aima-models",
            models={
                "narrator": {
                    "storageUri": "s3://acme-models/llama-3.1-70b-instruct-awq",
                    "args": ["--quantization=awq", "--gpu-memory-utilization=0.92"],
                    "gpus": 2,
                    "resources": {"limits": {"cpu": "12", "memory": "160Gi"}},
                },
                "transcriber": {"storageUri": "gs://acme-models/whisper", "args": ["--max-num-seqs=16"]},
                "embedder": {"storageUri": "s3://acme-models/multilingual-minilm"},
            },
            gpu={"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}},
            scaling={"maxReplicas": 3},
        ),
        namespace=NAMESPACE,
    )
    found = isvcs(objects)
    for obj in found.values():
        assert kube.validate(obj) == [], obj["metadata"]["name"]
    llama = found["aima-llama"]["spec"]["predictor"]
    model = llama["model"]
    assert model["storageUri"] == "s3://acme-models/llama-3.1-70b-instruct-awq"
    assert model["args"][-2:] == ["--quantization=awq", "--gpu-memory-utilization=0.92"]
    assert "--tensor-parallel-size=2" in model["args"]
    assert model["resources"]["limits"] == {"cpu": "12", "memory": "160Gi", "nvidia.com/gpu": 2}
    assert model["resources"]["requests"] == {"nvidia.com/gpu": 2}
    assert llama["serviceAccountName"] == "aima-models"
    assert llama["nodeSelector"] == {
        "nvidia.com/gpu.present": "true",  # maps merge, as Helm merges values
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
    }
    assert llama["maxReplicas"] == 3
    assert llama["minReplicas"] == 0
    whisper = predictor_container(found["aima-whisper"])
    assert env_of(whisper)["STORAGE_URI"] == "gs://acme-models/whisper"
    assert whisper["args"][-1] == "--max-num-seqs=16"
    embedder_env = env_of(predictor_container(found["aima-embedder"]))
    assert embedder_env["STORAGE_URI"] == "s3://acme-models/multilingual-minilm"
    assert embedder_env["AIMA_MODELS__TEXT_EMBEDDER__MODEL"] == "/mnt/models"
    assert found["aima-embedder"]["spec"]["predictor"]["maxReplicas"] == 4  # its own scaling wins


def test_no_inference_service_when_inference_is_disabled() -> None:
    assert isvcs(render(None)) == {}
    disabled = merged(example(), {"inference": {"enabled": False}})
    objects = render(disabled)
    assert isvcs(objects) == {}
    for service in _function_services(objects):
        assert not any(name.endswith(("__ENDPOINT", "__BACKEND")) for name in env_of(_container(service)))


def test_a_disabled_model_has_no_service_and_no_settings() -> None:
    objects = render(values(models={"vision": {"enabled": False}}))
    assert sorted(isvcs(objects)) == ["aima-embedder", "aima-llama", "aima-whisper"]
    services = _function_services(objects)
    assert services
    for service in services:
        env = env_of(_container(service))
        for field in ("BACKEND", "ENDPOINT", "MODEL", "TIMEOUT_SECONDS"):
            assert f"AIMA_MODELS__VISION_DESCRIBER__{field}" not in env
        assert env["AIMA_MODELS__NARRATOR__BACKEND"] == "openai"


@pytest.mark.parametrize("profile", ["small", "large"])
def test_the_functions_reach_the_rendered_model_servers(
    profile: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = render(values(profile=profile), namespace=NAMESPACE)
    found = isvcs(objects)
    services = _function_services(objects)
    assert services, "no function Services rendered"
    for service in services:
        env = env_of(_container(service))
        for task, (key, backend, path) in TASKS.items():
            prefix = f"AIMA_MODELS__{task.value.upper()}__"
            url = urlparse(env[prefix + "ENDPOINT"])
            isvc = ISVC[key]
            assert isvc in found
            assert url.scheme == "http"
            assert url.hostname == f"{isvc}-predictor.{NAMESPACE}.svc.cluster.local"
            assert url.path == path
            assert env[prefix + "BACKEND"] == backend
            served = _served_name(found[isvc])
            assert env[prefix + "MODEL"] == served, (task, served)

    # the variables are AIMA's: its settings read them and its registry knows the backends
    env = env_of(_container(services[0]))
    for name in list(os.environ):
        if name.startswith("AIMA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("AIMA_MODELS__"):
            monkeypatch.setenv(name, value)
    models = load_settings(data_dir=tmp_path).models
    check_models(models)
    assert models.vision_describer.backend == "openai"
    assert models.vision_describer.timeout_seconds == 600
    assert models.narrator.endpoint == f"http://aima-llama-predictor.{NAMESPACE}.svc.cluster.local/openai/v1"
    assert models.transcriber.options == {"word_timestamps": False}
    assert models.transcriber.endpoint == f"http://aima-whisper-predictor.{NAMESPACE}.svc.cluster.local/v1"
    assert models.text_embedder.backend == "kserve"
    assert models.text_embedder.model == "minilm"
    assert models.text_embedder.endpoint == f"http://aima-embedder-predictor.{NAMESPACE}.svc.cluster.local"


def test_the_small_gpu_values_file_renders_the_small_profile() -> None:
    vals = merged(example(), values_of("small-gpu"))
    assert vals["inference"]["enabled"] is True
    assert vals["inference"]["profile"] == "small"
    found = isvcs(render(vals))
    assert sorted(found) == sorted(ISVC.values())
    for key, (storage_uri, gpus) in PROFILES["small"].items():
        container = predictor_container(found[ISVC[key]])
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
        uri = container.get("storageUri") or env_of(container)["STORAGE_URI"]
        assert uri == storage_uri


def test_an_unknown_profile_is_refused_with_a_clear_message() -> None:
    with pytest.raises(helm.HelmError, match=r"inference[./]profile"):
        render(values(profile="medium"))


def test_configure_functions_knows_aimas_model_tasks() -> None:
    chart_tasks = re.search(
        r'\$tasks := list ((?:"[a-z_]+" ?)+)', (CHART / "templates/inference/_inference.tpl").read_text()
    )
    assert chart_tasks is not None
    assert re.findall(r'"([a-z_]+)"', chart_tasks.group(1)) == [task.value for task in ModelTask]
    with pytest.raises(helm.HelmError, match=r"configureFunctions\.vision: not an AIMA model task"):
        render(values(configureFunctions={"vision": {"model": "vision"}}))
    shorthand = render(values(configureFunctions={"vision_describer": "vision", "narrator": None}))
    env = env_of(_container(_function_services(shorthand)[0]))
    assert env["AIMA_MODELS__VISION_DESCRIBER__MODEL"] == "llava-v1.6-mistral-7b"
    assert "AIMA_MODELS__VISION_DESCRIBER__TIMEOUT_SECONDS" not in env
    assert "AIMA_MODELS__NARRATOR__ENDPOINT" not in env  # null drops a task


def _function_services(objects: list[Obj]) -> list[Obj]:
    return [
        o
        for o in find(objects, "Service")
        if o["apiVersion"].startswith("serving.knative.dev")
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "function"
    ]


def _container(service: Obj) -> Obj:
    [container] = service["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _served_name(isvc: Obj) -> str:
    container = predictor_container(isvc)
    for arg in container["args"]:
        for flag in ("--model_name=", "--served-model-name=", "--model-name="):
            if arg.startswith(flag):
                return str(arg.removeprefix(flag))
    raise AssertionError(f"{isvc['metadata']['name']}: no served model name in {container['args']}")
