#!/usr/bin/env python
"""Training steps/s of hiervae's compiled SeRe-VAE against a hand-written PyTorch reference.

    python benchmarks/train_speed.py                          # 2 threads, 20 blocks x 10 steps
    python benchmarks/train_speed.py --threads 1 --json out/train_speed.json
    python benchmarks/train_speed.py --compile                # + torch.compile'd copies of both
    python benchmarks/train_speed.py --no-fused --validation on
    python benchmarks/train_speed.py --threads 1 --profile 5   # + where the time goes, by region

Both sides train the *same network* from the same initial weights
(``benchmarks/reference_sere_vae.py``, checked equal to float64 round-off by
``tests/test_benchmark_reference.py``), on random binary data of MNIST shape
(pre-generated, so no data loading is timed), batch 256, in train mode (batch norm
on batch statistics), with one ``torch.optim.Adam`` each (lr and weight decay from the
spec's ``train.optimizer``, ``fused=True`` where supported) and, as ``hiervae fit``
trains, Pyro validation off (``--validation on`` to time it with):

* hiervae: ``loss(elbo_terms(program, x), beta)`` + backward + ``opt.step()``: the
  direct (trace-free) evaluation of the guide and of the model on its sample, analytic
  KL per layer (what ``hiervae fit`` trains with);
* reference: ``SeReVAE(x, beta)`` + backward + ``opt.step()``;
* with ``--compile``, also ``hiervae+compile`` and ``reference+compile``: copies with the
  same weights whose loss function is compiled (forward and backward; the optimiser
  step stays eager).  hiervae's goes through
  :func:`hiervae.program.compile_loss`, the code path of ``train.compile: true``;
  the reference's through ``torch.compile(..., dynamic=False)``.  The first step
  (compilation) is timed separately, with dynamo's graph-break and graph counts; a side
  that fails to compile is reported and dropped.

Timing: after ``--warmup`` steps of each, ``--blocks`` blocks of ``--steps`` steps are
run for each side in turn (the order reversed every other block), each block timed with
``time.perf_counter``.  Other processes share the CPU, so
absolute steps/s are noisy; the figure of merit is the ratio hiervae/reference of
*adjacent* blocks (median over blocks, with min/max and IQR).  ``--profile`` adds a
torch.profiler breakdown (networks vs. the rest of the forward, backward, optimiser; op
counts) of both eager sides.  ``beta`` is a 0-d tensor
(a Python float would recompile ``torch.compile`` at every new value).
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
from torch.profiler import record_function

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_sere_vae import count_parameters, load_from_program  # noqa: E402

from hiervae.program import build_program, compile_loss, elbo_terms, loss  # noqa: E402
from hiervae.graph import build_graph  # noqa: E402
from hiervae.policy import select_objective  # noqa: E402
from hiervae.train.pyro_engine import PyroEngine  # noqa: E402
from hiervae.language import load_spec  # noqa: E402


def make_adam(params, lr: float, weight_decay: float, fused: bool) -> tuple[torch.optim.Adam, bool]:
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True), True
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay), False


def quantiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q[0], "q3": q[2]}


def build(args):
    """Program and reference (same initial weights), and the spec's Adam settings."""
    torch.manual_seed(args.seed)
    spec = load_spec(Path(args.spec))
    program = build_program(build_graph(spec)).to(args.device).train()
    reference = load_from_program(program).train()
    opt = spec.document.train.optimizer
    return program, reference, {"lr": float(opt.lr), "weight_decay": float(opt.weight_decay or 0.0)}


def copy_pair(program, reference):
    """Independent copies (same weights) for the compiled sides."""
    twin = build_program(program.graph).to(next(program.parameters()).device)
    twin.load_state_dict(program.state_dict())
    twin.train(program.training)
    return twin, load_from_program(twin)


def make_step(fn, opt):
    def step(x, beta):
        opt.zero_grad(set_to_none=True)
        value = fn(x, beta)
        value.backward()
        opt.step()
        return value

    return step


