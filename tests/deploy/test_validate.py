"""tests/deploy/kube.py: every vendored kind accepts a correct example and refuses a broken one."""

from __future__ import annotations

import copy
import gzip
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import kube

REPO = Path(__file__).resolve().parents[2]
CRDS = Path(__file__).resolve().parent / "crds"

Obj = dict[str, Any]


def knative_service() -> Obj:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "aima-whisper",
            "namespace": "aima",
            "labels": {"app.kubernetes.io/name": "aima"},
        },
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        "autoscaling.knative.dev/min-scale": "0",
                        "autoscaling.knative.dev/max-scale": "4",
                        "autoscaling.knative.dev/target": "1",
                    }
                },
                "spec": {
                    "containerConcurrency": 1,
                    "timeoutSeconds": 600,
                    "containers": [
                        {
                            "image": "ghcr.io/aima/whisper:1.0.0",
                            "ports": [{"containerPort": 8080}],
                            "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "8Gi"}},
                        }
                    ],
                },
            }
        },
    }


def broker() -> Obj:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {
            "name": "aima",
            "namespace": "aima",
            "annotations": {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"},
        },
        "spec": {
            "config": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "aima-broker-channel",
                "namespace": "aima",
            },
            "delivery": {"retry": 5, "backoffPolicy": "exponential", "backoffDelay": "PT0.5S"},
        },
    }


CHANNEL_TEMPLATE = """\
apiVersion: messaging.knative.dev/v1alpha1
kind: NatsJetStreamChannel
spec:
  stream:
    config:
      retention: Limits
      maxBytes: 1000000000
      replicas: 1
  consumerConfigTemplate:
    deliverPolicy: New
    maxDeliver: 5
"""


def broker_config() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "aima-broker-channel", "namespace": "aima"},
        "data": {"channel-template-spec": CHANNEL_TEMPLATE},
    }


def trigger() -> Obj:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "aima-job-steps", "namespace": "aima"},
        "spec": {
            "broker": "aima",
            "filters": [
                {
                    "any": [
                        {"exact": {"type": "io.aima.job.step.requested"}},
                        {"exact": {"type": "io.aima.job.step.retried"}},
                    ]
                },
                {"prefix": {"source": "/aima/gateway"}},
            ],
            "subscriber": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "aima-worker"},
                "uri": "/events",
            },
            "delivery": {
                "retry": 3,
                "backoffPolicy": "exponential",
                "backoffDelay": "PT1S",
                "deadLetterSink": {
                    "ref": {"apiVersion": "v1", "kind": "Service", "name": "aima-dead-letters"},
                    "uri": "/dead-letter",
                },
            },
        },
    }


def sink_binding() -> Obj:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": {"name": "aima-gateway-events", "namespace": "aima"},
        "spec": {
            "subject": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "selector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
            },
            "sink": {
                "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "aima"},
            },
            "ceOverrides": {"extensions": {"tenant": "default"}},
        },
    }


def nats_channel() -> Obj:
    return {
        "apiVersion": "messaging.knative.dev/v1alpha1",
        "kind": "NatsJetStreamChannel",
        "metadata": {"name": "aima-events", "namespace": "aima"},
        "spec": {
            "stream": {"config": {"retention": "Limits", "maxBytes": 1_000_000_000, "replicas": 3}},
            "consumerConfigTemplate": {"deliverPolicy": "New", "maxDeliver": 5, "ackWait": "30s"},
            "delivery": {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT2S"},
        },
    }


def inference_service() -> Obj:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "aima-llm",
            "namespace": "aima",
            "annotations": {"serving.kserve.io/deploymentMode": "Serverless"},
        },
        "spec": {
            "predictor": {
                "minReplicas": 0,
                "maxReplicas": 1,
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "storageUri": "hf://Qwen/Qwen2.5-7B-Instruct",
                    "args": ["--max_model_len=8192"],
                    "resources": {
                        "limits": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
                        "requests": {"cpu": "2", "memory": "16Gi"},
                    },
                },
            }
        },
    }


def serving_runtime() -> Obj:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "aima-vllm"},
        "spec": {
            "supportedModelFormats": [{"name": "huggingface", "version": "1", "autoSelect": True}],
            "containers": [{"name": "kserve-container", "image": "kserve/huggingfaceserver:v0.20.0"}],
        },
    }


def service_monitor() -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "aima-gateway", "namespace": "aima", "labels": {"release": "prometheus"}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
            "namespaceSelector": {"matchNames": ["aima"]},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}],
        },
    }


def pod_monitor() -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "aima-workers"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/component": "worker"}},
            "podMetricsEndpoints": [{"port": "metrics", "interval": "30s"}],
        },
    }


