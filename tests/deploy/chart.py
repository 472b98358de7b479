"""Render AIMA's Helm chart offline with Helm's own engine, and write ``manifests/`` from it.

`render` runs Helm v4's template engine (helm-python-sdk, no cluster contacted) with the chart's
``values.schema.json`` enforced, and returns the objects. `coverage_problems` is the check that
every function spec has its Knative Service and, if it consumes events, its Trigger filtered by
exactly those types, and that no Trigger names an event no spec consumes.

``python -m tests.deploy.chart`` rewrites ``manifests/`` (``make manifests``); ``--check`` exits 1
when they differ from the chart.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "aima"
MANIFESTS = REPO / "manifests"
RELEASE = "aima"
NAMESPACE = "aima"
VALUE_SETS = {
    "default": None,
    "small-gpu": CHART / "values-gpu-small.yaml",
    "external": CHART / "values-external.yaml",
    "kind": CHART / "values-kind.yaml",
}
"""The values files ``make test`` renders and validates the chart with (None: the chart's defaults)."""
MANIFEST_VALUES: dict[str, Any] = {"secrets": {"existingSecret": "aima-secrets"}}
"""``manifests/`` is rendered with these values: no generated Secret, so the output is reproducible."""

Obj = dict[str, Any]


def values_of(name: str) -> dict[str, Any]:
    """The values of a named set (`VALUE_SETS`)."""
    path = VALUE_SETS[name]
    return {} if path is None else dict(yaml.safe_load(path.read_text()) or {})


def render_files(values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text; raises Helm's `HelmValuesError`/`HelmRenderError`."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(dict(values or {}))
        return chart.render(dict(values or {}), name=RELEASE, namespace=namespace, is_install=True)


def render(values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE) -> list[Obj]:
    """Every object the chart renders with ``values``, CRDs excluded, in template order."""
    objects: list[Obj] = []
    for path, text in sorted(render_files(values, namespace=namespace).items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def crds() -> list[Obj]:
    """The CustomResourceDefinitions the chart installs (its ``crds/`` folder)."""
    return [
        doc
        for path in sorted((CHART / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def find(objects: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """Objects of ``kind`` (and ``name``)."""
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def pod_specs(obj: Obj) -> list[Obj]:
    """The pod specs an object runs (workloads, Knative Services, KServe InferenceServices)."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return [spec["template"]["spec"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind == "Service" and obj["apiVersion"].startswith("serving.knative.dev"):
        return [spec["template"]["spec"]]
    if kind == "InferenceService":
        return [part for key in ("predictor", "transformer", "explainer") if (part := spec.get(key))]
    return []


def containers(pod: Obj) -> list[Obj]:
    """The containers of a pod spec (an InferenceService component's ``model`` counts as one)."""
    found = [*pod.get("initContainers", []), *pod.get("containers", [])]
    if "model" in pod:
        found.append(pod["model"])
    return found


def trigger_types(trigger: Obj) -> set[str]:
    """The event types a Trigger lets through (its ``filters`` of ``exact`` types, or ``filter``)."""
    spec = trigger["spec"]
    types: set[str] = set()
    for f in spec.get("filters", []):
        for clause in f.get("any", [f]):
            if "type" in clause.get("exact", {}):
                types.add(clause["exact"]["type"])
    if "type" in spec.get("filter", {}).get("attributes", {}):
        types.add(spec["filter"]["attributes"]["type"])
    return types


def coverage_problems(specs: Mapping[str, Any], objects: list[Obj], *, prefix: str = RELEASE) -> list[str]:
    """What is missing or stray between the function specs and the rendered Services and Triggers."""
    problems: list[str] = []
    services = {
        o["metadata"]["name"]
        for o in find(objects, "Service")
        if o["apiVersion"].startswith("serving.knative")
    }
    triggers = {o["spec"]["subscriber"]["ref"]["name"]: o for o in find(objects, "Trigger")}
    consumed = {t for spec in specs.values() for t in spec.types}
    for name, spec in specs.items():
        service = f"{prefix}-{name}"
        if service not in services:
            problems.append(f"function {name}: no Knative Service {service}")
        trigger = triggers.get(service)
        if spec.types and trigger is None:
            problems.append(f"function {name}: consumes {', '.join(spec.types)} but has no Trigger")
        elif trigger is not None and trigger_types(trigger) != set(spec.types):
            problems.append(
                f"function {name}: Trigger {trigger['metadata']['name']} lets through "
                f"{sorted(trigger_types(trigger))}, the spec consumes {sorted(spec.types)}"
            )
    for subscriber, trigger in triggers.items():
        for event_type in sorted(trigger_types(trigger) - consumed):
            problems.append(
                f"Trigger {trigger['metadata']['name']}: {event_type} is consumed by no function spec"
            )
        if subscriber not in services:
            problems.append(
                f"Trigger {trigger['metadata']['name']}: subscriber {subscriber} is no Knative Service"
            )
    return problems


def manifest_texts() -> dict[str, str]:
    """``manifests/`` file name -> text, as checked in."""
    header = "# Generated from charts/aima by `make manifests` (python -m tests.deploy.chart); do not edit.\n"
    objects = render(MANIFEST_VALUES)
    return {
        "aima.yaml": header + yaml.safe_dump_all(objects, sort_keys=False),
        "crds.yaml": header + yaml.safe_dump_all(crds(), sort_keys=False),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    texts = manifest_texts()
    if "--check" in args:
        stale = [
            n for n, t in texts.items() if not (MANIFESTS / n).exists() or (MANIFESTS / n).read_text() != t
        ]
        if stale:
            print(f"manifests/{', '.join(stale)} differ from charts/aima (run make manifests)")
            return 1
        return 0
    for name, text in texts.items():
        (MANIFESTS / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
