"""The AnalysisJob CRD's schema as JSON Schema, resource bodies as the API server stores them, and
JSON merge patches applied to them (what the API server does with the operator's status patches)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema
import yaml

from operators.analysisjob.resource import CRD_FILE

NAMESPACE = "investigations"
CASE_ID = "3f0c6a52-8f4e-4a57-9d0e-2b7c1e5a9d41"
MEDIA_IDS = ["0b9d4c1e-5a7f-4e2b-8c3d-1f6a9e2b7c40", "7e2f1a9c-3b6d-4c8e-a5f0-9d1b2c3e4f51"]


@cache
def crd() -> dict[str, Any]:
    return dict(yaml.safe_load(CRD_FILE.read_text()))


def openapi_schema() -> dict[str, Any]:
    return copy.deepcopy(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI v3 subset of a structural CRD schema as JSON Schema (draft 2020-12).

    An object with ``properties`` and no ``additionalProperties`` refuses unknown fields, as
    ``kubectl apply`` does with the server's strict field validation; ``x-kubernetes-list-type:
    set`` means unique items. CEL rules (``x-kubernetes-validations``) are left to the API server.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key == "x-kubernetes-list-type":
            if value == "set":
                out["uniqueItems"] = True
        elif key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = to_json_schema(openapi_schema())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def schema_errors(body: Mapping[str, Any]) -> list[str]:
    """Why the CRD's schema refuses ``body`` (empty: it is valid)."""
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in _validator().iter_errors(body)
    ]


def analysis_job(
    name: str = "harbour-fire",
    *,
    uid: str = "5d3b0a8e-1c2f-4e6a-9b7d-0f1e2d3c4b5a",
    generation: int = 1,
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A stored AnalysisJob: metadata as the API server sets it, the spec with its defaults applied."""
    body_spec: dict[str, Any] = {
        "caseId": CASE_ID,
        "media": {"ids": list(MEDIA_IDS)},
        "priority": "normal",
        "deletePolicy": "Keep",
    }
    body_spec.update(spec)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": uid,
        "generation": generation,
        "resourceVersion": "1",
        "creationTimestamp": "2026-03-01T10:00:00Z",
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "aima.io/v1alpha1", "kind": "AnalysisJob", "metadata": metadata, "spec": body_spec}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: ``patch`` applied to ``target`` (neither is changed)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def applied(body: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` after the API server applied ``patch``; the result must still fit the CRD's schema."""
    result: dict[str, Any] = merge_patch(body, copy.deepcopy(dict(patch)))
    errors = schema_errors(result)
    assert not errors, errors
    return result


def condition(body: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` (fails if there is none)."""
    found = [c for c in body.get("status", {}).get("conditions", []) if c["type"] == kind]
    assert len(found) == 1, f"{kind}: {body.get('status', {}).get('conditions')}"
    return dict(found[0])
