"""Summarise a fault-matrix report (JSON lines written by the chaos tests) as the markdown table in
docs/reliability.md: ``python hack/chaos_summary.py .chaos-report.jsonl``."""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


def summarise(rows: list[dict[str, Any]]) -> str:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row.get("test", "provisioner-sigkill")].append(row)
    out = ["| Matrix | Runs | Failures of the invariant | Figures (median, max) |", "|---|---|---|---|"]
    for name, runs in sorted(groups.items()):
        conv = [r["converged_s"] for r in runs if "converged_s" in r] or [0.0]
        if name == "admission-fuzz":
            examples = sum(r["examples"] for r in runs)
            accepted = sum(v for r in runs for k, v in r.items() if k.endswith(":accepted"))
            denied = sum(v for r in runs for k, v in r.items() if k.endswith(":webhook-denial"))
            schema = sum(v for r in runs for k, v in r.items() if k.endswith(":schema-refusal"))
            extra = (
                f"{examples} Workspaces (v1alpha1 and v1beta1): {accepted} accepted, {schema} schema refusals, "
                f"{denied} webhook denials"
            )
            invariant = f"{sum(r['bad_answers'] for r in runs)} 5xx, timeouts or refusals naming no field"
        elif name == "informer-churn":
            bad = sum(r["missed_deletes"] for r in runs)
            extra = (
                f"{sum(r['apiserver_restarts'] for r in runs)} apiserver restarts, "
                f"{sum(r['relists'] for r in runs)} relists, {sum(r['deletes'] for r in runs)} deletes, "
                f"{sum(r['tombstones'] for r in runs)} delivered as tombstones"
            )
            invariant = f"{bad} missed deletes"
        elif name == "background-faults":
            faults = Counter(r["fault"] for r in runs)
            links = Counter(r["link"] for r in runs)
            phases = Counter(r["claim_at_fault"] for r in runs)
            gc = sorted(r["gc_resumed_s"] for r in runs if r["gc_resumed_s"] is not None)
            extra = (
                f"{sum(r['faults'] for r in runs)} faults ("
                + ", ".join(f"{n} {k}" for k, n in sorted(faults.items()))
                + "; links "
                + ", ".join(f"{n} {k}" for k, n in sorted(links.items()))
                + "; the claim was "
                + ", ".join(f"{k} in {n}" for k, n in sorted(phases.items()))
                + f"), {sum(r['restarts'] for r in runs)} task restarts"
                + (f", GC resumed in {statistics.median(gc):.1f} s, {max(gc):.1f} s" if gc else "")
            )
            lost = sum(r["tasks_lost"] for r in runs)
            left = sum(bool(r["orphan_left"]) for r in runs)
            invariant = f"{lost} tasks lost, {sum(r['duplicates'] for r in runs)} duplicates, {left} orphan pools left"
        elif name == "single-writer":
            faults = Counter(r["fault"] for r in runs)
            extra = (
                ", ".join(f"{n} {k}" for k, n in sorted(faults.items()))
                + f"; old leader stopped in {statistics.median(r['a_stopped_s'] for r in runs):.1f} s, "
                f"{max(r['a_stopped_s'] for r in runs):.1f} s; {sum(r['late_writes'] for r in runs)} late writes "
                "refused"
            )
            invariant = (
                f"{sum(r['late_applied'] for r in runs)} writes of the old leader applied after the new one's"
            )
        elif name == "provisioner-sigkill":
            bad = sum(r["orphans"] for r in runs)
            extra = (
                f"{sum(r['claims'] for r in runs)} claims, {sum(r['deleted'] for r in runs)} deleted, "
                f"{2 * len(runs)} SIGKILLs, ARM PUTs per run {statistics.median(r['arm_puts'] for r in runs):g}"
            )
            invariant = f"{bad} orphan pools, 0 missing pools (every live claim Ready)"
        else:  # a matrix this script does not know yet: its runs and times, never a crash
            extra, invariant = "", "(not summarised)"
        out.append(
            f"| {name} | {len(runs)} | {invariant} | converged {statistics.median(conv):.1f} s, "
            f"{max(conv):.1f} s; {extra} |"
        )
    return "\n".join(out)


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ".chaos-report.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