def sides(args, program, reference, opt_cfg):
    """name -> one training step (loss, backward, Adam step) of each side timed."""
    out, fused = {}, {}

    def add(name, module, fn):
        opt, fused[name] = make_adam(module.parameters(), fused=args.fused, **opt_cfg)
        out[name] = make_step(fn, opt)

    add("hiervae", program, lambda x, beta: loss(elbo_terms(program, x), beta))
    add("reference", reference, lambda x, beta: reference(x, beta))
    if args.pyro:  # train.engine: pyro on a copy with the same weights: SVI + pyro.optim.Adam (per parameter)
        p3, _ = copy_pair(program, reference)
        pyro.clear_param_store()
        objective = select_objective(p3.graph)
        engine = PyroEngine(p3, objective, p3.graph.train.optimizer)
        out["hiervae pyro engine"] = lambda x, beta: torch.tensor(engine.step(x, beta))
        fused["hiervae pyro engine"] = False
    if args.compile:
        p2, r2 = copy_pair(program, reference)
        add("hiervae+compile", p2, compile_loss(lambda x, beta: loss(elbo_terms(p2, x), beta), p2, True))
        add("reference+compile", r2, torch.compile(lambda x, beta: r2(x, beta), dynamic=False))
    return out, {"fused_adam": fused}


RATIOS = [  # (numerator, denominator): steps/s ratios of adjacent blocks
    ("hiervae", "reference"),
    ("hiervae pyro engine", "reference"),
    ("hiervae pyro engine", "hiervae"),
    ("hiervae+compile", "reference+compile"),
    ("hiervae+compile", "reference"),
    ("hiervae+compile", "hiervae"),
    ("reference+compile", "reference"),
]


def _dynamo_counts() -> dict:
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover
        return {}
    return {"graph_breaks": sum(counters["graph_break"].values()),
            "unique_graphs": counters["stats"]["unique_graphs"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "sere_mlp_mnist.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps of each side first")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True, help="fused Adam where supported")
    parser.add_argument("--pyro", action="store_true", help="also time train.engine: pyro (pyro.infer.SVI) on the same weights")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd copies of both losses (compile time reported separately)")
    parser.add_argument("--validation", choices=["on", "off"], default="off",
                        help="Pyro/torch distribution argument validation during the timed steps "
                             "(default off, as `hiervae fit` trains; Pyro's own default is on)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after timing, profile STEPS steps of each eager side (torch.profiler) by region and op")
    parser.add_argument("--profile-rounds", type=int, default=3, help="interleaved profiling rounds (median per region)")
    parser.add_argument("--quiet", action="store_true", help="no per-block progress on stderr")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    pyro.enable_validation(args.validation == "on")
    validation = pyro.poutine.util.is_validation_enabled()

    program, reference, opt_cfg = build(args)
    n_params = count_parameters(program)
    assert n_params == count_parameters(reference)
    steps, info = sides(args, program, reference, opt_cfg)

    dim = program.graph.nodes[program.observed[0]].dim
    g = torch.Generator().manual_seed(args.seed + 1)
    data = [torch.bernoulli(torch.rand(args.batch, dim, generator=g)).to(args.device) for _ in range(8)]
    beta = torch.tensor(1.0, device=args.device)  # 0-d tensor: no recompilation per value
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def run(name, n, offset=0):
        for i in range(n):
            steps[name](data[(offset + i) % len(data)], beta)
        sync()

    # first step (compilation for compiled sides, timed separately), then warm-up
    first_step = {}
    for name in list(steps):
        before = _dynamo_counts()
        t0 = time.perf_counter()
        try:
            value = steps[name](data[0], beta)
            sync()
            ok, error = bool(torch.isfinite(value).item()), None
        except Exception as exc:  # noqa: BLE001  (report a compile failure, time the rest)
            ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
        first = time.perf_counter() - t0
        if ok:
            run(name, args.warmup)
        after = _dynamo_counts()
        first_step[name] = {"first_step_s": round(first, 2), "works": ok, "error": error}
        if name.endswith("+compile"):
            first_step[name].update({k: after[k] - before.get(k, 0) for k in after})
        if not ok:
            print(f"{name}: first step failed: {error}", file=sys.stderr)
            del steps[name]
    if "hiervae" not in steps or "reference" not in steps:
        return {"error": "an eager side failed", "first_step": first_step}

    names = list(steps)
    times = {n: [] for n in names}
    for b in range(args.blocks):
        order = names if b % 2 == 0 else names[::-1]
        for name in order:
            t0 = time.perf_counter()
            run(name, args.steps, offset=b)
            times[name].append(time.perf_counter() - t0)
        if not args.quiet:
            line = ", ".join(f"{n} {args.steps / times[n][-1]:.2f}" for n in names)
            print(f"block {b + 1}/{args.blocks} steps/s: {line}", file=sys.stderr, flush=True)

    rate = {k: [args.steps / t for t in v] for k, v in times.items()}
    ratios = {}
    for a, b in RATIOS:
        if a in rate and b in rate:
            per_block = [x / y for x, y in zip(rate[a], rate[b])]
            ratios[f"{a} / {b}"] = {**quantiles(per_block), "per_block": [round(r, 3) for r in per_block]}
    result = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "validation": validation, **opt_cfg},
        "env": {"torch": torch.__version__, "pyro": pyro.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "threads": torch.get_num_threads()},
        "parameters": n_params,
        "steps_per_s": {k: quantiles(v) for k, v in rate.items()},
        "ms_per_step": {k: statistics.median(1e3 * t / args.steps for t in v) for k, v in times.items()},
        "ratios": ratios,
        "first_step": first_step,
        **info,
    }
    print_table(result)
    if args.profile:
        result["profile"] = profile_steps(args, program, reference, data, beta, opt_cfg)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


