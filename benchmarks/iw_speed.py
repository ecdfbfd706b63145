#!/usr/bin/env python
"""IW evaluation speed and peak memory of hiervae's SeRe-VAE, against a hand-written IW.

    python benchmarks/iw_speed.py                                 # 1 thread, 100 points x 1000 samples
    python benchmarks/iw_speed.py --threads 2 --json out/iw_speed.json
    python benchmarks/iw_speed.py --chunks 25,50,100,200,500,1000  # peak memory and time per chunk size
    python benchmarks/iw_speed.py --device cuda --points 1000 --full-test --data-dir DATA   # a GPU machine

What is timed: ``iw_log_likelihood(program, x, samples, chunk)`` (eval mode, BatchNorm
folded unless ``--no-fold``, no autograd) on ``--points`` random binary images of MNIST
shape (``--run DIR`` loads a trained run's weights and uses the first test images of its
dataset instead), with ``--chunk`` particles at a time (default: the spec's
``eval.chunk_size``).  The same IW written by hand on the reference network
(``benchmarks/reference_sere_vae.py``: same weights via ``load_from_program``, plain
torch, noise drawn in the same order) is timed in the same process, the two interleaved
``--repeats`` times, and reported as a ratio; with the same seed both give the same
estimate up to float round-off (reported as ``max_abs_diff``, a check that like is
compared with like).

Peak memory per chunk size (one ``iw_log_likelihood`` call with ``--samples`` particles
each): on CUDA ``torch.cuda.max_memory_allocated`` minus the memory held before the call;
on CPU the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``)
minus the resident size before the call, so it counts what the call itself allocated
(Linux only; otherwise reported as null).  For the CPU figure glibc is told to map
every block of 128 KiB or more separately (``mallopt``) so that freed tensors leave the
RSS; this is done after the timings, so the memory table's seconds are with that
allocator setting.

``--full-test`` also runs IW over the whole test split of ``--data-dir`` (MNIST: 10000
images, batches of ``--full-batch`` points) and reports its time; without it the JSON
holds the per-point cost and a clearly labelled extrapolation to 10000 points.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_sere_vae import MLP as RefMLP  # noqa: E402
from reference_sere_vae import SeReVAE, count_parameters, load_from_program, positive  # noqa: E402

from hiervae.program import build_program  # noqa: E402
from hiervae.evaluation import iw_log_likelihood  # noqa: E402
from hiervae.graph import build_graph  # noqa: E402
from hiervae.nn.fold import folded_batch_norm  # noqa: E402
from hiervae.nn.precision import network_precision  # noqa: E402
from hiervae.language import load_spec  # noqa: E402

LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------ the hand-written IW
def _normal_log_prob(value, loc, scale):
    return (-0.5 * ((value - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


def reference_log_weights(ref: SeReVAE, x: torch.Tensor, particles: int) -> torch.Tensor:
    """``(particles, B)`` log p(x, eps) - log q(eps | x), as one would write it by hand.

    Evidence encoders run once on ``(B, D)``; everything else on ``(particles * B, F)``.
    Noise: one standard-normal tensor ``(particles, B, dim)`` per layer, in layer order
    (the order of hiervae's guide), so the same seed gives the same particles.
    """
    k, b = particles, x.shape[0]
    n = k * b
    log_w = x.new_zeros(n)
    z, zs = None, []
    for l in range(ref.L):
        h = ref.evidence[l](x).expand(k, b, -1).reshape(n, -1)
        if l > 0:
            h = torch.cat([h, ref.latent[l - 1](z)], -1)
        q_loc, q_std = ref.q_loc[l](h), positive(ref.q_scale[l](h)).sqrt()
        eps = q_loc + torch.empty(k, b, ref.dim, dtype=x.dtype, device=x.device).normal_().reshape(n, -1) * q_std
        if l == 0:
            p_loc, p_std = ref.p1_loc, positive(ref.p1_raw).sqrt()
            shift, d, u = ref.f1_shift, positive(ref.f1_raw), ref.f1_u
        else:
            p_loc, p_std = ref.p_loc[l - 1](z), positive(ref.p_scale[l - 1](z)).sqrt()
            shift, d, u = ref.f_shift[l - 1](z), positive(ref.f_raw[l - 1](z)), ref.f_u[l - 1](z)
        log_w = log_w + _normal_log_prob(eps, p_loc, p_std) - _normal_log_prob(eps, q_loc, q_std)
        z = shift + d * eps + u * (u * eps).sum(-1, keepdim=True)
        zs.append(z)
    logits = ref.decoder(torch.cat(zs, -1))
    xs = x.expand(k, b, -1).reshape(n, -1)
    log_w = log_w - F.binary_cross_entropy_with_logits(logits, xs, reduction="none").sum(-1)
    return log_w.view(k, b)


@torch.no_grad()
def reference_iw(ref: SeReVAE, x: torch.Tensor, samples: int, chunk: int) -> torch.Tensor:
    """Chunked IW estimate of the reference, accumulated like hiervae's (float64 logsumexp)."""
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < samples:
        m = min(chunk, samples - done)
        acc = torch.logaddexp(acc, torch.logsumexp(reference_log_weights(ref, x, m).double(), 0))
        done += m
    return (acc - math.log(samples)).to(x.dtype)


# ------------------------------------------------------------------ measuring
def _rss_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"{field}:\s+(\d+) kB", text)
    return int(found.group(1)) if found else None


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def rss_tracks_live_memory() -> bool:
    """Make the CPU's resident size follow what is allocated (glibc): every block of 128 KiB
    or more is its own mapping, returned to the OS when freed.  Otherwise glibc keeps freed
    blocks and the RSS stays at its high-water mark.  Call after the timings (it changes
    how tensors are allocated); False where it is not available."""
    libc = _libc()
    try:
        return bool(libc and libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024) and libc.malloc_trim(0) is not None)
    except AttributeError:
        return False