def prometheus_rule() -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "aima-alerts", "namespace": "aima"},
        "spec": {
            "groups": [
                {
                    "name": "aima.jobs",
                    "interval": "1m",
                    "rules": [
                        {
                            "alert": "AimaJobsFailing",
                            "expr": 'sum(rate(aima_jobs_total{outcome="failed"}[10m])) > 0.1',
                            "for": "15m",
                            "labels": {"severity": "warning"},
                            "annotations": {"summary": "AIMA jobs fail"},
                        },
                        {"record": "aima:jobs:rate5m", "expr": "sum(rate(aima_jobs_total[5m]))"},
                    ],
                }
            ]
        },
    }


def analysis_job() -> Obj:
    doc: Obj = yaml.safe_load((REPO / "docs/examples/analysisjob.yaml").read_text(encoding="utf-8"))
    return doc


def deployment() -> Obj:
    labels = {"app.kubernetes.io/component": "gateway"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "aima-gateway", "namespace": "aima", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "gateway",
                            "image": "ghcr.io/aima/gateway:1.0.0",
                            "ports": [{"containerPort": 8000}],
                        }
                    ]
                },
            },
        },
    }


def _set(obj: Obj, path: str, value: Any) -> Obj:
    """A copy of ``obj`` with ``value`` at ``path`` (``a.b[0].c``; keys with dots in brackets)."""
    out = copy.deepcopy(obj)
    parts: list[str | int] = [
        int(index) if index else key or quoted
        for key, index, quoted in re.findall(r"([^.\[\]']+)|\[(\d+)\]|\['([^']+)'\]", path)
    ]
    node: Any = out
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return out


EXAMPLES: dict[str, Callable[[], Obj]] = {
    "knative-service": knative_service,
    "broker": broker,
    "broker-config": broker_config,
    "trigger": trigger,
    "sink-binding": sink_binding,
    "nats-channel": nats_channel,
    "inference-service": inference_service,
    "serving-runtime": serving_runtime,
    "service-monitor": service_monitor,
    "pod-monitor": pod_monitor,
    "prometheus-rule": prometheus_rule,
    "analysis-job": analysis_job,
    "deployment": deployment,
}

# (example, field path, bad value, what the message must say[, the field path named if not that one])
BROKEN: list[tuple[Any, ...]] = [
    ("knative-service", "spec.template.spec.containerConcurrency", "ten", "type"),
    ("knative-service", "spec.template.spec.containers[0].imagePullPolicyy", "Always", "unknown field"),
    ("broker", "spec.config.nme", "x", "unknown field"),
    ("broker", "spec.delivery.deadLetterSink", "http://dead", "type"),
    ("trigger", "spec.filters[0].exactly", {"type": "x"}, "unknown field"),
    ("trigger", "spec.delivery.retry", "three", "type"),
    ("trigger", "spec.delivery.deadLetterSink.ref.nam", "x", "unknown field"),
    ("trigger", "spec.filters", {"exact": {"type": "x"}}, "type"),
    (
        "sink-binding",
        "spec.subject.selector.matchExpressions",
        [{"key": "a", "operator": "In", "values": "b"}],
        "type",
        "spec.subject.selector.matchExpressions[0].values",
    ),
    ("sink-binding", "spec.sink.reff", {}, "unknown field"),
    ("nats-channel", "spec.stream.config.replicas", "three", "type"),
    ("nats-channel", "spec.stream.confg", {}, "unknown field"),
    ("inference-service", "spec.predictor.model.modelFormat.nam", "huggingface", "unknown field"),
    ("inference-service", "spec.predictor.minReplicas", "zero", "type"),
    (
        "inference-service",
        "spec.predictor.model.resources.limits['nvidia.com/gpu']",
        1.5,
        "integer or a string",
    ),
    ("serving-runtime", "spec.supportedModelFormats[0].autoSelect", "yes", "type"),
    ("service-monitor", "spec.endpoints[0].intervall", "30s", "unknown field"),
    ("service-monitor", "spec.endpoints", {"port": "http"}, "type"),
    ("pod-monitor", "spec.podMetricsEndpoints[0].portt", "metrics", "unknown field"),
    (
        "prometheus-rule",
        "spec.groups[0].rules[0].labels",
        {"severity": 2},
        "type",
        "spec.groups[0].rules[0].labels.severity",
    ),
    ("prometheus-rule", "spec.groups[0].rules[0].summary", "x", "unknown field"),
    ("analysis-job", "spec.media.ids", "0b9d4c1e", "type"),
    ("analysis-job", "spec.caseID", "x", "unknown field"),
    ("analysis-job", "spec.priority", "asap", "is not one of"),
    ("analysis-job", "spec.steps", ["probe", "transcribe", "probe"], "duplicate entry", "spec.steps[2]"),
    ("analysis-job", "spec.holdUntil", "2026-03-01 late", "is not a 'date-time'"),
    ("analysis-job", "metadata.uid", 7, "type"),
    ("analysis-job", "metadata.labels", {"aima.io/case": 7}, "type", "metadata.labels['aima.io/case']"),
    ("deployment", "spec.template.spec.containers[0].imagee", "x", "unknown field"),
    ("deployment", "spec.replicas", "two", "type"),
    ("deployment", "spec.strategy.rollingUpdate.maxSurge", 0.5, "integer or a string"),
    ("broker-config", "data.channel-template-spec", {"kind": "NatsJetStreamChannel"}, "type"),
]


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_correct_example_is_valid(name: str) -> None:
    assert kube.validate(EXAMPLES[name]()) == []


