"""The layer rules are enforced by import-linter; these tests keep its contracts honest."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import functions

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def test_every_function_package_is_in_the_independence_contract() -> None:
    independence = next(c for c in contracts() if c["type"] == "independence")
    runtime = next(c for c in contracts() if c.get("source_modules") == ["functions.runtime"])
    present = {f"functions.{m.name}" for m in pkgutil.iter_modules(functions.__path__) if m.ispkg}
    assert present - {"functions.runtime"} == set(independence["modules"])  # type: ignore[arg-type]
    assert present - {"functions.runtime"} == set(runtime["forbidden_modules"])  # type: ignore[arg-type]


def test_every_kernel_and_event_module_has_a_layer_and_no_layer_has_exemptions() -> None:
    layers = next(c for c in contracts() if c["type"] == "layers")
    assert "ignore_imports" not in layers
    listed = {
        name.strip().strip("()")
        for layer in layers["layers"]  # type: ignore[attr-defined]
        for name in layer.replace("|", ":").split(":")
    }
    for package in ("aima", "events"):
        present = {
            f"{package}.{m.name}"
            for m in pkgutil.iter_modules([str(ROOT / package)])
            if not m.name.startswith("_")
        }
        assert present <= listed, f"not in any layer: {sorted(present - listed)}"


def test_every_function_package_has_a_spec() -> None:
    from functions.runtime.spec import discover

    present = {m.name for m in pkgutil.iter_modules(functions.__path__) if m.ispkg} - {"runtime"}
    specs = discover()
    assert present <= set(specs)
    assert [s.name for s in specs.values() if s.public] == ["api"]


def test_import_contracts_hold() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " 0 broken." in proc.stdout


def test_a_layer_violation_is_caught(tmp_path: Path) -> None:
    """Copy the tree, add an upward import to the contracts, and the linter must fail."""
    for pkg in ("aima", "events", "functions", "inference", "operators"):
        subprocess.run(["cp", "-r", str(ROOT / pkg), str(tmp_path / pkg)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "aima" / "domain.py").write_text(
        (ROOT / "aima" / "domain.py").read_text() + "\nimport events.bus  # upward import\n"
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert "aima.domain -> events.bus" in proc.stdout
