#!/usr/bin/env python
"""hiervae's IW evaluation and training step against the machine's own matmul floor.

    python benchmarks/floor.py --threads 1 --json out/bench/floor.json
    python benchmarks/floor.py --threads 2 --points 50 --samples 200 --repeats 7

The floor of a computation is the time its networks' matrix products alone take on this
machine, now: every ``nn.Linear`` call of one run is recorded (rows, in, out features, by
forward hooks), then exactly those products are replayed with ``torch.addmm`` on
preallocated tensors of the same shapes and dtype, in the same order, on the same threads.
A training step's floor is each forward product plus its two backward products (input
and weight gradients).  ``bf16`` replays the products in bfloat16, as autocast runs them.
Everything else a step does (activations, densities, KL, the optimiser, Python) is what
separates hiervae from its floor, so ``time / floor`` is the figure of merit; a CPU
without native bf16 matmuls shows a bf16 floor no lower than fp32's.

Sides are timed in interleaved rounds (``--repeats``); the table gives medians and the
spread (min-max) of each ratio over rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch

ROOT = Path(__file__).resolve().parents[1]

from hiervae.evaluation.iw import iw_log_likelihood  # noqa: E402
from hiervae.graph import build_graph  # noqa: E402
from hiervae.language import load_spec  # noqa: E402
from hiervae.nn.precision import network_precision  # noqa: E402
from hiervae.policy import select_objective  # noqa: E402
from hiervae.program import build_program, elbo_terms, loss  # noqa: E402
from hiervae.train.optim import make_optimizer  # noqa: E402
from hiervae.train.pyro_engine import PyroEngine  # noqa: E402


def record_linears(program: torch.nn.Module, fn) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every ``nn.Linear`` call while ``fn()`` runs."""
    calls: list[tuple[int, int, int]] = []

    def hook(module, inputs, _output):
        x = inputs[0]
        calls.append((x.numel() // module.in_features, module.in_features, module.out_features))

    handles = [m.register_forward_hook(hook) for m in program.modules() if isinstance(m, torch.nn.Linear)]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return calls


def replay(calls: list[tuple[int, int, int]], dtype: torch.dtype, backward: bool):
    """A function running exactly the recorded products (and, ``backward``, their two
    gradient products each) on preallocated tensors."""
    g = torch.Generator().manual_seed(0)
    ops = []
    for rows, n_in, n_out in calls:
        x = torch.randn(rows, n_in, generator=g).to(dtype)
        w = torch.randn(n_out, n_in, generator=g).to(dtype)
        b = torch.randn(n_out, generator=g).to(dtype)
        gy = torch.randn(rows, n_out, generator=g).to(dtype) if backward else None
        ops.append((x, w, b, gy))

    def run():
        for x, w, b, gy in ops:
            torch.addmm(b, x, w.t())
            if gy is not None:
                torch.mm(gy, w)  # grad input
                torch.mm(gy.t(), x)  # grad weight

    return run


def timed(fn, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "sere_mlp_mnist.yaml"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--points", type=int, default=20, help="IW: data points per estimate")
    parser.add_argument("--samples", type=int, default=200, help="IW: importance samples")
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256, help="training batch")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--pyro", action=argparse.BooleanOptionalAction, default=True, help="also time the pyro engine")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)

    spec = load_spec(args.spec, ["train.free_bits=0"])
    graph = build_graph(spec)
    torch.manual_seed(0)
    program = build_program(graph)
    dim = graph.nodes[program.observed[0]].dim
    g = torch.Generator().manual_seed(1)
    x_iw = (torch.rand(args.points, dim, generator=g) < 0.3).float()
    x_train = (torch.rand(args.batch, dim, generator=g) < 0.3).float()
    beta = torch.tensor(1.0)
    opt = make_optimizer(program.parameters(), graph.train.optimizer)

    def iw(precision):
        return lambda: iw_log_likelihood(program, x_iw, args.samples, args.chunk, precision=precision)

    def train(precision):
        def run():
            program.train()
            for _ in range(args.steps):
                with network_precision(program, precision, "cpu"):
                    value = loss(elbo_terms(program, x_train, True), beta) / args.batch
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
        return run

    sides = {"iw fp32": iw("fp32"), "iw bf16": iw("bf16"), "train fp32": train("fp32"), "train bf16": train("bf16")}
    if args.pyro:
        pyro.clear_param_store()
        engine = PyroEngine(program, select_objective(graph), graph.train.optimizer)

        def pyro_train():
            program.train()
            for _ in range(args.steps):
                engine.step(x_train, beta)
        sides["train pyro engine"] = pyro_train

    # the floors: the products each side runs, recorded once, replayed
    with torch.no_grad():  # unfolded, so every product is an nn.Linear call (folding keeps the shapes)
        iw_calls = record_linears(program, lambda: iw_log_likelihood(program, x_iw, args.samples, args.chunk, fold=False))
    train_calls = record_linears(program, lambda: loss(elbo_terms(program, x_train, True), beta).backward())
    train_calls = train_calls * args.steps
    floors = {"floor iw fp32": replay(iw_calls, torch.float32, False), "floor iw bf16": replay(iw_calls, torch.bfloat16, False),
              "floor train fp32": replay(train_calls, torch.float32, True),
              "floor train bf16": replay(train_calls, torch.bfloat16, True)}
    all_sides = {**sides, **floors}
    for fn in all_sides.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in all_sides}
    for r in range(args.repeats):
        order = list(all_sides) if r % 2 == 0 else list(reversed(all_sides))
        for name in order:
            times[name].append(timed(all_sides[name]))
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr)

    def ratio(a: str, b: str) -> dict:
        values = [x / y for x, y in zip(times[a], times[b])]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    ratios = {"iw fp32 / floor fp32": ratio("iw fp32", "floor iw fp32"),
              "iw bf16 / floor bf16": ratio("iw bf16", "floor iw bf16"),
              "iw fp32 / iw bf16": ratio("iw fp32", "iw bf16"),
              "floor iw fp32 / floor iw bf16": ratio("floor iw fp32", "floor iw bf16"),
              "train fp32 / floor fp32": ratio("train fp32", "floor train fp32"),
              "train bf16 / floor bf16": ratio("train bf16", "floor train bf16"),
              "train fp32 / train bf16": ratio("train fp32", "train bf16")}
    if args.pyro:
        ratios["train pyro engine / floor fp32"] = ratio("train pyro engine", "floor train fp32")
        ratios["train pyro engine / train fp32"] = ratio("train pyro engine", "train fp32")
    gflop = {"iw": sum(2 * r * i * o for r, i, o in iw_calls) / 1e9, "train": sum(6 * r * i * o for r, i, o in train_calls) / 1e9}
    result = {
        "config": {**vars(args), "json": str(args.json) if args.json else None, "spec": args.spec},
        "machine": {"cpu": _cpu(), "threads": args.threads, "torch": torch.__version__, "python": platform.python_version()},
        "gflop": gflop,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "floor_gflops": {k: (gflop["iw" if "iw" in k else "train"] / statistics.median(v)) for k, v in times.items() if k.startswith("floor")},
        "ratios": ratios,
    }
    print(f"{result['machine']['cpu']}, {args.threads} thread(s); IW {args.points} points x {args.samples} samples; "
          f"training batch {args.batch} x {args.steps} steps")
    for k, v in result["median_s"].items():
        extra = f"  ({result['floor_gflops'][k]:.1f} GFLOP/s)" if k in result["floor_gflops"] else ""
        print(f"  {k:<22} {v * 1e3:9.1f} ms{extra}")
    for k, v in ratios.items():
        print(f"  {k:<32} {v['median']:6.2f}x  ({v['min']:.2f}-{v['max']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
