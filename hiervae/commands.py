"""The bodies of the ``hiervae`` commands; :mod:`hiervae.cli` parses the arguments.

Every command takes the parsed arguments and returns an exit code; a user-facing
problem is a :class:`~hiervae.errors.HiervaeError`, which the CLI prints as one line
(exit 2).  Heavy imports happen inside the commands that need them, so ``schema`` starts
fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from hiervae.errors import HiervaeError, display_path

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def decorate(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn

    return decorate


@command("check")
def run_check(args: argparse.Namespace) -> int:
    from hiervae.graph.faithfulness import check
    from hiervae.graph.report import format_report
    from hiervae.policy import load_checked

    if (args.fix or args.out) and args.overrides:
        raise HiervaeError("--fix writes an overlay of the file as written: put the --set values in the file first")
    if args.out and not args.fix:
        raise HiervaeError("-o names the file --fix writes: add --fix")
    spec, graph, _ = load_checked(args.spec, args.overrides)  # what fit would refuse, refused here first
    report = check(graph, max_suggestions=None if args.all or args.fix else 25)
    fixed = _write_fix(args, spec, graph, report) if args.fix and not report.faithful else None
    if args.json:
        out = report.to_json()
        if fixed is not None:
            out["fix"] = {"written": str(fixed[0]), "faithful": fixed[1].faithful}
        print(json.dumps(out, indent=2))
    else:
        print(format_report(graph, report, show_all=args.all))
        if fixed is not None:
            verdict = "FAITHFUL" if fixed[1].faithful else "still NOT FAITHFUL"
            print(f"\nfix: wrote {display_path(fixed[0])}; hiervae check {display_path(fixed[0])}: {verdict}")
        elif args.fix:
            print("\nfix: nothing to fix")
    return 0 if (fixed[1] if fixed else report).faithful else 1


def _write_fix(args: argparse.Namespace, spec, graph, report):
    """Write the corrected overlay and check it: (path, its report)."""
    from hiervae.fileio import atomic_write_text
    from hiervae.graph.faithfulness import check
    from hiervae.language.fix import fix_overlay
    from hiervae.policy import load_checked

    spec_path = Path(args.spec)
    out = Path(args.out) if args.out else spec_path.with_name(f"{spec_path.stem}_fixed.yaml")
    if out.resolve() == spec_path.resolve():
        raise HiervaeError(f"--fix would overwrite {display_path(spec_path)}: name another file with -o")
    fixes = {f.latent: f.suggestion for f in report.factors if not f.passed and f.suggestion is not None}
    givens = {f.latent: f.given for f in graph.guide} | {n: f.given for n, f in graph.features.items()}
    try:
        atomic_write_text(out, fix_overlay(spec, givens, fixes, out))
    except OSError as err:
        raise HiervaeError(f"{display_path(out)}: cannot write the fixed spec ({err.strerror})") from None
    return out, check(load_checked(out)[1])


@command("render")
def run_render(args: argparse.Namespace) -> int:
    from hiervae.graph import load_graph
    from hiervae.graph.faithfulness import check
    from hiervae.render import write

    graph = load_graph(args.spec, args.overrides)
    report = check(graph, max_suggestions=0) if args.check else None
    out, fmt, name = Path(args.out), args.format, None
    if out.suffix.lstrip(".") in ("svg", "png", "pdf", "gv"):  # -o graph.png: that file (and graph.gv beside it)
        out, name = out.parent, out.stem
        fmt = args.format if out.suffix == ".gv" else Path(args.out).suffix.lstrip(".")
    paths = write(graph, out, formats=(fmt,), report=report, dot_only=args.dot or Path(args.out).suffix == ".gv",
                  name=name)
    for path in paths:
        print(path)
    return 0


@command("schema")
def run_schema(args: argparse.Namespace) -> int:
    from hiervae.language import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


@command("fit")
def run_fit(args: argparse.Namespace) -> int:
    import torch

    from hiervae.train import fit
    from hiervae.train.collectives import launched_by_torchrun
    from hiervae.train.launch import launch

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    options = dict(out=args.out, device=args.device, resume=args.resume, data_dir=args.data_dir,
                   download=not args.no_download, quiet=args.quiet)
    if args.nproc is not None and args.nproc > 1:  # N local processes; this one only waits for them
        if args.mlflow:
            raise HiervaeError("--mlflow logs single-process runs (with --nproc, log from a torchrun launch)")
        result = launch(args.nproc, args.spec, overrides, threads=args.threads, **options)
    else:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        torchrun = launched_by_torchrun()
        result = fit(args.spec, overrides, distributed=torchrun, mlflow=args.mlflow, **options)
        if torchrun and os.environ.get("RANK") != "0":
            return 0  # rank 0 reports (an error, though, is printed by every rank that meets it)
    run = result.run
    elbo = "n/a (no validation split)" if result.valid_elbo is None else f"{result.valid_elbo:.3f} nats"
    best = "" if result.best_valid_elbo is None else f" (best {result.best_valid_elbo:.3f})"
    kl = "analytic KL" if result.analytic_kl else "Monte Carlo KL"
    print(f"trained {result.epochs} epochs ({result.step} steps, {kl}) in {result.seconds:.1f} s; final validation ELBO {elbo}{best}")
    print(f"  run directory: {display_path(run.path)}")
    print(f"  checkpoint:    {display_path(run.checkpoint)}")
    print(f"  metrics:       {display_path(run.metrics)}")
    print(f"  plots:         {display_path(run.plots)}/")
    print(f"  tensorboard:   tensorboard --logdir {display_path(run.tensorboard)}")
    return 0


def _load_run(args: argparse.Namespace):
    """(run, trained, splits) for ``eval`` / ``sample``; HiervaeError on any user-facing problem."""
    import torch

    from hiervae.data.loading import load_data
    from hiervae.policy import resolve_device
    from hiervae.run import RunDir

    run = RunDir(args.run_dir).require()
    device = resolve_device(args.device)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    trained = run.load_trained(device, best=getattr(args, "best", False))
    data = load_data(trained.graph, data_dir=args.data_dir, download=not args.no_download)
    run.warn_if_data_changed(data.source, lambda line: print(line, file=sys.stderr))
    return run, trained, data


@command("eval")
def run_eval(args: argparse.Namespace) -> int:
    import pyro

    from hiervae.evaluation.metrics import evaluate_split
    from hiervae.fileio import atomic_write_text

    run, trained, splits = _load_run(args)
    graph = trained.graph
    pyro.set_rng_seed(args.seed)
    eval_spec = graph.eval.model_copy(update={"compile": True}) if args.compile else graph.eval
    result = evaluate_split(trained.program, splits, eval_spec, args.split, analytic_kl=trained.analytic_kl,
                            importance_samples=args.iw, limit=args.limit, progress=sys.stderr.isatty(),
                            pixel_dims=graph.pixel_dims, per_example=args.per_example)
    report = {"run": str(run.path), "spec": graph.name, "dataset": splits.name, "seed": args.seed,
              "chunk_size": graph.eval.chunk_size, **result.to_json()}
    out = run.path / f"eval_{args.split}.json"
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    if result.per_example is not None:  # one row per example, in the split's order
        rows = zip(result.per_example["iw_log_likelihood"], result.per_example["elbo"])
        table = run.path / f"eval_{args.split}_per_example.csv"
        atomic_write_text(table, "index,iw_log_likelihood,elbo\n" + "".join(
            f"{i},{ll!r},{e!r}\n" for i, (ll, e) in enumerate(rows)))
        print(f"written: {display_path(table)}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(result.format_table())
        print(f"written: {display_path(out)}")
    return 0


@command("sample")
def run_sample(args: argparse.Namespace) -> int:
    import pyro

    from hiervae.evaluation.samples import write_sample_grids

    run, trained, splits = _load_run(args)
    pyro.set_rng_seed(args.seed)
    out = Path(args.out) if args.out else run.path
    try:
        paths = write_sample_grids(trained.program, splits.test, splits.image_shape, out, n=args.n,
                                   node=splits.image_node)
    except ValueError as err:  # observations that are not images of the dataset's shape
        raise HiervaeError(f"{display_path(run.spec)}: {err}") from None
    except OSError as err:
        raise HiervaeError(f"{display_path(out)}: cannot write ({err.strerror or err})") from None
    for path in paths:
        print(display_path(path))
    return 0
