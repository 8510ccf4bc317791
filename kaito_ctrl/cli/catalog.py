"""``kaito-ctrl presets`` and ``kaito-ctrl plan``: the catalog and an offline check of a Workspace file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.plan import plan_workspace
from kaito_ctrl.cli.inputs import documents

PRESETS_EXAMPLES = """\
examples:
  kaito-ctrl presets                 # the catalog, with the smallest Azure SKU each preset fits on one node
  kaito-ctrl presets --all -o json   # every preset, deprecated ones too, as JSON
"""
PLAN_EXAMPLES = """\
examples:
  kaito-ctrl plan -f examples/inference/kaito_workspace_phi_3.yaml
  cat workspace.yaml | kaito-ctrl plan -f - -o json
exit status: 0 when every Workspace is valid, 1 when one is not (each problem on stderr as FILE: FIELD: MESSAGE)
"""


def presets(args: argparse.Namespace) -> int:
    cat = catalog()
    rows = []
    for p in sorted(cat.presets.values(), key=lambda p: (p.family, p.weights_gib)):
        if p.deprecated and not args.all:
            continue
        rows.append(
            {
                "name": p.name,
                "model": p.model_id,
                "weights_gib": p.weights_gib,
                "context": p.context,
                "runtime": p.runtime,
                "tuning": p.tuning,
                "multi_node": p.distributed,
                "needs_token": p.auth,
                "deprecated": p.deprecated,
                "smallest_fit": _smallest_fit(p.name),
            }
        )
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'PRESET':32} {'WEIGHTS':>8} {'CONTEXT':>8} {'TUNING':6} {'MULTI':5} {'TOKEN':5} SMALLEST SINGLE-NODE FIT"
    print(header)
    for r in rows:
        print(
            f"{r['name']:32} {r['weights_gib']:>6.1f}Gi {r['context']:>8} {'yes' if r['tuning'] else '-':6} "
            f"{'yes' if r['multi_node'] else '-':5} {'yes' if r['needs_token'] else '-':5} {r['smallest_fit'] or '-'}"
        )
    return 0


def _smallest_fit(preset_name: str) -> str | None:
    from kaito_ctrl.api.estimator import EstimateError, estimate_nodes

    cat = catalog()
    preset = cat.preset(preset_name)
    assert preset is not None
    fits = []
    for sku in cat.skus.values():
        if sku.cloud != "azure":
            continue
        try:
            if estimate_nodes(preset, sku).nodes == 1:
                fits.append(sku)
        except EstimateError:
            continue
    if not fits:
        return None
    return min(fits, key=lambda s: (s.gpu_memory_gib, s.gpu_count)).name


def plan(args: argparse.Namespace) -> int:
    status = 0
    for doc in documents(args.filename):
        result = plan_workspace(doc.body)
        for e in result.errors:
            print(f"kaito-ctrl: {doc.where}: {e}", file=sys.stderr)
        for w in result.warnings:  # as kubectl prints an admission warning
            print(f"Warning: {doc.where}: {w}", file=sys.stderr)
        if args.output == "json":
            out: dict[str, Any] = {
                "name": result.name,
                "valid": result.valid,
                "errors": [str(e) for e in result.errors],
                "preset": result.preset,
                "instanceType": result.instance_type,
                "nodes": result.nodes,
                "gpusPerNode": result.gpus_per_node,
                "notes": result.notes,
                "warnings": result.warnings,
            }
            print(json.dumps(out, indent=2))
        else:
            print(f"workspace {result.name}: {'valid' if result.valid else 'INVALID'}")
            if result.valid:
                print(f"  preset: {result.preset}")
                print(f"  instance type: {result.instance_type or '(BYO nodes)'}")
                if result.nodes:
                    print(f"  nodes: {result.nodes} x {result.gpus_per_node} GPU(s)")
            for note in result.notes:
                print(f"  note: {note}")
        if not result.valid:
            status = 1
    return status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "presets",
        help="list the model presets and their GPU needs",
        epilog=PRESETS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.add_argument("--all", action="store_true", help="include deprecated presets")
    p.set_defaults(func=presets)
    q = sub.add_parser(
        "plan",
        help="check a Workspace file offline: validity, SKU fit, node count",
        epilog=PLAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("-f", "--filename", required=True, help="Workspace YAML file, or - for stdin")
    q.add_argument("-o", "--output", choices=["text", "json"], default="text")
    q.set_defaults(func=plan)
