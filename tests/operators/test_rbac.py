"""The operator's RBAC is exactly what its code needs: `PERMISSIONS`, derived here again from the
handlers Kopf registered and the settings ``main.configure`` gives Kopf, and the rules of the role
the Helm chart renders."""

from __future__ import annotations

from typing import Any

import kopf

import operators.analysisjob.main as main
from operators.analysisjob.resource import PERMISSIONS
from tests.deploy.chart import render
from tests.operators.support import crd

Need = tuple[str, str, str]  # API group, resource, verb


OPERATOR = "aima-analysisjob-operator"


def manifests() -> dict[str, dict[str, Any]]:
    """The operator's objects as the Helm chart renders them, by kind."""
    return {o["kind"]: o for o in render() if o["metadata"]["name"] == OPERATOR}


def granted() -> set[Need]:
    rules = manifests()["ClusterRole"]["rules"]
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames, no nonResourceURLs
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def declared() -> set[Need]:
    return {(p.group, p.resource, p.verb) for p in PERMISSIONS}


def needed(registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings) -> set[Need]:
    """What Kopf does with the Kubernetes API for these handlers under these settings."""
    assert settings.peering.standalone, "peering would need its own resources"
    assert settings.scanning.disabled, "scanning would list and watch CRDs and namespaces"
    needs: set[Need] = set()
    resource_handlers = [
        *registry._changing.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
        *registry._watching.get_all_handlers(),
        *registry._indexing.get_all_handlers(),
    ]
    assert not registry._webhooks.get_all_handlers()
    subresources = crd()["spec"]["versions"][0].get("subresources", {})
    for handler in resource_handlers:
        selector = handler.selector
        assert selector is not None
        group, plural = selector.group or "", selector.plural or ""
        needs |= {(group, plural, "list"), (group, plural, "watch")}  # every served resource is watched
        needs.add((group, plural, "patch"))  # finalizer, progress and diff-base annotations
        if "status" in subresources:
            needs.add((group, f"{plural}/status", "patch"))  # status patches go to the subresource
    if settings.posting.enabled:
        needs.add(("", "events", "create"))
    return needs


def test_the_role_grants_exactly_what_the_code_declares() -> None:
    assert granted() == declared()
    assert not any("*" in part for need in granted() for part in need)


def test_the_declared_permissions_are_what_kopf_needs_for_these_handlers() -> None:
    settings = kopf.OperatorSettings()
    main.configure(settings)
    assert needed(kopf.get_default_registry(), settings) == declared()
    assert all(permission.why for permission in PERMISSIONS)


def test_the_role_is_bound_to_the_service_account_the_deployment_runs_as() -> None:
    objects = manifests()
    account = objects["ServiceAccount"]["metadata"]
    binding = objects["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": objects["ClusterRole"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert deployment["metadata"]["namespace"] == account["namespace"]
    [container] = pod["containers"]
    assert container["command"][:2] == ["kopf", "run"]
    assert "--standalone" in container["command"]
    assert "--all-namespaces" in container["command"]  # a ClusterRole, served cluster-wide
    assert container["command"][-2:] == ["-m", main.__name__]
    assert deployment["spec"]["replicas"] == 1  # standalone: one operator handles each resource
