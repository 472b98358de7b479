"""Write (or, with ``--check``, compare) the function table the Helm chart is generated from.

``python -m functions.runtime.chart_export`` rewrites ``charts/aima/files/functions.yaml`` from the
function specs (`functions.runtime.spec.discover`): per function its image family, port, whether
it is public, the event types it consumes and emits, its step, readiness needs, model tasks and
resource hints. The chart's templates make one Knative Service per entry and one Trigger per
entry that consumes events, so a new function is deployed by re-running this command.
``--check`` exits 1 when the checked-in table differs from the specs (``make lint`` runs it).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import yaml

from functions.runtime.spec import FunctionSpec, discover

TABLE = Path(__file__).resolve().parents[2] / "charts" / "aima" / "files" / "functions.yaml"
HEADER = "# Generated from the function specs by `python -m functions.runtime.chart_export`; do not edit.\n"


def cores(cpu: str) -> int:
    """Whole cores of a Kubernetes CPU quantity (``"500m"`` -> 1, ``"2"`` -> 2): a model's threads."""
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.ceil(value))


def entry(spec: FunctionSpec) -> dict[str, Any]:
    """One function's row of the table."""
    r = spec.resources
    return {
        "name": spec.name,
        "image": spec.image,
        "port": spec.port,
        "public": spec.public,
        "http": spec.app is not None,
        "consumes": list(spec.types),
        "emits": [payload.TYPE for payload in spec.emits],
        "step": spec.step,
        "needs": [need for need in spec.needs if not need.startswith("model:")],
        "models": [need.removeprefix("model:") for need in spec.needs if need.startswith("model:")],
        "resources": {
            "cpu": r.cpu,
            "memory": r.memory,
            "gpu": r.gpu,
            "threads": cores(r.cpu),
            "concurrency": r.concurrency,
            "timeoutSeconds": r.timeout_s,
            "minScale": r.min_scale,
            "maxScale": r.max_scale,
        },
    }


def rendered() -> str:
    """The table's text, as checked in."""
    table = {"functions": [entry(spec) for spec in discover().values()]}
    return HEADER + yaml.safe_dump(table, sort_keys=False, default_flow_style=False)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = rendered()
    if "--check" in args:
        if not TABLE.exists() or TABLE.read_text() != text:
            print(f"{TABLE} is out of date with the function specs (run python -m {__spec__.name})")
            return 1
        return 0
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
