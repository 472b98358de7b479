"""The KServe v2 text embedder against a fake v2 server that checks typed tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from aima.model_settings import TextEmbedderSettings
from aima.settings import load_settings
from aima.telemetry.health import HealthRegistry
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable
from inference.pool import ModelPool
from inference.remote.kserve import KServeTextEmbedder, Tensor
from inference.tasks import TextEmbedder, TextsInput
from tests.inference.fakes import FakeKServe, Reply, serve, vector_for


def embedder(fake: FakeKServe, **settings: Any) -> KServeTextEmbedder:
    block = TextEmbedderSettings.model_validate(
        {"backend": "kserve", "endpoint": "http://kserve.test", "model": fake.model} | settings
    )
    model = KServeTextEmbedder(block)
    model.transport = fake.transport
    return model


def test_texts_go_as_a_bytes_tensor_and_come_back_as_fp32_rows() -> None:
    fake = FakeKServe(dimension=6)
    model = embedder(fake, batch_size=3)
    texts = ["one", "two", "three", "four"]
    vectors = model.predict(TextsInput(texts=texts)).vectors
    assert vectors == [vector_for(t, 6) for t in texts]  # JSON keeps float64 exact
    assert model.dimension == 6  # read from the model's metadata while loading
    routes = [(r.method, r.url.path) for r in fake.requests]
    assert routes == [
        ("GET", "/v2/models/minilm/ready"),
        ("GET", "/v2/models/minilm"),
        ("POST", "/v2/models/minilm/infer"),
        ("POST", "/v2/models/minilm/infer"),
    ]
    first = fake.bodies[0]
    assert first["inputs"] == [
        {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["one", "two", "three"]}
    ]
    assert first["outputs"] == [{"name": "embedding"}]
    assert isinstance(first["id"], str)
    assert fake.bodies[1]["inputs"][0]["shape"] == [1]


def test_versioned_model_path_and_custom_tensor_names() -> None:
    fake = FakeKServe()
    seen: list[str] = []

    def record(request: httpx.Request) -> Reply | None:
        seen.append(request.url.path)
        return Reply(200, {"name": "minilm", "ready": True})

    fake.override = record
    model = embedder(fake, options={"version": "2", "input_name": "q", "output_name": "vec"})
    model.ready()
    assert seen == ["/v2/models/minilm/versions/2/ready"]
    assert (model.input_name, model.output_name) == ("q", "vec")


def test_unknown_dimension_in_metadata_is_probed_and_a_mismatch_refused() -> None:
    fake = FakeKServe(dimension=5, metadata_shape=[-1, -1])
    model = embedder(fake)
    assert model.dimension == 5
    assert fake.bodies[0]["inputs"][0]["data"] == ["dimension probe"]
    with pytest.raises(ModelNotConfigured, match="gives 5-d vectors"):
        embedder(FakeKServe(dimension=5), dimension=384).load()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ({"model_name": "minilm", "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [1, 4],
                                                "data": [0.1, 0.2]}]}, "2 values for shape"),
        ({"model_name": "minilm", "outputs": [{"name": "embedding", "datatype": "BYTES", "shape": [1, 2],
                                                "data": ["a", "b"]}]}, "expected floats"),
        ({"model_name": "minilm", "outputs": [{"name": "other", "datatype": "FP32", "shape": [1, 1],
                                                "data": [1.0]}]}, "lacks output tensors"),
        ({"model_name": "minilm", "id": "someone-else", "outputs": []}, "infer answer for request"),
        ({"outputs": []}, "model_name"),
    ],
)  # fmt: skip
def test_malformed_infer_answers_are_invalid_output(answer: dict[str, Any], match: str) -> None:
    fake = FakeKServe(dimension=4)
    model = embedder(fake, dimension=4)
    model.load()
    fake.override = lambda request: Reply(200, answer) if request.url.path.endswith("/infer") else None
    with pytest.raises(InvalidModelOutput, match=match):
        model.predict(TextsInput(texts=["a"]))


def test_tensors_are_checked_before_they_are_sent() -> None:
    with pytest.raises(ValueError, match="values for shape"):
        Tensor(name="text", shape=[2], datatype="BYTES", data=["only one"])
    with pytest.raises(ValueError, match="not all BYTES"):
        Tensor(name="text", shape=[1], datatype="BYTES", data=[3])
    nested = Tensor(name="x", shape=[2, 2], datatype="FP32", data=[[1, 2], [3, 4]])
    assert nested.data == [1, 2, 3, 4]


def test_the_fake_refuses_a_malformed_request() -> None:
    fake = FakeKServe(dimension=4)
    model = embedder(fake, dimension=4)
    model.load()
    bad = Tensor.model_construct(name="text", shape=[3], datatype="BYTES", data=["a"])  # skips validation
    with pytest.raises(InvalidModelOutput, match=r"1 values for shape \[3\]"):
        model.infer([bad], ["embedding"])


def test_readiness_and_failures() -> None:
    fake = FakeKServe(dimension=4)
    model = embedder(fake, dimension=4)
    assert model.health().state == "not_loaded"
    fake.ready = False
    status = model.health()
    assert status.state == "down"
    assert "not ready" in (status.error or "")
    with pytest.raises(ModelUnavailable, match="not ready"):
        model.load()
    fake.ready = True
    missing = embedder(fake, model="nope", dimension=4)
    assert missing.health().state == "not_configured"
    with pytest.raises(ModelNotConfigured):
        missing.predict(TextsInput(texts=["a"]))
    fake.override = lambda request: Reply(500, {"error": "boom"})
    with pytest.raises(ModelUnavailable, match="HTTP 500"):
        model.predict(TextsInput(texts=["a"]))


async def test_over_real_http_on_loopback_with_readiness(tmp_path: Path) -> None:
    fake = FakeKServe(dimension=8)
    with serve(fake) as base:
        settings = load_settings(
            data_dir=tmp_path,
            models={"text_embedder": {"backend": "kserve", "endpoint": base, "model": "minilm"}},
        )
        pool = ModelPool.from_settings(settings)
        health = HealthRegistry(timeout=5.0, cache_seconds=0)
        for name, check in pool.readiness_checks(["text_embedder", "narrator"]).items():
            health.add(name, check)
        report = await health.report()
        assert list(report.components) == ["model:text_embedder"]
        assert report.components["model:text_embedder"].status == "up"
        model = pool.get(TextEmbedder)
        vectors = (await model.apredict(TextsInput(texts=["a", "b"]))).vectors
        assert vectors == [vector_for("a", 8), vector_for("b", 8)]
        assert model.dimension == 8
    report = await health.report()
    assert report.components["model:text_embedder"].status == "down"
    assert not report.ready
    pool.close()
