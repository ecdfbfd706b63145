"""``hiervae eval`` and ``hiervae sample``: the command bodies (``hiervae.cli`` defines the arguments).

Both read a run directory (:class:`hiervae.run.RunDir`), rebuild the program from its
``spec.yaml`` and ``checkpoint.pt`` and load the spec's dataset.  Every user-facing
failure (no run directory, no or corrupt checkpoint, missing data, no GPU) is a
:class:`~hiervae.errors.HiervaeError`: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hiervae.errors import HiervaeError, display_path
from hiervae.fileio import atomic_write_text


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HiervaeError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


def _load(args: argparse.Namespace):
    """(run, graph, program, splits) for a run directory; HiervaeError on any user-facing problem."""
    from hiervae.data import load_dataset
    from hiervae.run import RunDir

    run = RunDir(args.run_dir).require()
    device = _device(args.device)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    graph, program = run.load_program(device)
    data = graph.data
    splits = load_dataset(data.dataset, data_dir=args.data_dir or data.data_dir, binarize=data.binarize,
                          validation=data.validation, download=not args.no_download, dequantize=data.dequantize)
    return run, graph, program, splits


def _write_json(obj, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def eval_command(args: argparse.Namespace) -> int:
    import pyro

    from hiervae.evaluation.metrics import analytic_kl_valid, evaluate_split, pixel_dims

    run, graph, program, splits = _load(args)
    pyro.set_rng_seed(args.seed)
    analytic = analytic_kl_valid(graph)
    result = evaluate_split(program, splits, graph.eval, args.split, analytic_kl=analytic,
                      importance_samples=args.iw, limit=args.limit, progress=sys.stderr.isatty(),
                      pixel_dims=pixel_dims(graph))
    report = {"run": str(run.path), "spec": graph.name, "dataset": splits.name, "seed": args.seed,
              "chunk_size": graph.eval.chunk_size, **result.to_json()}
    out = run.path / f"eval_{args.split}.json"
    _write_json(report, out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(result.format_table())
        print(f"written: {display_path(out)}")
    return 0


def sample_command(args: argparse.Namespace) -> int:
    import pyro

    from hiervae.evaluation.samples import write_sample_grids

    run, graph, program, splits = _load(args)
    pyro.set_rng_seed(args.seed)
    out = Path(args.out) if args.out else run.path
    try:
        paths = write_sample_grids(program, splits.test, splits.image_shape, out, n=args.n)
    except ValueError as err:  # observations that are not images of the dataset's shape
        raise HiervaeError(f"{display_path(run.spec)}: {err}") from None
    except OSError as err:
        raise HiervaeError(f"{display_path(out)}: cannot write ({err.strerror or err})") from None
    for path in paths:
        print(display_path(path))
    return 0
