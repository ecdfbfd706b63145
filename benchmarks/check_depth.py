#!/usr/bin/env python
"""How do spec loading, ``hiervae check`` and compilation scale with the depth L of a SeRe-VAE?

    python benchmarks/check_depth.py                        # depths 10 100 1000
    python benchmarks/check_depth.py --depths 10 50 200 --json out/check_depth.json
    python benchmarks/check_depth.py --no-compile           # load and check only

For each depth it times, separately,

* load: ``load_graph(path, overrides=[f"vars.L={L}"])`` (parse, override, validate, expand
  loops, build and validate the graph),
* check: ``check(graph, max_suggestions=25)``, as ``hiervae check`` runs it, and
* compile: ``build_program(graph)`` (spec -> Program: every network built and
  initialised), on the same spec with every shared network shrunk to one hidden layer
  of ``--compile-width`` units (``networks.<name>.mlp=[W]`` overrides): at the paper's
  widths L = 1000 would be ~0.7G parameters, so the compile column measures the
  per-layer construction cost, not the paper's model,

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

import torch
import yaml

from hiervae.program import build_program
from hiervae.graph import load_graph
from hiervae.graph.faithfulness import check

ROOT = Path(__file__).resolve().parents[1]
SPECS = {
    "sere_mlp_mnist (unfaithful)": ROOT / "specs" / "sere_mlp_mnist.yaml",
    "sere_mlp_mnist_faithful": ROOT / "specs" / "sere_mlp_mnist_faithful.yaml",
}
MAX_SUGGESTIONS = 25  # what `hiervae check` uses without --all


def small_networks(path: Path, width: int) -> list[str]:
    """``--set`` overrides giving every shared network of the spec one hidden layer of ``width``."""
    doc = yaml.safe_load(path.read_text())
    return [f"networks.{name}.mlp=[{width}]" for name in doc.get("networks", {})]


def measure_compile(path: Path, depth: int, width: int) -> dict:
    graph = load_graph(path, overrides=[f"vars.L={depth}", *small_networks(path, width)])
    t0 = time.perf_counter()
    program = build_program(graph)
    seconds = time.perf_counter() - t0
    return {"compile_s": seconds, "compile_width": width,
            "compile_parameters": sum(p.numel() for p in program.parameters())}


def measure(path: Path, depth: int, repeats: int, compile_width: int | None = None,
            max_suggestions: int | None = MAX_SUGGESTIONS) -> dict:
    loads, checks = [], []
    graph = report = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph = load_graph(path, overrides=[f"vars.L={depth}"])
        t1 = time.perf_counter()
        report = check(graph, max_suggestions=max_suggestions)
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
        **(measure_compile(path, depth, compile_width) if compile_width else {}),
    }


def _growth(rows: list[dict], i: int, key: str) -> str:
    if i == 0 or rows[i - 1][key] <= 0:
        return "-"
    return f"x{rows[i][key] / rows[i - 1][key]:.1f}"


def table(name: str, rows: list[dict]) -> str:
    compiled = all("compile_s" in r for r in rows)
    head = ("depth", "nodes", "given total", "failing", "suggested", "load s", "growth", "check s", "growth")
    head += ("compile s", "growth", "params (small nets)") if compiled else ()
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
        ) + ((f"{r['compile_s']:.3f}", _growth(rows, i, "compile_s"), f"{r['compile_parameters']:,}") if compiled else ())
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
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time build_program (spec -> Program) on shrunk networks (default: on)")
    parser.add_argument("--compile-width", type=int, default=8, help="hidden units of every shared network when compiling (default: 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (network initialisation; default: 1)")
    parser.add_argument("--all", action="store_true", help="a suggestion for every failing factor, as `hiervae check --all`")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the measurements as JSON")
    args = parser.parse_args(argv)
    depths = sorted(set(args.depths))
    if not depths or depths[0] < 1:
        parser.error("depths must be positive integers")

    torch.set_num_threads(args.threads)
    width = args.compile_width if args.compile else None
    results: dict[str, list[dict]] = {}
    for name, path in SPECS.items():
        suggestions = None if args.all else MAX_SUGGESTIONS
        measure(path, depths[0], 1, width, suggestions)  # warm-up: imports, caches
        rows = []
        for depth in depths:
            rows.append(measure(path, depth, args.repeats if depth <= args.repeat_below else 1, width, suggestions))
            print(f"  {name}: L={depth} done", file=sys.stderr, flush=True)
        results[name] = rows
        print(table(name, rows), end="\n\n", flush=True)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "check_depth",
            "python": platform.python_version(),
            "machine": platform.machine(),
            "max_suggestions": None if args.all else MAX_SUGGESTIONS,
            "compile_width": width,
            "torch_threads": args.threads,
            "specs": {name: str(path.relative_to(ROOT)) for name, path in SPECS.items()},
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
