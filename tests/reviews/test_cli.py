"""``aima review`` through the real entry point on the embedded profile: list with states, decide, the
decision kept across a re-run and reported once no finding has it, audit records, one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from aima.domain import Step
from aima.identity.users import UserDirectory
from aima.settings import load_settings
from aima.storage.factory import Stores
from aima.storage.findings import FindingRepository
from tests.cli.test_admin_cli import aima

from .seed import SeededFindings, seed_findings, vision_finding


def _stores(data_dir: Path) -> tuple[Stores, str]:
    settings = load_settings(profile="embedded", data_dir=data_dir)
    stores = Stores.open(settings)
    return stores, str(UserDirectory(stores.db).tenant_id(settings.bootstrap_tenant))


def seeded(tmp_path: Path) -> tuple[dict[str, str], str, SeededFindings]:
    data_dir = tmp_path / "aima"
    env = {"AIMA_DATA_DIR": str(data_dir)}
    created = aima(env, "case", "create", "Harbour fire")
    assert created.returncode == 0, created.stderr
    case_id = created.stdout.strip()
    stores, tenant_id = _stores(data_dir)
    try:
        return env, case_id, seed_findings(stores.documents, tenant_id, case_id)
    finally:
        stores.close()


def rerun(tmp_path: Path, case_id: str, media_id: str, run: str, frame_id: str) -> str:
    stores, tenant_id = _stores(tmp_path / "aima")
    try:
        finding = vision_finding(tenant_id, case_id, media_id, run=run, frame_id=frame_id, confidence=0.5)
        FindingRepository(stores.documents).replace_media(
            tenant_id, case_id, media_id, Step.VISION, [finding], run=run
        )
        return finding.id
    finally:
        stores.close()


def ok(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"aima: {message}\n")


def test_list_decide_rerun_and_audit(tmp_path: Path) -> None:
    env, case, seed = seeded(tmp_path)
    listed = ok(aima(env, "review", "list", case))
    assert [(line[0], line[1], line[2], line[5]) for line in listed] == [
        (seed.restraint, "vision", "restraint", "unreviewed"),
        (seed.posture, "pose", "posture", "unreviewed"),
    ]
    key = listed[0][7]

    reason = "rope visible at both wrists"
    assert ok(aima(env, "review", "decide", case, seed.restraint, "confirm", "--reason", reason)) == [
        [seed.restraint, "confirmed", key]
    ]
    assert [line[0] for line in ok(aima(env, "review", "list", case, "--state", "confirmed"))] == [
        seed.restraint
    ]
    assert [line[0] for line in ok(aima(env, "review", "list", case, "--state", "unreviewed"))] == [
        seed.posture
    ]

    # the same indicator under a new id after a re-run: still confirmed
    again = rerun(tmp_path, case, seed.media_id, "run-2", "frame-0001")
    [line] = ok(aima(env, "review", "list", case, "--step", "vision"))
    assert (line[0], line[5], line[7]) == (again, "confirmed", key)

    # a re-run that sees it on another frame only: the decision is no longer found
    moved = rerun(tmp_path, case, seed.media_id, "run-3", "frame-0009")
    lines = ok(aima(env, "review", "list", case, "--step", "vision"))
    assert [(lines[0][0], lines[0][5])] == [(moved, "unreviewed")]
    assert lines[1] == ["no longer found", key, "confirmed", reason]

    exported = aima(env, "audit", "export", "--format", "json", "--case", case)
    records = [r for r in json.loads(exported.stdout) if r["object"] and "finding" in r["object"]]
    assert [(r["action"], r["object"], r["outcome"]) for r in records] == [
        ("case.read", f"case/{case}/findings", "allowed"),
        ("case.update", f"finding/{seed.restraint}", "allowed"),
        ("case.read", f"case/{case}/findings", "allowed"),
        ("case.read", f"case/{case}/findings", "allowed"),
        ("case.read", f"case/{case}/findings", "allowed"),
        ("case.read", f"case/{case}/findings", "allowed"),
    ]
    decided = records[1]["detail"]
    assert (decided["decision"], decided["reason"], decided["indicator_key"], decided["via"]) == (
        "confirmed",
        reason,
        key,
        "cli",
    )
    assert records[-1]["detail"]["no_longer_found"] == 1


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env, case, seed = seeded(tmp_path)
    decide = ("review", "decide", case, seed.restraint)
    one_line_error(
        aima(env, *decide, "approve", "--reason", "x"), "the decision is one of confirm, reject, unclear"
    )
    one_line_error(aima(env, *decide, "confirm"), "a decision needs a reason")
    one_line_error(aima(env, *decide, "confirm", "--reason", "  "), "a decision needs a reason")
    one_line_error(
        aima(env, *decide, "confirm", "--reason", "a\nb"), "the reason contains control characters"
    )
    one_line_error(
        aima(env, *decide, "reject", "--reason", "x" * 2001), "the reason is longer than 2000 characters"
    )
    one_line_error(
        aima(env, "review", "decide", case, "nothing", "unclear", "--reason", "?"),
        f"no finding nothing in case {case}",
    )
    one_line_error(
        aima(env, "review", "decide", "no-case", seed.restraint, "unclear", "--reason", "?"),
        "no case no-case",
    )
    one_line_error(
        aima(env, "review", "list", case, "--state", "maybe"),
        "the state is one of confirmed, rejected, unclear, unreviewed",
    )
    one_line_error(aima(env, "review", "list", case, "--step", "guess"), "no step guess")
    assert {line[5] for line in ok(aima(env, "review", "list", case))} == {"unreviewed"}
    exported = aima(env, "audit", "export", "--format", "json", "--case", case)
    failed = [r["detail"]["error"] for r in json.loads(exported.stdout) if r["outcome"] == "failed"]
    assert failed == ["invalid-review"] * 5 + ["not-found"]
