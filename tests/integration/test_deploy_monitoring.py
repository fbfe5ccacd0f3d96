"""deploy/monitoring and docker-compose.yml checked by the real tools: promtool, amtool, check-jsonschema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_template.monitoring.metrics import NAMES
from tests.conftest import ROOT, require_tool

pytestmark = pytest.mark.integration
DEPLOY = ROOT / "deploy" / "monitoring"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "mlops-service.json"


def run(*command: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_checks_config_rules_and_runs_the_alert_unit_tests() -> None:
    promtool = require_tool("promtool", "Debian package prometheus")
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts.test.yml"),
    ):
        result = run(promtool, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    tests = yaml.safe_load((DEPLOY / "alerts.test.yml").read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
    silent = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if not c.get("exp_alerts")}
    assert alerts == fired == silent  # each alert: a case where it fires and one where it must not
    assert {"HighErrorRate", "HighLatencyP99", "FeatureDrift", "LiveAccuracyLow"} <= alerts


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "Debian package prometheus")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    result = run(promtool, "check", "rules", str(tmp_path / "dashboard_rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("traffic", "latency", "error", "predictions by class", "drift", "live accuracy"):
        assert topic in titles


def metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\b((?:http|model)_[a-z0-9_]+)", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith("http_request_duration") else n for n in names}


def test_alerts_and_dashboard_only_use_documented_metrics() -> None:
    used = metric_names((DEPLOY / "alerts.yml").read_text()) | metric_names(DASHBOARD.read_text())
    assert used and used <= NAMES, sorted(used - NAMES)


def test_alertmanager_config_is_valid() -> None:
    amtool = require_tool("amtool", "Debian package prometheus-alertmanager")
    result = run(amtool, "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec() -> None:
    result = run(
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        "docker-compose.yml",
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"service", "redis", "prometheus", "grafana", "nginx"} <= set(compose["services"])
    for service in compose["services"].values():  # configuration files mounted from the repo exist
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
