"""``aima persons`` through the real entry point on the embedded profile: list, show, unassigned, the
three corrections, their audit records, and one-line errors with exit 1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from aima.identity.users import UserDirectory
from aima.settings import load_settings
from aima.storage.factory import Stores
from tests.cli.test_admin_cli import aima
from tests.persons.seed import REASON, SeededPersons, seed_persons


def seeded(tmp_path: Path) -> tuple[dict[str, str], str, SeededPersons]:
    data_dir = tmp_path / "aima"
    env = {"AIMA_DATA_DIR": str(data_dir)}
    created = aima(env, "case", "create", "Harbour fire")
    assert created.returncode == 0, created.stderr
    case_id = created.stdout.strip()
    settings = load_settings(profile="embedded", data_dir=data_dir)
    stores = Stores.open(settings)
    try:
        tenant_id = str(UserDirectory(stores.db).tenant_id(settings.bootstrap_tenant))
        return env, case_id, seed_persons(stores.documents, tenant_id, case_id)
    finally:
        stores.close()


def ok(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"aima: {message}\n")


def test_list_show_and_corrections_audited(tmp_path: Path) -> None:
    env, case, seed = seeded(tmp_path)
    assert ok(aima(env, "persons", "list", case)) == [
        [seed.first, "Person 1", "3 tracks", "2 files", "analysis"],
        [seed.second, "Person 2", "2 tracks", "1 file", "analysis"],
        ["unassigned tracks: 1"],
    ]
    shown = ok(aima(env, "persons", "show", case, seed.first))
    assert shown[0] == [seed.first, "Person 1", "3 tracks", "2 files", "analysis"]
    assert [line[0] for line in shown[1:]] == seed.first_tracks
    assert shown[1][1:] == [
        seed.media[0],
        "F3",
        "10.0-12.0s",
        "quality 0.90",
        "linked by analysis",
        "score 0.950",
        "frame f0000010000",
    ]
    [lone] = ok(aima(env, "persons", "unassigned", case))
    assert (lone[0], lone[1], lone[5]) == (seed.unassigned, seed.media[1], REASON)

    assert ok(aima(env, "persons", "rename", case, seed.second, "  Ann   Lee ")) == [[seed.second, "Ann Lee"]]
    assert ok(aima(env, "persons", "merge", case, seed.second, "--into", seed.first)) == [
        [f"merged {seed.second} into {seed.first}", "Ann Lee"]
    ]
    [[new, name]] = ok(aima(env, "persons", "split", case, seed.first, *seed.second_tracks, "--name", "Bea"))
    assert name == "Bea"
    assert ok(aima(env, "persons", "rename", case, seed.first, "")) == [[seed.first, "Person 1"]]
    assert ok(aima(env, "persons", "list", case)) == [
        [seed.first, "Person 1", "3 tracks", "2 files", "analysis"],
        [new, "Bea", "2 tracks", "1 file", "split"],
        ["unassigned tracks: 1"],
    ]

    exported = aima(env, "audit", "export", "--format", "json", "--case", case)
    records = [r for r in json.loads(exported.stdout) if r["object"] and "person" in r["object"]]
    assert [(r["action"], r["object"], r["detail"].get("correction")) for r in records] == [
        ("case.read", f"case/{case}/persons", None),
        ("case.read", f"person/{seed.first}", None),
        ("case.read", f"case/{case}/persons/unassigned", None),
        ("case.update", f"person/{seed.second}", "rename"),
        ("case.update", f"person/{seed.second}", "merge"),
        ("case.update", f"person/{seed.first}", "split"),
        ("case.update", f"person/{seed.first}", "rename"),
        ("case.read", f"case/{case}/persons", None),
    ]
    assert {(r["outcome"], r["detail"]["via"], r["case_id"]) for r in records} == {("allowed", "cli", case)}
    assert records[5]["detail"]["new_person"] == new


def test_one_line_errors(tmp_path: Path) -> None:
    env, case, seed = seeded(tmp_path)
    merged = aima(env, "persons", "merge", case, seed.second, "--into", seed.first)
    assert merged.returncode == 0, merged.stderr
    one_line_error(aima(env, "persons", "list", "no-such-case"), "no case no-such-case")
    one_line_error(aima(env, "persons", "show", case, "nobody"), f"no person nobody in case {case}")
    one_line_error(
        aima(env, "persons", "show", case, seed.second),
        f"person {seed.second} was merged into person {seed.first}",
    )
    one_line_error(
        aima(env, "persons", "rename", case, seed.second, "Ann"),
        f"person {seed.second} was merged into person {seed.first}",
    )
    one_line_error(
        aima(env, "persons", "merge", case, seed.first, "--into", seed.second),
        f"person {seed.second} was merged into person {seed.first}",
    )
    one_line_error(
        aima(env, "persons", "merge", case, seed.first, "--into", "nobody"),
        f"no person nobody in case {case}",
    )
    one_line_error(
        aima(env, "persons", "merge", case, seed.first, "--into", seed.first),
        "a person cannot be merged with itself",
    )
    everything = [*seed.first_tracks, *seed.second_tracks]
    one_line_error(
        aima(env, "persons", "split", case, seed.first, *everything),
        "that would leave the person without faces; rename it instead",
    )
    one_line_error(
        aima(env, "persons", "split", case, seed.first, seed.unassigned, "x"),
        f"not tracks of this person: {seed.unassigned}, x",
    )
    one_line_error(
        aima(env, "persons", "rename", case, seed.first, "x" * 101),
        "a person's name has at most 100 characters",
    )
    exported = aima(env, "audit", "export", "--format", "json", "--case", case)
    failed = [r for r in json.loads(exported.stdout) if r["outcome"] == "failed"]
    assert [(r["action"], r["detail"]["error"]) for r in failed] == [
        ("case.read", "not-found"),
        ("case.read", "not-found"),
        ("case.update", "not-found"),
        ("case.update", "not-found"),
        ("case.update", "not-found"),
        ("case.update", "invalid-correction"),
        ("case.update", "invalid-correction"),
        ("case.update", "invalid-correction"),
    ]
