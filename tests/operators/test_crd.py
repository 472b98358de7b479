"""The AnalysisJob CRD as a Kubernetes object (kubernetes-validate, strict), its schema structural and
in step with the code, and the examples (and a few bad bodies) against its schema."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aima.domain import JobPhase, Priority, Step
from operators.analysisjob import handlers
from operators.analysisjob.client import JobRequest
from operators.analysisjob.resource import CRD_FILE, GROUP, KIND, PLURAL, VERSION
from tests.operators.support import analysis_job, crd, openapi_schema, schema_errors

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("analysisjob*.yaml"))
KUBERNETES = kubernetes_validate.utils.latest_version()


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def test_the_crd_is_a_valid_kubernetes_object() -> None:
    # the operator's ServiceAccount, role and Deployment come from the Helm chart (tests/deploy)
    for document in documents(CRD_FILE):
        assert kubernetes_validate.validate(
            document, KUBERNETES, strict=True
        ) == kubernetes_validate.utils.major_minor(KUBERNETES)


def test_strict_validation_would_catch_a_misplaced_field() -> None:
    broken = copy.deepcopy(crd())
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["immutable"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_names_scope_and_version() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert (spec["group"], spec["scope"]) == (GROUP, "Namespaced")
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["plural"] == PLURAL
    assert spec["names"]["shortNames"] == ["aj"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_kubectl_get_shows_phase_progress_estimate_and_age() -> None:
    columns = crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [(c["name"], c["jsonPath"]) for c in columns if c.get("priority", 0) == 0]
    assert default == [
        ("Phase", ".status.phase"),
        ("Progress", ".status.progressText"),
        ("Estimate", ".status.estimate.costText"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    schema = openapi_schema()
    for column in columns:  # every column points at a field of the schema
        node: Mapping[str, Any] = schema
        for part in column["jsonPath"].strip(".").split("."):
            if part in ("metadata",) and node is schema:
                break
            node = node["properties"][part]


def nodes(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path or ".", node
    for name, child in (node.get("properties") or {}).items():
        yield from nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), Mapping):
            yield from nodes(node[key], f"{path}[{key}]")


def test_the_schema_is_structural_and_complete() -> None:
    schema = openapi_schema()
    for path, node in nodes(schema):
        assert "type" in node, f"{path} has no type"
        assert not node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not node.get("x-kubernetes-int-or-string"), path
        assert not ({"properties", "additionalProperties"} <= node.keys()), path
        assert not ({"allOf", "anyOf", "oneOf", "not", "$ref"} & node.keys()), path
        if node["type"] == "object" and path not in (".metadata",):
            assert "properties" in node or "additionalProperties" in node, f"{path} is an open object"
        if node["type"] == "array":
            assert "items" in node, path
    assert schema["properties"]["metadata"] == {"type": "object"}  # structural: no more than that


def test_the_schema_agrees_with_the_code() -> None:
    properties = openapi_schema()["properties"]
    spec, status = properties["spec"]["properties"], properties["status"]["properties"]
    assert spec["steps"]["items"]["enum"] == [step.value for step in Step]
    assert status["phase"]["enum"] == [phase.value for phase in JobPhase]
    assert spec["priority"]["enum"] == [priority.value for priority in Priority]
    assert spec["priority"]["default"] == JobRequest().priority
    assert set(status["steps"]["additionalProperties"]["properties"]) == set(handlers.STEP_STATES)
    assert set(handlers.POLLED_FIELDS) | {"submitted", "observedGeneration"} == set(status)
    assert set(status["submitted"]["properties"]) == set(
        handlers.IMMUTABLE_FIELDS + handlers.SUBMISSION_ONLY_FIELDS
    )
    for field in handlers.IMMUTABLE_FIELDS:
        rules = [rule["rule"] for rule in spec[field].get("x-kubernetes-validations", [])]
        assert "self == oldSelf" in rules, f"{field} is not immutable in the CRD"
    optional = set(handlers.IMMUTABLE_FIELDS) - set(properties["spec"]["required"])
    presence = {rule["rule"] for rule in properties["spec"]["x-kubernetes-validations"]}
    assert presence == {f"has(self.{field}) == has(oldSelf.{field})" for field in optional}


def test_the_examples_fit_the_schema() -> None:
    assert [path.name for path in EXAMPLES] == ["analysisjob-full.yaml", "analysisjob.yaml"]
    for path in EXAMPLES:
        [body] = documents(path)
        assert (body["apiVersion"], body["kind"]) == (f"{GROUP}/{VERSION}", KIND)
        assert schema_errors(body) == [], path.name


def test_the_full_example_has_every_field_and_submits() -> None:
    [body] = documents(ROOT / "docs" / "examples" / "analysisjob-full.yaml")
    spec_schema = openapi_schema()["properties"]["spec"]["properties"]
    assert set(body["spec"]) == set(spec_schema)
    assert set(body["spec"]["media"]) == set(spec_schema["media"]["properties"])
    assert set(body["spec"]["approval"]) == set(spec_schema["approval"]["properties"])
    body["metadata"]["uid"] = "u-1"
    request = handlers.job_request(body)
    assert request.sources == body["spec"]["media"]["sources"]
    assert request.require_approval is True


BAD_SPECS: dict[str, dict[str, Any]] = {
    "unknown priority": {"priority": "asap"},
    "non-s3 source": {"media": {"sources": ["https://example.org/cam.mp4"]}},
    "s3 bucket without key": {"media": {"sources": ["s3://evidence"]}},
    "no media": {"media": {}},
    "an empty media list": {"media": {"ids": []}},
    "unknown step": {"steps": ["probe", "lipread"]},
    "a step twice": {"steps": ["probe", "probe"]},
    "bad language": {"language": "German"},
    "too long a context": {"context": "x" * 8001},
    "unknown delete policy": {"deletePolicy": "Orphan"},
    "not a date": {"holdUntil": "tomorrow"},
    "a misspelt field": {"priorty": "high"},
    "approval not a boolean": {"approval": {"approved": "yes"}},
}


@pytest.mark.parametrize("spec", BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_bad_bodies_are_refused(spec: dict[str, Any]) -> None:
    assert schema_errors(analysis_job(**spec))


def test_a_body_without_case_is_refused() -> None:
    body = analysis_job()
    del body["spec"]["caseId"]
    assert any("caseId" in error for error in schema_errors(body))
    del body["spec"]
    assert schema_errors(body)


def test_a_status_outside_the_schema_is_refused() -> None:
    body = analysis_job()
    body["status"] = {"phase": "Done", "progress": 1.5, "kopf": {"progress": {}}}
    errors = schema_errors(body)
    assert len(errors) == 3, errors
