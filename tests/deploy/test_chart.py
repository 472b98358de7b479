"""The Helm chart rendered offline by Helm's own engine, for every values set, and checked object by object
against the Kubernetes, Knative, KServe, Prometheus-operator and AIMA schemas, and against the code:
function specs, settings, the operator's CRD."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import helm_python as helm
import pytest
import yaml

from aima.settings import load_settings
from events.catalogue import CATALOGUE, MediaProbed, ReportRequested
from functions.runtime.app import DEAD_LETTER_PATH
from functions.runtime.spec import FunctionSpec, discover
from operators.analysisjob.resource import CRD_FILE
from tests.deploy import chart
from tests.deploy.chart import (
    CHART,
    VALUE_SETS,
    containers,
    coverage_problems,
    find,
    pod_specs,
    render,
    values_of,
)
from tests.deploy.kube import validate

SETS = [name for name, path in VALUE_SETS.items() if path is None or path.exists()]


@pytest.fixture(scope="module", params=SETS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(values_of(request.param))


def ksvcs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["labels"]["aima.io/function"]: o
        for o in find(objects, "Service")
        if o["apiVersion"] == "serving.knative.dev/v1"
    }


def test_every_values_set_of_the_issue_is_there() -> None:
    assert {"default", "small-gpu", "external"} <= set(SETS)


@pytest.mark.parametrize("name", SETS)
def test_the_chart_lints_clean_with_helms_own_linter(name: str) -> None:
    report = helm.lint(str(CHART), values_of(name), strict=True, namespace="aima", kube_version="v1.33.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert problems == []


def test_every_rendered_object_is_valid_against_its_schema(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = rendered
    problems = {
        f"{o['apiVersion']}/{o['kind']} {o['metadata']['name']}": found
        for o in objects
        if (found := validate(o))
    }
    assert problems == {}, f"values set {name}"
    assert all(not validate(crd) for crd in chart.crds())


def test_every_function_spec_has_its_service_and_trigger(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    assert coverage_problems(discover(), objects) == []
    for trigger in find(objects, "Trigger"):
        assert chart.trigger_types(trigger) <= CATALOGUE.keys()


def test_a_spec_without_service_and_trigger_or_a_stray_trigger_is_reported() -> None:
    objects = render()
    specs = dict(discover())
    specs["redactor"] = FunctionSpec(
        name="redactor",
        description="new",
        consumes=(MediaProbed,),
        build=lambda deps: None,  # type: ignore[arg-type,return-value]
    )
    assert coverage_problems(specs, objects) == [
        "function redactor: no Knative Service aima-redactor",
        f"function redactor: consumes {MediaProbed.TYPE} but has no Trigger",
    ]
    specs = dict(discover())
    specs["probe"] = replace(specs["probe"], consumes=(*specs["probe"].consumes, ReportRequested))
    [problem] = coverage_problems(specs, objects)
    assert problem.startswith("function probe: Trigger aima-probe lets through")
    stray = yaml.safe_load(yaml.safe_dump(find(objects, "Trigger", "aima-ocr")[0]))
    stray["spec"]["filters"][0]["any"].append({"exact": {"type": "io.aima.nothing.v1"}})
    rest = [o for o in objects if o["metadata"]["name"] != "aima-ocr" or o["kind"] != "Trigger"]
    problems = coverage_problems(discover(), [*rest, stray])
    assert "Trigger aima-ocr: io.aima.nothing.v1 is consumed by no function spec" in problems


def test_the_function_table_is_generated_from_the_specs() -> None:
    from functions.runtime import chart_export

    assert chart_export.main(["--check"]) == 0, "run python -m functions.runtime.chart_export"


def test_services_carry_the_specs_scaling_and_only_the_gateway_is_public() -> None:
    services = ksvcs(render())
    specs = discover()
    assert set(services) == set(specs)
    for name, spec in specs.items():
        template = services[name]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        hints = spec.resources
        assert annotations["autoscaling.knative.dev/max-scale"] == str(hints.max_scale)
        expected_min = 2 if spec.public else hints.min_scale  # the gateway is kept warm (gateway.minScale)
        assert annotations["autoscaling.knative.dev/min-scale"] == str(expected_min)
        assert template["spec"]["containerConcurrency"] == hints.concurrency
        assert template["spec"]["timeoutSeconds"] == hints.timeout_s
        [container] = template["spec"]["containers"]
        assert container["resources"]["requests"] == {"cpu": hints.cpu, "memory": hints.memory}
        assert container["args"][0] == name
        assert container["image"] == f"aima-{spec.image}:0.1.0"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        local = (
            services[name]["metadata"]["labels"].get("networking.knative.dev/visibility") == "cluster-local"
        )
        assert local is not spec.public


def test_overrides_reach_the_service_and_an_unknown_function_is_refused() -> None:
    services = ksvcs(
        render({"functions": {"transcribe": {"maxScale": 2, "threads": 4, "env": {"AIMA_X": "1"}}}})
    )
    template = services["transcribe"]["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "2"
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    assert env["AIMA_MODELS__TRANSCRIBER__THREADS"] == "4"
    assert env["AIMA_MODELS__SPEECH_DETECTOR__THREADS"] == "4"
    assert env["AIMA_X"] == "1"
    assert "faces" not in ksvcs(render({"functions": {"faces": {"enabled": False}}}))
    with pytest.raises(helm.HelmError, match=r"functions\.transcriber: no such function; known: api, cues"):
        render({"functions": {"transcriber": {"maxScale": 2}}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"image": {"tag": 5}}, r"at '/image/tag': got number, want string"),
        ({"gateway": {"minScal": 2}}, r"at '/gateway': additional properties 'minScal' not allowed"),
        ({"replicas": 3}, r"additional properties 'replicas' not allowed"),
        (
            {"functions": {"faces": {"maxScale": "many"}}},
            r"at '/functions/faces/maxScale': got string, want integer",
        ),
        ({"eventing": {"delivery": {"backoffPolicy": "random"}}}, r"at '/eventing/delivery/backoffPolicy'"),
        ({"external": {"databaseUrl": "mysql://x"}}, r"at '/external/databaseUrl'"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, r"at '/podSecurityContext/runAsNonRoot'"),
        (
            {"inference": {"models": {"vision": {"gpu": 2}}}},
            r"at '/inference/models/vision': additional properties 'gpu'",
        ),
        ({"inference": {"deploymentMode": "Serverles"}}, r"at '/inference/deploymentMode'"),
    ],
)
def test_wrong_values_are_refused_with_a_message_naming_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


def test_a_store_neither_bundled_nor_configured_is_refused_by_name() -> None:
    with pytest.raises(
        helm.HelmError, match=r"external\.vectorUri: required when bundled\.milvus\.enabled is false"
    ):
        render({"bundled": {"milvus": {"enabled": False}}})


def test_no_container_runs_as_root(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    checked = 0
    for obj in objects:
        for pod in pod_specs(obj):
            pod_context = pod.get("securityContext", {})
            for container in containers(pod):
                context = {**pod_context, **container.get("securityContext", {})}
                where = f"{obj['kind']} {obj['metadata']['name']} container {container.get('name')}"
                assert context.get("runAsNonRoot") is True, where
                assert context.get("runAsUser", 1) != 0, where
                assert context.get("allowPrivilegeEscalation") is False, where
                checked += 1
    assert checked >= len(discover()) + 3  # the functions, the operator, the retention schedule, migrate


def test_every_aima_image_is_built_by_skaffold(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    skaffold = [d for d in yaml.safe_load_all((chart.REPO / "skaffold.yaml").read_text()) if d]
    built = {artifact["image"] for doc in skaffold for artifact in doc.get("build", {}).get("artifacts", [])}
    values = values_of(name)
    third_party = {
        store["image"]
        for store in yaml.safe_load((CHART / "values.yaml").read_text())["bundled"].values()
        if isinstance(store, dict)
    }
    third_party |= {
        store.get("image") for store in values.get("bundled", {}).values() if isinstance(store, dict)
    }
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    third_party |= {
        chart_values["inference"]["vllmImage"],
        values.get("inference", {}).get("vllmImage"),
    }  # vLLM's
    seen = set()
    for obj in objects:
        for pod in pod_specs(obj):
            for container in containers(pod):
                image = container.get("image")
                if image is None or image in third_party:
                    continue
                repository = re.sub(r"[:@].*$", "", image).rsplit("/", 1)[-1]
                seen.add(repository)
    assert seen, "no AIMA image rendered"
    assert seen <= built, f"images no skaffold artifact builds: {sorted(seen - built)}"


def test_triggers_retry_with_backoff_into_the_functions_dead_letter_route() -> None:
    objects = render()
    triggers = find(objects, "Trigger")
    assert triggers
    for trigger in triggers:
        delivery = trigger["spec"]["delivery"]
        assert delivery["retry"] == 5
        assert delivery["backoffPolicy"] == "exponential"
        sink = delivery["deadLetterSink"]
        assert sink["ref"] == trigger["spec"]["subscriber"]["ref"]
        assert sink["uri"] == DEAD_LETTER_PATH
    [broker] = find(objects, "Broker")
    assert all(t["spec"]["broker"] == broker["metadata"]["name"] for t in triggers)


def test_publishing_functions_get_k_sink_from_the_binding_or_the_broker_url() -> None:
    objects = render()
    [binding] = find(objects, "SinkBinding")
    selector = binding["spec"]["subject"]["selector"]["matchLabels"]
    bound = {
        n
        for n, s in ksvcs(objects).items()
        if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())
    }
    assert bound == {name for name, spec in discover().items() if spec.emits}
    objects = render({"eventing": {"sinkBinding": False}})
    assert find(objects, "SinkBinding") == []
    [config] = find(objects, "ConfigMap", "aima-config")
    assert (
        config["data"]["AIMA_SINK_URL"]
        == "http://broker-ingress.knative-eventing.svc.cluster.local/aima/aima"
    )


def _environment(objects: list[dict[str, Any]], function: str) -> dict[str, str]:
    """A function container's environment as the kubelet builds it: envFrom, then env with $(VAR)."""
    service = ksvcs(objects)[function]
    [container] = service["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])[0]["data"])
        else:
            import base64

            secret = find(objects, "Secret", source["secretRef"]["name"])[0]
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"]
            )
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = env.get(ref["key"], "")
    return env