@pytest.mark.parametrize("case", BROKEN, ids=[f"{case[0]}:{case[1]}" for case in BROKEN])
def test_a_broken_example_is_refused_naming_the_field(case: tuple[Any, ...]) -> None:
    name, path, value, says, *field = case
    problems = kube.validate(_set(EXAMPLES[name](), path, value))
    named = [p for p in problems if p.startswith(f"{field[0] if field else path}: ")]
    assert named, problems
    assert any(says in p for p in named), named


def test_every_vendored_kind_and_aimas_own_are_known() -> None:
    assert kube.crd_kinds() == {
        ("serving.knative.dev/v1", "Service"),
        ("eventing.knative.dev/v1", "Broker"),
        ("eventing.knative.dev/v1", "Trigger"),
        ("sources.knative.dev/v1", "SinkBinding"),
        ("messaging.knative.dev/v1alpha1", "NatsJetStreamChannel"),
        ("serving.kserve.io/v1beta1", "InferenceService"),
        ("serving.kserve.io/v1alpha1", "ServingRuntime"),
        ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("aima.io/v1alpha1", "AnalysisJob"),
    }
    # The example kinds cover every CRD kind but ClusterServingRuntime (ServingRuntime's twin).
    examples = {(e()["apiVersion"], e()["kind"]) for e in EXAMPLES.values()}
    assert kube.crd_kinds() - examples == {("serving.kserve.io/v1alpha1", "ClusterServingRuntime")}
    # AIMA's CRD is read where it lives, not copied.
    assert kube.crd_schemas()[("aima.io/v1alpha1", "AnalysisJob")].source == "operators/analysisjob/crd.yaml"
    assert not any("analysisjobs.aima.io" in f.read_text(encoding="utf-8") for f in CRDS.glob("*.yaml"))


def test_every_vendored_file_is_listed_with_its_source() -> None:
    versions = (CRDS / "VERSIONS.md").read_text(encoding="utf-8")
    files = sorted(CRDS.glob("*.yaml*"))
    assert files
    for path in files:
        assert f"`{path.name}`" in versions, path.name
        opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as stream:
            text = stream.read()
        taken = re.match(r"# CustomResourceDefinitions taken from (\S+) at (\S+) \(", text)
        assert taken, path.name
        repo, tag = taken.groups()
        assert repo in versions
        assert f"`{tag}`" in versions
        for source in re.findall(r"^# source: \S+@\S+:(\S+)$", text, re.M):
            assert source.rsplit("/", 1)[-1].split("_", 1)[-1] in versions, source


def test_an_unknown_kind_is_refused() -> None:
    assert kube.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}) == [
        "no schema for example.com/v1/Widget"
    ]
    # A known kind in a version that is not served (or not vendored) has no schema either.
    isvc = inference_service() | {"apiVersion": "serving.kserve.io/v1alpha1"}
    assert kube.validate(isvc) == ["no schema for serving.kserve.io/v1alpha1/InferenceService"]
    # A built-in kind name in another group is not the built-in.
    assert kube.validate(deployment() | {"apiVersion": "apps.example.com/v1"}) == [
        "no schema for apps.example.com/v1/Deployment"
    ]
    assert kube.validate({"kind": "ConfigMap", "metadata": {"name": "x"}}) == [
        "apiVersion, kind: required (non-empty strings)"
    ]


def test_builtins_agree_with_kubernetes_validate_strictly() -> None:
    """The same verdict as kubernetes_validate.validate(strict=True), which stops at the first error."""
    good, bad = deployment(), _set(deployment(), "spec.template.spec.containers[0].imagee", "x")
    kubernetes_validate.validate(good, kube.KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kube.KUBERNETES_VERSION, strict=True)
    assert kube.validate(good) == []
    assert kube.validate(bad) != []


