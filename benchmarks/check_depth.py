#!/usr/bin/env python
"""How do spec loading and ``hiervae check`` scale with the depth L of a SeRe-VAE?

    python benchmarks/check_depth.py                        # depths 10 100 1000
    python benchmarks/check_depth.py --depths 10 50 200 --json out/check_depth.json

For each depth it times, separately,

* load: ``load_graph(path, overrides=[f"vars.L={L}"])`` (parse, override, validate, expand
  loops, build and validate the graph), and
* check: ``check(graph, max_suggestions=25)``, as ``hiervae check`` runs it,

on two specs:

* ``specs/sere_mlp_mnist.yaml``: the paper's guide, unfaithful. Factors 3..L fail, each gets
  an open path, and the first 25 failing factors get a suggestion (each costs O(L) CI queries);
* ``specs/sere_mlp_mnist_faithful.yaml``: the corrected guide, faithful. Factor l lists l-1 z's,
  so the spec itself (and every CI query's conditioning set) grows quadratically with L.

Timing uses ``time.perf_counter``; depths up to ``--repeat-below`` are run ``--repeats`` times
(median reported, after one untimed warm-up at the smallest depth), larger depths once.
``growth`` is the time divided by the time at the previous depth; with depth growing 10x,
a growth of ~10 is linear and ~100 quadratic.  This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from hiervae.graph import load_graph
from hiervae.graph.faithfulness import check

ROOT = Path(__file__).resolve().parents[1]
SPECS = {
    "sere_mlp_mnist (unfaithful)": ROOT / "specs" / "sere_mlp_mnist.yaml",
    "sere_mlp_mnist_faithful": ROOT / "specs" / "sere_mlp_mnist_faithful.yaml",
}
MAX_SUGGESTIONS = 25  # what `hiervae check` uses without --all


def measure(path: Path, depth: int, repeats: int) -> dict:
    loads, checks = [], []
    graph = report = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = load_graph(path, overrides=[f"vars.L={depth}"])
        t1 = time.perf_counter()
        report = check(graph, max_suggestions=MAX_SUGGESTIONS)
        t2 = time.perf_counter()
        loads.append(t1 - t0)
        checks.append(t2 - t1)
    assert graph is not None and report is not None
    failing = [f for f in report.factors if not f.passed]
    return {
        "depth": depth,
        "nodes": graph.dag.number_of_nodes(),
        "edges": graph.dag.number_of_edges(),
        "guide_given_total": sum(len(f.given) for f in graph.guide),
        "faithful": report.faithful,
        "failing": len(failing),
        "open_paths": sum(f.path is not None for f in failing),
        "suggestions": sum(f.suggestion is not None for f in failing),
        "repeats": repeats,
        "load_s": statistics.median(loads),
        "check_s": statistics.median(checks),
        "load_all_s": loads,
        "check_all_s": checks,
    }


def _growth(rows: list[dict], i: int, key: str) -> str:
    if i == 0 or rows[i - 1][key] <= 0:
        return "-"
    return f"x{rows[i][key] / rows[i - 1][key]:.1f}"


def table(name: str, rows: list[dict]) -> str:
    head = ("depth", "nodes", "given total", "failing", "suggested", "load s", "growth", "check s", "growth")
    body = [
        (
            str(r["depth"]),
            str(r["nodes"]),
            str(r["guide_given_total"]),
            str(r["failing"]),
            str(r["suggestions"]),
            f"{r['load_s']:.4f}",
            _growth(rows, i, "load_s"),
            f"{r['check_s']:.4f}",
            _growth(rows, i, "check_s"),
        )
        for i, r in enumerate(rows)
    ]
    widths = [max(len(x[c]) for x in [head, *body]) for c in range(len(head))]
    fmt = lambda cells: "  ".join(cell.rjust(w) for cell, w in zip(cells, widths))  # noqa: E731
    return "\n".join([name, fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, body)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 100, 1000], help="depths L to measure (default: 10 100 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats (median) for depths <= --repeat-below (default: 5)")
    parser.add_argument("--repeat-below", type=int, default=100, help="larger depths run once (default: 100)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the measurements as JSON")
    args = parser.parse_args(argv)
    depths = sorted(set(args.depths))
    if not depths or depths[0] < 1:
        parser.error("depths must be positive integers")

    results: dict[str, list[dict]] = {}
    for name, path in SPECS.items():
        measure(path, depths[0], 1)  # warm-up: imports, caches
        rows = []
        for depth in depths:
            rows.append(measure(path, depth, args.repeats if depth <= args.repeat_below else 1))
            print(f"  {name}: L={depth} done", file=sys.stderr, flush=True)
        results[name] = rows
        print(table(name, rows), end="\n\n", flush=True)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "check_depth",
            "python": platform.python_version(),
            "machine": platform.machine(),
            "max_suggestions": MAX_SUGGESTIONS,
            "specs": {name: str(path.relative_to(ROOT)) for name, path in SPECS.items()},
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