@pytest.mark.parametrize("name", ["default", "external"])
def test_the_settings_a_function_gets_are_valid_cluster_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(values_of(name))
    env = _environment(objects, "transcribe")
    for key in [k for k in list(__import__("os").environ) if k.startswith("AIMA_") or k == "K_SINK"]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(
        "K_SINK", "http://broker-ingress.knative-eventing.svc.cluster.local/aima/aima"
    )  # the binding's
    settings = load_settings()
    assert settings.profile == "cluster"
    assert (settings.bus, settings.delivery, settings.object_store) == ("http", "http", "s3")
    assert settings.database_url is not None
    assert "$(" not in settings.database_url
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.models.transcriber.threads == 2  # the spec's 2 CPUs
    assert settings.service_name == "aima-transcribe"


def test_the_operator_runs_with_the_crd_the_operator_package_declares() -> None:
    assert chart.crds() == [yaml.safe_load(CRD_FILE.read_text())]
    objects = render()
    [deployment] = find(objects, "Deployment", "aima-analysisjob-operator")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "aima-operator:0.1.0"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AIMA_OPERATOR_API_URL"] == "http://aima-api.aima.svc.cluster.local"
    scoped = render({"operator": {"watchAllNamespaces": False}})
    assert find(scoped, "ClusterRole") == []
    [role] = find(scoped, "Role")
    assert role["metadata"]["namespace"] == "aima"
    [container] = find(scoped, "Deployment", "aima-analysisjob-operator")[0]["spec"]["template"]["spec"][
        "containers"
    ]
    assert "--namespace=aima" in container["command"]
    assert "--all-namespaces" not in container["command"]