def peak_memory_mib(fn, device: torch.device) -> float | None:
    """Peak memory allocated by ``fn()`` beyond what was held before, MiB (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return None
    base = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    return None if base is None or peak is None else (peak - base) / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


VARIANTS = {  # name -> (precision, fold)
    "fp32, BatchNorm folded": ("fp32", True),
    "fp32, BatchNorm unfolded": ("fp32", False),
    "bf16, BatchNorm folded": ("bf16", True),
}


def compare_variants(args, hiervae, x, device) -> dict:
    """Interleaved timings of :data:`VARIANTS` (order reversed every other round), each
    with the same seed per round; ratios of adjacent timings to the first variant, and
    each variant's mean estimate minus the first's (same particles up to round-off)."""
    names = list(VARIANTS)
    seconds = {n: [] for n in names}
    ratios = {n: [] for n in names[1:]}
    shift = {n: [] for n in names[1:]}
    for r in range(args.repeats):
        got = {}
        for name in (names if r % 2 == 0 else names[::-1]):
            precision, fold = VARIANTS[name]
            pyro.set_rng_seed(args.seed + 100 + r)
            out = {}
            seconds[name].append(timed(lambda: out.setdefault("v", hiervae(x, precision=precision, fold=fold)), device))
            got[name] = out["v"].double()
        for n in names[1:]:
            ratios[n].append(seconds[n][-1] / seconds[names[0]][-1])
            shift[n].append((got[n] - got[names[0]]).mean().item())
        print(f"compare round {r + 1}/{args.repeats}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in names),
              file=sys.stderr, flush=True)
    return {
        "seconds": {n: {"median": round(statistics.median(v), 3), "all": [round(t, 3) for t in v]} for n, v in seconds.items()},
        "time_ratio_to_first": {n: {"median": round(statistics.median(v), 3), "all": [round(t, 3) for t in v]}
                                for n, v in ratios.items()},
        "mean_estimate_shift_nats": {n: [round(d, 4) for d in v] for n, v in shift.items()},
    }


def load_program(args, device: torch.device):
    """(program, test images or None): the spec's program, or a trained run's."""
    if args.run:
        from hiervae.data import load_dataset
        from hiervae.run import RunDir

        run = RunDir(args.run).require()
        trained = run.load_trained(device)
        graph, program = trained.graph, trained.program
        data = graph.data
        splits = load_dataset(data.dataset, data_dir=args.data_dir or data.data_dir, binarize=data.binarize,
                              validation=data.validation, download=False)
        return graph, program, splits.test
    torch.manual_seed(args.seed)
    graph = build_graph(load_spec(Path(args.spec)))
    program = build_program(graph).to(device)
    test = None
    if args.full_test:
        from hiervae.data import load_dataset

        data = graph.data
        test = load_dataset(data.dataset, data_dir=args.data_dir or data.data_dir, binarize=data.binarize,
                            validation=data.validation, download=False).test
    return graph, program, test


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "sere_mlp_mnist.yaml"))
    parser.add_argument("--run", default=None, help="a trained run directory (its weights and test images)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=None, help="particles per chunk (default: the spec's eval.chunk_size)")
    parser.add_argument("--chunks", default="25,50,100,200,500,1000",
                        help="chunk sizes for the peak-memory table (comma separated; empty: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings of each side")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the hand-written IW of benchmarks/reference_sere_vae.py")
    parser.add_argument("--fold", action=argparse.BooleanOptionalAction, default=True,
                        help="fold eval-mode BatchNorm into the next Linear (both sides)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: the networks' matmuls in bf16, log densities float32 (both sides)")
    parser.add_argument("--compare", action="store_true",
                        help="also time the variants fp32 folded / fp32 unfolded / bf16 folded interleaved, as ratios")
    parser.add_argument("--full-test", action="store_true", help="also time IW over the whole test split")
    parser.add_argument("--full-batch", type=int, default=None, help="points per batch for --full-test (default --points)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    graph, program, test = load_program(args, device)
    program.eval()
    chunk = args.chunk or graph.eval.chunk_size
    dim = graph.nodes[program.observed[0]].dim
    if args.run:
        x = test[: args.points].to(device)
    else:
        g = torch.Generator().manual_seed(args.seed + 1)
        x = torch.bernoulli(torch.full((args.points, dim), 0.3), generator=g).to(device)

    def hiervae(xx, k=args.samples, c=chunk, precision=args.precision, fold=args.fold):
        return iw_log_likelihood(program, xx, k, c, precision=precision, fold=fold)

    sides = {"hiervae": hiervae}
    ref = None
    if args.reference:
        try:
            ref = load_from_program(program).eval()
        except (ValueError, AttributeError, KeyError, IndexError) as err:  # not the reference's architecture
            print(f"no reference comparison: {err}", file=sys.stderr)
    ref_fold = folded_batch_norm(ref) if ref is not None and args.fold else contextlib.nullcontext()
    ref_precision = (network_precision(ref, args.precision, device.type, networks=(RefMLP,))
                     if ref is not None else contextlib.nullcontext())

    with ref_fold, ref_precision:
        if ref is not None:
            sides["reference"] = lambda xx, k=args.samples, c=chunk: reference_iw(ref, xx, k, c)
        for fn in sides.values():  # warm-up
            fn(x[: min(10, len(x))], k=min(20, args.samples), c=min(10, chunk))
        seconds = {name: [] for name in sides}
        estimates = {}
        for r in range(args.repeats):
            for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                pyro.set_rng_seed(args.seed + r)
                out = {}
                seconds[name].append(timed(lambda: out.setdefault("v", sides[name](x)), device))
                estimates.setdefault(r, {})[name] = out["v"]
            print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in sides),
                  file=sys.stderr, flush=True)
        max_diff = None
        if ref is not None:
            max_diff = max((e["hiervae"] - e["reference"]).abs().max().item() for e in estimates.values())

        compare = compare_variants(args, hiervae, x, device) if args.compare else None

        memory = []
        if device.type == "cpu" and not rss_tracks_live_memory():
            print("cannot make the RSS follow live memory (not glibc?): CPU peaks are lower bounds", file=sys.stderr)
        for c in [int(s) for s in args.chunks.split(",") if s.strip()]:
            pyro.set_rng_seed(args.seed)
            t0 = time.perf_counter()
            peak = peak_memory_mib(lambda: hiervae(x, args.samples, c), device)
            memory.append({"chunk": c, "peak_mib": None if peak is None else round(peak, 1),
                           "seconds": round(time.perf_counter() - t0, 3)})
            print(f"chunk {c}: peak {memory[-1]['peak_mib']} MiB, {memory[-1]['seconds']} s", file=sys.stderr, flush=True)

        full = None
        if args.full_test:
            if test is None:
                parser.error("--full-test needs the dataset (--data-dir or the spec's data_dir)")
            batch = args.full_batch or args.points
            data = test.to(device)
            pyro.set_rng_seed(args.seed)
            values = []
            t = timed(lambda: values.extend(hiervae(xb) for xb in data.split(batch)), device)
            ll = torch.cat(values).double()
            full = {"points": len(data), "batch": batch, "seconds": round(t, 2), "iw_mean": ll.mean().item(),
                    "iw_stderr": (ll.std() / math.sqrt(len(ll))).item(), "trained": bool(args.run)}

    med = {n: statistics.median(v) for n, v in seconds.items()}
    per_point = med["hiervae"] / args.points
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"chunk": chunk},
        "env": {"torch": torch.__version__, "pyro": pyro.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "threads": torch.get_num_threads(),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()},
        "parameters": count_parameters(program),
        "seconds": {n: {"median": round(m, 3), "all": [round(s, 3) for s in seconds[n]]} for n, m in med.items()},
        "ratio_hiervae_over_reference": round(med["hiervae"] / med["reference"], 3) if "reference" in med else None,
        "max_abs_diff_hiervae_vs_reference": max_diff,
        "per_point_ms": round(1e3 * per_point, 3),
        "test_set_10000_extrapolated_s": round(per_point * 10000, 1),
        "compare": compare,
        "peak_memory": memory,
        "full_test": full,
    }
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(r: dict) -> None:
    c = r["config"]
    print(f"IW speed: {Path(c['spec']).name if not c['run'] else c['run']}, {r['parameters']:,} parameters, "
          f"{c['points']} points x {c['samples']} samples, chunk {c['chunk']}, device {c['device']}, "
          f"{r['env']['threads']} thread(s), BatchNorm folded: {c['fold']}, precision {c['precision']}")
    for name, s in r["seconds"].items():
        print(f"  {name:10s} {s['median']:8.2f} s (median of {len(s['all'])}: {', '.join(f'{v:.2f}' for v in s['all'])})")
    if r["ratio_hiervae_over_reference"] is not None:
        print(f"  time ratio hiervae / reference {r['ratio_hiervae_over_reference']:.3f}; "
              f"same-seed estimates differ by at most {r['max_abs_diff_hiervae_vs_reference']:.2e} nats")
    print(f"  per point {r['per_point_ms']:.2f} ms; 10000 points extrapolated: {r['test_set_10000_extrapolated_s']:.0f} s")
    if r["compare"]:
        first = next(iter(r["compare"]["seconds"]))
        print(f"  variants, interleaved ({len(r['compare']['seconds'][first]['all'])} rounds):")
        for name, s in r["compare"]["seconds"].items():
            ratio = r["compare"]["time_ratio_to_first"].get(name)
            shift = r["compare"]["mean_estimate_shift_nats"].get(name)
            extra = "" if ratio is None else (f"  time ratio to {first!r} {ratio['median']:.3f}; "
                                              f"mean estimate shift {', '.join(f'{d:+.4f}' for d in shift)} nats")
            print(f"    {name:26s} {s['median']:8.2f} s{extra}")
    if r["peak_memory"]:
        print(f"  {'chunk':>6s} {'peak MiB':>9s} {'seconds':>8s}")
        for m in r["peak_memory"]:
            peak = "n/a" if m["peak_mib"] is None else f"{m['peak_mib']:.1f}"
            print(f"  {m['chunk']:6d} {peak:>9s} {m['seconds']:8.2f}")
    if r["full_test"]:
        f = r["full_test"]
        print(f"  full test split: {f['points']} points in {f['seconds']:.1f} s (batch {f['batch']}), "
              f"IW mean {f['iw_mean']:.3f} +- {f['iw_stderr']:.3f}{'' if f['trained'] else ' (untrained weights)'}")


if __name__ == "__main__":
    main()
