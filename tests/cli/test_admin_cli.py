"""The admin commands, end to end through the real entry point, on both profiles' databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from aima.storage.relational import Database
from aima.storage.schema import cases

PASSWORD = "correct horse battery staple"


def aima(env: dict[str, str], *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AIMA_")} | env
    if password is not None:
        full["AIMA_NEW_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "aima.cli", *args], env=full, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def cluster_env(tmp_path: Path, private_pg_database: str, redis_url: str) -> dict[str, str]:
    """The cluster profile on the real PostgreSQL and Redis (files stand in only for S3/Milvus/Mongo)."""
    return {
        "AIMA_PROFILE": "cluster",
        "AIMA_DATABASE_URL": private_pg_database,
        "AIMA_CACHE_URL": redis_url,
        "AIMA_OBJECT_STORE": "local",
        "AIMA_OBJECTS_PATH": str(tmp_path / "objects"),
        "AIMA_VECTOR_URI": str(tmp_path / "vectors.db"),
        "AIMA_DOCUMENTS_URI": f"litemongo://{tmp_path / 'documents'}",
        "AIMA_KEY_ENCRYPTION_SECRET": "s" * 40,
        "AIMA_BUS": "memory",
    }


def test_first_admin_users_sharing_audit_and_config_on_postgres(cluster_env: dict[str, str]) -> None:
    env = cluster_env
    weak = aima(env, "user", "add", "root", "--admin", password="short")
    assert weak.returncode == 1
    assert weak.stderr.count("\n") == 1
    assert "12" in weak.stderr
    first = aima(env, "user", "add", "root", "--admin", password=PASSWORD)
    assert first.returncode == 0, first.stderr
    again = aima(env, "user", "add", "root2", "--admin", password=PASSWORD)
    assert again.returncode == 1
    assert "first admin" in again.stderr
    assert aima(env, "user", "add", "alice", password=PASSWORD).returncode == 0
    assert aima(env, "user", "add", "gus", "--role", "guest", password=PASSWORD).returncode == 0
    no_password = aima(env | {"AIMA_NEW_PASSWORD": ""}, "user", "add", "bob")
    assert no_password.returncode == 1
    assert "password" in no_password.stderr

    created = aima(env, "case", "create", "Case A", "--owner", "alice")
    assert created.returncode == 0, created.stderr
    case_id = created.stdout.strip()
    guest_analyst = aima(env, "case", "share", case_id, "gus", "--role", "analyst")
    assert guest_analyst.returncode == 1
    assert "viewer" in guest_analyst.stderr
    assert aima(env, "case", "share", case_id, "gus", "--role", "viewer").returncode == 0

    listed = aima(env, "user", "list")
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["alice", "gus", "root"]
    assert aima(env, "user", "disable", "gus").returncode == 0
    assert "gus\tguest\thuman\tdisabled" in aima(env, "user", "list").stdout

    bad = aima(env, "config", "set", "limits", '{"max_files_per_request": -1}')
    assert bad.returncode == 1
    assert "limits.max_files_per_request" in bad.stderr
    assert aima(env, "config", "set", "limits", '{"max_files_per_request": 7}').returncode == 0
    got = json.loads(aima(env, "config", "get", "limits").stdout)
    assert got["max_files_per_request"] == 7
    history = json.loads(aima(env, "config", "history", "limits").stdout)
    assert [h["version"] for h in history] == [1]

    exported = aima(env, "audit", "export", "--format", "json")
    actions = [r["action"] for r in json.loads(exported.stdout)]
    for action in ("user.create", "case.create", "case.share", "user.disable", "config.write"):
        assert action in actions
    assert aima(env, "audit", "verify").returncode == 0


def test_audit_verify_detects_an_edited_record(cluster_env: dict[str, str]) -> None:
    import psycopg

    env = cluster_env
    assert aima(env, "user", "add", "root", "--admin", password=PASSWORD).returncode == 0
    assert aima(env, "user", "add", "alice", password=PASSWORD).returncode == 0
    url = env["AIMA_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    broken = aima(env, "audit", "verify")
    assert broken.returncode == 1
    assert "audit chain broken" in broken.stderr


def test_embedded_profile_acts_as_the_local_owner(tmp_path: Path) -> None:
    env = {"AIMA_DATA_DIR": str(tmp_path / "aima")}
    created = aima(env, "case", "create", "Mine")
    assert created.returncode == 0, created.stderr
    case_id = created.stdout.strip()
    assert case_id in aima(env, "case", "list").stdout
    media = aima(env, "media", "list", case_id)
    assert (media.returncode, media.stdout) == (0, "")
    missing = aima(env, "media", "list", "no-such-case")
    assert missing.returncode == 1
    assert missing.stderr.startswith("aima: no case")


def test_a_case_is_created_with_a_language(tmp_path: Path) -> None:
    env = {"AIMA_DATA_DIR": str(tmp_path / "aima")}
    created = aima(env, "case", "create", "Interview", "--language", "de")
    assert created.returncode == 0, created.stderr
    refused = aima(env, "case", "create", "Shouted", "--language", "German")
    assert refused.returncode == 1
    assert refused.stderr.startswith("aima: a case language is an ISO 639-1 or 639-3 code")
    database = Database(f"sqlite:///{tmp_path / 'aima' / 'aima.db'}")
    with database.engine.connect() as c:
        assert c.execute(select(cases.c.name, cases.c.language)).all() == [("Interview", "de")]
    database.dispose()