def test_only_aima_pods_reach_the_bundled_stores() -> None:
    objects = render()
    policies = {p["metadata"]["name"]: p for p in find(objects, "NetworkPolicy")}
    assert policies["aima-default-deny"]["spec"] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "aima", "app.kubernetes.io/instance": "aima"}
        },
        "policyTypes": ["Ingress"],
    }
    for store in ("postgresql", "mongodb", "milvus", "minio", "redis", "nats"):
        [rule] = policies[f"aima-{store}"]["spec"]["ingress"]
        assert rule["from"][0]["podSelector"]["matchExpressions"][0]["values"] == [
            "function",
            "operator",
            "retention-schedule",
            "migrate",
            "model-server",
        ]
    assert [
        p
        for p in find(render(values_of("external")), "NetworkPolicy")
        if "postgresql" in p["metadata"]["name"]
    ] == []
    assert find(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []
    [budget] = find(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == {"serving.knative.dev/service": "aima-api"}
    assert find(render({"gateway": {"minScale": 1}}), "PodDisruptionBudget") == []


def test_the_manifests_folder_is_rendered_from_the_chart() -> None:
    assert chart.main(["--check"]) == 0, "run make manifests"
    objects = [d for d in yaml.safe_load_all((chart.MANIFESTS / "aima.yaml").read_text()) if d]
    assert find(objects, "Secret") == []  # users bring their own (existingSecret)
    assert all(not validate(o) for o in objects)


@pytest.mark.parametrize("broker_class", ["MTChannelBasedBroker", "NatsJetStreamBroker"])
def test_the_broker_is_backed_by_nats_jetstream(broker_class: str) -> None:
    objects = render({"eventing": {"broker": {"class": broker_class}}})
    [broker] = find(objects, "Broker")
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == broker_class
    channels = find(objects, "ConfigMap", "aima-broker-channel")
    if broker_class == "NatsJetStreamBroker":  # eventing-natss' own class reads its config-nats-broker
        assert channels == []
        assert "config" not in broker["spec"]
        return
    [channel_config] = channels
    assert broker["spec"]["config"]["name"] == "aima-broker-channel"
    template = yaml.safe_load(channel_config["data"]["channel-template-spec"])
    channel = {**template, "metadata": {"name": "aima-kne-trigger", "namespace": "aima"}}
    assert channel["kind"] == "NatsJetStreamChannel"
    assert validate(channel) == []  # the channel the broker will create, against eventing-natss' CRD


def test_the_schema_is_migrated_after_every_install_and_upgrade() -> None:
    [job] = find(render(), "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["aima", "migrate"]
    assert container["image"] == "aima-core:0.1.0"
    assert {e["name"] for e in container["env"]} >= {"AIMA_DATABASE_URL", "AIMA_DOCUMENTS_URI"}