# ------------------------------------------------------------------ profile
def _label(module: torch.nn.Module, label: str) -> None:
    """Wrap one module instance's forward in a profiler range (instance attribute, no class patch)."""
    forward = module.forward

    def labelled(*a, **k):
        with record_function(label):
            return forward(*a, **k)

    module.forward = labelled


def label_program(program) -> None:
    obs = program.observed[0]
    for factor in program.factors.values():
        for enc in factor.encoders.values():
            _label(enc, "net: encoders")
        for net in factor.family.nets:
            _label(net, "net: q(eps) loc/scale")
    for name, site in program.sites.items():
        node = program.graph.nodes[name]
        if name == obs:
            _label(site.net, "net: decoder")
        else:
            for net in site.nets:
                _label(net, "net: prior loc/scale" if node.kind == "latent" else "net: bijector shift/diag/u")


def label_reference(ref) -> None:
    for m in [*ref.evidence, *ref.latent]:
        _label(m, "net: encoders")
    for m in [*ref.q_loc, *ref.q_scale]:
        _label(m, "net: q(eps) loc/scale")
    for m in [*ref.p_loc, *ref.p_scale]:
        _label(m, "net: prior loc/scale")
    for m in [*ref.f_shift, *ref.f_raw, *ref.f_u]:
        _label(m, "net: bijector shift/diag/u")
    _label(ref.decoder, "net: decoder")


def profile_steps(args, program, reference, data, beta, opt_cfg) -> dict:
    """torch.profiler over ``--profile`` steps of each side, by region and by op.

    Regions: the networks (each labelled module instance), the rest of the forward
    ("glue": for hiervae the walks, distribution objects and validation,
    transforms' arithmetic, KL; for the reference its own arithmetic and KL), backward
    and the optimiser step.  Network times include their ops' self time only in the
    forward; the backward is not split (autograd runs it outside the labelled ranges).
    """
    from torch.profiler import ProfilerActivity, profile

    fns = {
        "hiervae": lambda x: loss(elbo_terms(program, x), beta),
        "reference": lambda x: reference(x, beta),
    }
    label_program(program)
    label_reference(reference)
    opts = {}
    for name in ("hiervae", "reference"):
        opts[name], _ = make_adam((program if name == "hiervae" else reference).parameters(), fused=args.fused, **opt_cfg)
        for i in range(3):  # warm
            opts[name].zero_grad(set_to_none=True)
            fns[name](data[i % len(data)]).backward()
            opts[name].step()
    n = args.profile
    samples = {"hiervae": [], "reference": []}
    for r in range(args.profile_rounds):  # interleaved rounds: the machine is shared
        for name in (("hiervae", "reference") if r % 2 == 0 else ("reference", "hiervae")):
            opt = opts[name]
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for i in range(n):
                    opt.zero_grad(set_to_none=True)
                    with record_function("step: forward"):
                        value = fns[name](data[i % len(data)])
                    with record_function("step: backward"):
                        value.backward()
                    with record_function("step: optimizer"):
                        opt.step()
            samples[name].append(prof.key_averages())
    out = {}
    for name, runs in samples.items():
        region_runs = []
        for events in runs:
            regions = {e.key: e.cpu_time_total / 1e3 / n for e in events if e.key.startswith(("net: ", "step: "))}
            nets = sum(v for k, v in regions.items() if k.startswith("net: "))
            regions["glue (forward minus networks)"] = regions.get("step: forward", 0.0) - nets
            regions["step: total"] = sum(v for k, v in regions.items() if k.startswith("step: "))
            region_runs.append(regions)
        regions = {k: statistics.median(r.get(k, 0.0) for r in region_runs) for k in region_runs[0]}
        events = runs[0]
        by_key = {e.key: e for e in events}
        ops = [e for e in events if e.key.startswith("aten::")]
        top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:12]
        out[name] = {
            "ms_per_step": {k: round(v, 2) for k, v in sorted(regions.items())},
            "aten_calls_per_step": round(sum(e.count for e in ops) / n),
            "calls_per_step": {k: by_key[k].count // n for k in
                               ("aten::mm", "aten::addmm", "aten::bmm", "aten::all", "aten::cat", "aten::expand",
                                "aten::native_batch_norm", "aten::linear") if k in by_key},
            "top_ops_self_ms_per_step": {e.key: round(e.self_cpu_time_total / 1e3 / n, 2) for e in top},
        }
    print_profile(out)
    return out


