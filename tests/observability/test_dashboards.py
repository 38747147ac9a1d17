"""The Grafana dashboard and the alert rules in deploy/: well-formed for Grafana's dashboard schema and
Prometheus' rule files, and every metric they query is one the gateway emits (so a renamed metric fails here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import running_app
from tests.observability.test_metrics import settings

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\b((?:gen_ai|openmaas)_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


async def emitted(tmp_path: Path) -> set[str]:
    async with running_app(settings(tmp_path, metrics={"access": "public", "tenant_labels": True})) as (_, client):
        await client.post(
            "/v1/chat/completions", json={"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}
        )
        text = (await client.get("/metrics")).text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def queried(expr: str) -> set[str]:
    """Metric names an expression reads (label names in ``by (…)`` and selectors ``{…}`` left out)."""
    bare = re.sub(r"\{[^}]*\}", "", re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr))
    return set(METRIC.findall(bare))


def known(name: str, names: set[str]) -> bool:
    """Emitted, or a sample name of an emitted family that has no sample yet (a counter nothing counted)."""
    return name in names or any(name.endswith(s) and name[: -len(s)] in names for s in SUFFIXES)


async def test_the_dashboard_is_well_formed_and_queries_only_emitted_metrics(tmp_path: Path) -> None:
    dash = json.loads((ROOT / "deploy/grafana/openmaas-gateway.json").read_text())
    assert isinstance(dash["title"], str) and isinstance(dash["uid"], str) and isinstance(dash["schemaVersion"], int)
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dash["templating"]["list"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    names = await emitted(tmp_path)
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")) and grid["x"] + grid["w"] <= 24
        assert panel["type"] in ("timeseries", "stat", "table", "bargauge") and panel["targets"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            used = queried(target["expr"])
            assert used, target
            assert all(known(n, names) for n in used), (panel["title"], used)
    for needed in (
        "openmaas_circuit_state",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "openmaas_cost_usd_total",
        "gen_ai_server_time_to_first_token_seconds_bucket",
    ):
        assert any(needed in t["expr"] for p in dash["panels"] for t in p["targets"]), needed


async def test_the_alert_rules_are_well_formed_and_query_emitted_metrics(tmp_path: Path) -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    names = await emitted(tmp_path)
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "OpenMaaSHighErrorRate",
        "OpenMaaSCircuitOpen",
        "OpenMaaSBudgetRefusals",
        "OpenMaaSLedgerSpoolLag",
    }
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"} and alert["annotations"]["summary"]
        used = queried(alert["expr"])
        assert used and all(known(n, names) for n in used), (alert["alert"], used)
