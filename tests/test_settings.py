"""Settings: profiles fill or require addresses; a bad value fails with one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aima.settings import SettingsError, load_settings


def test_embedded_profile_fills_every_address_under_data_dir(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.profile == "embedded"
    assert s.database_url == f"sqlite:///{tmp_path / 'aima.db'}"
    assert s.object_store == "local"
    assert s.objects_path == tmp_path / "objects"
    assert s.vector_uri == str(tmp_path / "vectors.db")
    assert s.documents_uri == f"litemongo://{(tmp_path / 'documents').absolute()}"
    assert (s.cache_url, s.bus) == ("memory://", "memory")
    secret = s.key_encryption_secret
    assert secret is not None
    assert len(secret.get_secret_value()) >= 32
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_settings(data_dir=tmp_path).key_encryption_secret == secret  # kept, not regenerated


def test_cluster_profile_requires_addresses() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(profile="cluster")
    assert err.value.setting == "AIMA_DATABASE_URL"
    full = dict(
        profile="cluster",
        database_url="postgresql://u@db/aima",
        vector_uri="http://milvus:19530",
        documents_uri="mongodb://mongo:27017",
        cache_url="redis://redis:6379/0",
        key_encryption_secret="k" * 32,
    )
    s = load_settings(**full)
    assert s.database_url == "postgresql+psycopg://u@db/aima"
    assert (s.object_store, s.bus) == ("s3", "nats")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIMA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIMA_BUS_MAX_DELIVER", "7")
    monkeypatch.setenv("AIMA_BUS_BACKOFF", "[0.1, 1]")
    s = load_settings()
    assert (s.data_dir, s.bus_max_deliver, s.bus_backoff) == (tmp_path, 7, [0.1, 1.0])


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"AIMA_PROFILE": "laptop"}, "AIMA_PROFILE"),
        ({"AIMA_DATABASE_URL": "mysql://x"}, "AIMA_DATABASE_URL"),
        ({"AIMA_CACHE_URL": "memcached://x"}, "AIMA_CACHE_URL"),
        ({"AIMA_BUS_MAX_DELIVER": "0"}, "AIMA_BUS_MAX_DELIVER"),
        ({"AIMA_NATS_URL": "http://x"}, "AIMA_NATS_URL"),
        ({"AIMA_PROFILE": "cluster", "AIMA_DATABASE_URL": "postgresql://x/y"}, "AIMA_VECTOR_URI"),
    ],
)
def test_bad_setting_names_itself(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], setting: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert err.value.setting == setting
    assert "\n" not in str(err.value)


def test_cli_fails_at_start_up_with_one_line(tmp_path: Path) -> None:
    env = {"AIMA_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "aima.cli", "health"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aima: invalid setting AIMA_DATABASE_URL:")
