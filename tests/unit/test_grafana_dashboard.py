"""The Grafana dashboard only queries metrics kaito-ctrl really exports (a renamed metric breaks this test)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from kaito_ctrl.metrics import REGISTRY

DASHBOARD = Path(__file__).resolve().parents[2] / "manifests" / "grafana" / "kaito-ctrl-dashboard.json"


def exported_names() -> set[str]:
    # Importing the controllers' metric modules registers their metrics.
    for module in ("kaito_ctrl.controllers.provisioner.metrics", "kaito_ctrl.controllers.workspace.metrics"):
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # Histograms are queried by their series names even before a first observation.
    for family in REGISTRY.collect():
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


PREFIXES = ("controller_runtime_", "workqueue_", "kaito_", "leader_election_", "rest_client_")


def test_every_panel_queries_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", target["expr"])
            queried.update(w for w in re.findall(r"[a-z_][a-z0-9_]*", expr) if w.startswith(PREFIXES))
    assert len(queried) >= 10, queried
    missing = sorted(queried - exported)
    assert not missing, f"dashboard queries metrics that are not exported: {missing}"