def print_profile(p: dict) -> None:
    keys = sorted(set(p["hiervae"]["ms_per_step"]) | set(p["reference"]["ms_per_step"]))
    print("\nprofile (torch.profiler, ms per step, inclusive CPU time, median of interleaved rounds; profiler overhead included)")
    print(f"{'region':38s} {'hiervae':>9s} {'reference':>10s} {'diff':>8s}")
    for k in keys:
        h, r = p["hiervae"]["ms_per_step"].get(k, 0.0), p["reference"]["ms_per_step"].get(k, 0.0)
        print(f"{k:38s} {h:9.2f} {r:10.2f} {h - r:8.2f}")
    print(f"{'aten calls per step':38s} {p['hiervae']['aten_calls_per_step']:9d} {p['reference']['aten_calls_per_step']:10d}")
    for k in sorted(set(p["hiervae"]["calls_per_step"]) | set(p["reference"]["calls_per_step"])):
        print(f"{'  ' + k + ' calls':38s} {p['hiervae']['calls_per_step'].get(k, 0):9d} {p['reference']['calls_per_step'].get(k, 0):10d}")


def print_table(r: dict) -> None:
    c = r["config"]
    print(f"SeRe-VAE training speed: {Path(c['spec']).name}, {r['parameters']:,} parameters, batch {c['batch']}, "
          f"{r['env']['threads']} thread(s), device {c['device']}, fused Adam {r['fused_adam']['hiervae']}, "
          f"validation {'on' if c['validation'] else 'off'}")
    print(f"{c['blocks']} blocks x {c['steps']} steps per side, alternating, after {c['warmup']} warm-up steps; "
          f"torch {r['env']['torch']}, pyro {r['env']['pyro']}")
    print(f"{'side':20s} {'steps/s median':>15s} {'min':>7s} {'max':>7s} {'ms/step':>8s} {'first step s':>13s}")
    for name, s in r["steps_per_s"].items():
        print(f"{name:20s} {s['median']:15.2f} {s['min']:7.2f} {s['max']:7.2f} {r['ms_per_step'][name]:8.1f} "
              f"{r['first_step'][name]['first_step_s']:13.2f}")
    for name, q in r["ratios"].items():
        print(f"ratio {name:40s} median {q['median']:.3f}  IQR {q['q1']:.3f}-{q['q3']:.3f}  min {q['min']:.3f}  max {q['max']:.3f}")
    for name, v in r["first_step"].items():
        if name.endswith("+compile") or not v["works"]:
            extra = ", ".join(f"{k} {v[k]}" for k in ("graph_breaks", "unique_graphs") if k in v)
            print(f"{name}: works={v['works']}, first step {v['first_step_s']} s" + (f", {extra}" if extra else "")
                  + (f", error: {v['error']}" if v["error"] else ""))


if __name__ == "__main__":
    main()
