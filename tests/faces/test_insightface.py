"""The optional insightface backend: selected by settings, never downloading a pack."""

from __future__ import annotations

from pathlib import Path

import pytest

from aima.model_settings import FaceAnalyzerSettings, ModelsSettings
from inference.cpu.insightface import InsightFaceAnalyzer, pack_root
from inference.errors import ModelNotConfigured
from inference.pool import ModelPool
from inference.tasks.vision import FaceAnalyzer, FaceInput


def test_it_is_chosen_by_settings_and_a_missing_pack_is_not_configured(tmp_path: Path) -> None:
    settings = FaceAnalyzerSettings(backend="insightface", model="buffalo_l", options={"root": str(tmp_path)})
    model = ModelPool(ModelsSettings(face_analyzer=settings)).get(FaceAnalyzer)
    assert isinstance(model, InsightFaceAnalyzer)
    health = model.health()
    assert health.state == "not_configured"
    assert health.error is not None
    assert str(tmp_path / "models" / "buffalo_l") in health.error
    with pytest.raises(ModelNotConfigured, match="never downloaded"):
        model.predict(FaceInput(path=tmp_path / "x.jpg"))
    assert not any(tmp_path.iterdir())  # nothing was fetched


def test_with_a_pack_but_no_package_it_names_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)
    model = InsightFaceAnalyzer(
        FaceAnalyzerSettings(backend="insightface", model="buffalo_l", options={"root": str(tmp_path)})
    )
    try:
        import insightface  # noqa: F401
    except ImportError:
        with pytest.raises(ModelNotConfigured, match="insightface"):
            model.load()
    else:  # pragma: no cover - a machine with insightface installed
        pytest.skip("insightface is installed here")


def test_the_pack_root_follows_the_option_then_the_model_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMA_MODEL_DIR", "/srv/models")
    assert pack_root({}) == Path("/srv/models/insightface")
    assert pack_root({"root": "/data/packs"}) == Path("/data/packs")
    monkeypatch.delenv("AIMA_MODEL_DIR")
    assert pack_root({}) == Path.home() / ".insightface"