def test_every_problem_of_an_object_is_reported() -> None:
    broken = _set(_set(deployment(), "spec.replicas", "two"), "spec.template.spec.containers[0].imagee", "x")
    broken["metadata"]["name"] = "Gateway"
    problems = kube.validate(broken)
    assert [p.split(":")[0] for p in problems] == [
        "spec.replicas",
        "spec.template.spec.containers[0].imagee",
        "metadata.name",
    ], problems


def test_int_or_string_preserve_unknown_fields_and_nulls() -> None:
    monitor = service_monitor()
    for port in (8080, "metrics"):  # targetPort is x-kubernetes-int-or-string
        assert kube.validate(_set(monitor, "spec.endpoints[0].targetPort", port)) == []
    assert kube.validate(_set(monitor, "spec.endpoints[0].targetPort", True)) != []
    # Trigger.spec.delivery preserves unknown fields (delivery-timeout is an experimental feature) ...
    assert kube.validate(_set(trigger(), "spec.delivery.timeout", "PT30S")) == []
    # ... and so do the nested filter expressions, but not the filter object itself.
    assert kube.validate(_set(trigger(), "spec.filters[0].any[0].anything", {"x": 1})) == []
    assert kube.validate(_set(trigger(), "spec.filters[1].anything", {})) != []
    # A preserve-unknown-fields object takes any key: the channel's deploymentSpecTemplate.labels.
    assert (
        kube.validate(
            _set(nats_channel(), "spec.deploymentSpecTemplate", {"affinity": {}, "labels": {"a": "b"}})
        )
        == []
    )
    # A null is pruned, as the API server prunes a non-nullable null.
    assert kube.validate(_set(knative_service(), "spec.template.spec.timeoutSeconds", None)) == []
    # Required fields stay required.
    spec = copy.deepcopy(analysis_job()["spec"])
    del spec["caseId"]
    assert any(
        p.startswith("spec: 'caseId' is a required property")
        for p in kube.validate(analysis_job() | {"spec": spec})
    )


def test_the_channel_template_names_a_valid_nats_channel() -> None:
    template = yaml.safe_load(broker_config()["data"]["channel-template-spec"])
    assert (template["apiVersion"], template["kind"]) in kube.crd_kinds()
    assert kube.validate(template | {"metadata": {"name": "aima-kne-trigger"}}) == []
    assert broker()["spec"]["config"]["name"] == broker_config()["metadata"]["name"]


RBAC = "rbac.authorization.k8s.io/v1"
CRON = {"schedule": "@daily", "jobTemplate": {}}


@pytest.mark.parametrize(
    ("obj", "valid"),
    [
        (knative_service(), True),
        (_set(knative_service(), "metadata.name", "1-whisper"), False),  # Knative: a DNS-1035 label
        (_set(knative_service(), "metadata.name", "aima." + "w" * 10), False),
        (_set(inference_service(), "metadata.name", "aima-" + "l" * 59), False),  # > 63
        (_set(deployment(), "metadata.name", "aima.gateway"), True),  # a DNS-1123 subdomain
        (_set(deployment(), "metadata.name", "Aima_Gateway"), False),
        (_set(deployment(), "metadata.name", "a" * 254), False),
        (_set(deployment(), "metadata.namespace", "aima.prod"), False),  # a DNS-1123 label
        (_set(trigger(), "metadata.name", "9-steps.aima"), True),  # eventing: the API server's subdomain
        (_set(analysis_job(), "metadata.name", "harbour_fire"), False),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "9-gateway"}}, False),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gateway"}}, True),
        ({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "aima:operator"}}, True),
        ({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "r" * 53}, "spec": CRON}, False),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "aima-"}}, True),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, False),
    ],
)  # fmt: skip
def test_names_follow_the_kinds_rules(obj: Obj, valid: bool) -> None:
    problems = kube.validate(obj)
    assert (problems == []) is valid, problems
    assert all(p.startswith("metadata.") for p in problems), problems


def test_the_aima_crd_itself_is_a_valid_object() -> None:
    crd = yaml.safe_load((REPO / "operators/analysisjob/crd.yaml").read_text(encoding="utf-8"))
    assert kube.validate(crd) == []
    assert kube.validate(crd | {"metadata": {"name": "analysisjobs.aima.example"}}) == [
        "metadata.name: 'analysisjobs.aima.example' must be <spec.names.plural>.<spec.group>:"
        " 'analysisjobs.aima.io'"
    ]


def test_validate_all_prefixes_kind_and_name() -> None:
    objects: list[Obj | None] = [
        deployment(),
        _set(service_monitor(), "spec.endpoints[0].intervall", "30s"),
        None,
    ]
    assert kube.validate_all(objects) == [
        "ServiceMonitor/aima-gateway: spec.endpoints[0].intervall: unknown field"
    ]
