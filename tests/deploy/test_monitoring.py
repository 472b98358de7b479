"""The chart's monitoring: the alerting rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``, recorded samples that fire each alert and keep it quiet); every alert has a
severity, a summary, a description and a runbook section in docs/monitoring.md; the rules and the
dashboard read only metrics the code exports and labels the PodMonitors set; the dashboard's queries
are valid PromQL; the chart renders a PodMonitor per function and for the model servers, the
PrometheusRule and the dashboard's ConfigMap, valid against the prometheus-operator CRDs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aima.telemetry.metrics import REGISTRY
from tests.deploy.chart import CHART, REPO, find, render
from tests.deploy.kube import validate

PROMETHEUS = CHART / "files" / "prometheus"
RULES = PROMETHEUS / "rules.yaml"
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yaml"))
DASHBOARD = CHART / "files" / "dashboards" / "aima.json"
DOC = REPO / "docs" / "monitoring.md"
VALUES = CHART / "values.yaml"
SEVERITIES = {"warning", "critical"}
SCRAPE_LABELS = {"function", "inferenceservice", "aima_workload"}
"""Target labels the rules read that the chart's PodMonitors set (relabelings)."""
DASHBOARD_VARIABLES = {"$__rate_interval": "5m", "$namespace": "aima", "$function": ".*"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    """Run promtool; skips the test when it is not installed."""
    if shutil.which("promtool") is None:
        pytest.skip(
            "promtool is not installed: scripts/ensure-tools.sh --test installs it (Debian's prometheus)"
        )
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def exported_series() -> set[str]:
    """Every series name the process's registry can export (counters' _total, histograms' parts)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{part}" for part in ("bucket", "count", "sum"))
    return names


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    assert UNIT_TESTS, "no promtool unit tests in files/prometheus/tests"
    result = promtool("test", "rules", *(str(path.relative_to(PROMETHEUS)) for path in UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_unit_test_and_stays_quiet_in_another() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fired == set(), "alerts no unit test fires"
    assert names - quiet == set(), "alerts no unit test checks quiet"
    assert (fired | quiet) - names == set(), "unit tests of alerts that do not exist"


def test_every_alert_has_severity_summary_description_and_its_runbook_section() -> None:
    anchors = {slug(line.lstrip("#")) for line in DOC.read_text().splitlines() if line.startswith("#")}
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"].strip(), name
        assert notes["description"].strip(), name
        assert notes["runbook"] == f"docs/monitoring.md#{name.lower()}", name
        assert name.lower() in anchors, f"{name}: no section {name} in docs/monitoring.md"


def test_the_rules_and_the_dashboard_read_metrics_the_code_exports() -> None:
    exported = exported_series()
    text = RULES.read_text() + "\n".join(dashboard_exprs())
    used = set(re.findall(r"\baima_[a-z_]+\b", text)) - SCRAPE_LABELS
    assert used, "the rules read no AIMA metric"
    assert used - exported == set()


def test_the_dashboards_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query, its variables filled in, as a recording rule that promtool checks."""
    exprs = dashboard_exprs()
    assert exprs
    rules = []
    for i, expr in enumerate(exprs):
        for variable, value in DASHBOARD_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_has_a_fixed_uid_and_a_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "aima-overview"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        for holder in [panel, *panel.get("targets", [])]:
            if "datasource" in holder:
                assert holder["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def monitored_values(**monitoring: Any) -> dict[str, Any]:
    inference = yaml.safe_load(VALUES.read_text())["inference"]
    values: dict[str, Any] = {"inference": {**inference, "enabled": True}}
    values["monitoring"] = {"enabled": True, **monitoring}
    return values


def test_the_chart_renders_a_podmonitor_per_function_and_one_for_the_model_servers() -> None:
    objects = render(monitored_values(labels={"release": "prometheus"}))
    services = {
        o["metadata"]["name"]: o
        for o in find(objects, "Service")
        if o["apiVersion"] == "serving.knative.dev/v1"
    }
    monitors = find(objects, "PodMonitor")
    problems = {o["metadata"]["name"]: found for o in monitors if (found := validate(o))}
    assert problems == {}
    by_service = {
        m["spec"]["selector"]["matchLabels"].get("serving.knative.dev/service"): m for m in monitors
    }
    assert set(services) <= set(by_service), "a function has no PodMonitor"
    for name, service in services.items():
        monitor = by_service[name]
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("user-port", "/metrics", "30s")
        function = service["metadata"]["labels"]["aima.io/function"]
        set_labels = {r["targetLabel"]: r.get("replacement") for r in endpoint["relabelings"]}
        assert set_labels == {"function": function, "aima_workload": "function"}
        assert monitor["metadata"]["labels"]["release"] == "prometheus"

    [models] = [m for m in monitors if m["metadata"]["name"] == "aima-model-servers"]
    selector = models["spec"]["selector"]
    for isvc in find(objects, "InferenceService"):
        pod_labels = isvc["spec"]["predictor"]["labels"]
        assert selector["matchLabels"].items() <= pod_labels.items(), isvc["metadata"]["name"]
    assert selector["matchExpressions"] == [
        {"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}
    ]
    [endpoint] = models["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "user-port"  # Serverless: KServe's predictors are Knative pods
    relabeled = {r["targetLabel"] for r in endpoint["relabelings"]}
    assert relabeled == {"inferenceservice", "aima_workload"}
    assert {
        r["targetLabel"] for m in monitors for r in m["spec"]["podMetricsEndpoints"][0]["relabelings"]
    } == SCRAPE_LABELS


def test_a_disabled_function_or_raw_deployments_change_what_is_scraped() -> None:
    values = monitored_values()
    values["functions"] = {"pose": {"enabled": False}}
    values["inference"]["deploymentMode"] = "RawDeployment"
    monitors = find(render(values), "PodMonitor")
    assert "aima-pose" not in {m["metadata"]["name"] for m in monitors}
    [models] = [m for m in monitors if m["metadata"]["name"] == "aima-model-servers"]
    [endpoint] = models["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] == 8080
    assert "port" not in endpoint


def test_the_prometheusrule_carries_the_rules_file_unchanged() -> None:
    objects = render(monitored_values(labels={"release": "prometheus"}))
    [rule] = find(objects, "PrometheusRule")
    assert validate(rule) == []
    assert rule["spec"]["groups"] == rule_groups()
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_the_dashboard_configmap_carries_the_json_with_the_sidecars_label() -> None:
    objects = render(monitored_values())
    [config_map] = [o for o in find(objects, "ConfigMap") if o["metadata"]["name"] == "aima-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["aima.json"]) == dashboard()


def test_nothing_of_monitoring_renders_unless_enabled() -> None:
    objects = render(monitored_values(enabled=False))
    assert find(objects, "PodMonitor") == find(objects, "PrometheusRule") == []
    assert [o for o in find(objects, "ConfigMap") if o["metadata"]["name"] == "aima-dashboard"] == []
    without = render(monitored_values(rules={"enabled": False}, dashboard={"enabled": False}))
    assert find(without, "PrometheusRule") == []
    assert [o for o in find(without, "ConfigMap") if o["metadata"]["name"] == "aima-dashboard"] == []
    assert find(without, "PodMonitor")
