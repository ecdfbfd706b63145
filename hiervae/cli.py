"""Command line: ``hiervae check | render | schema | fit | eval | sample`` (arguments only;
the bodies are in :mod:`hiervae.commands`).

Every command turns a :class:`~hiervae.errors.HiervaeError` into one line on stderr and
exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from hiervae.commands import COMMANDS
from hiervae.errors import HiervaeError


class UsageError(Exception):
    """A command line argparse cannot take: printed as one line like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage block and exit
        raise UsageError(message)


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a spec value, e.g. vars.L=100 (repeatable)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_eval_sample_parsers(sub) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `hiervae fit`")
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
        p.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="CPU threads for torch (default: torch's choice)")
        p.add_argument("--seed", type=int, default=0, help="seed of the guide / model samples (default: 0)")
        p.add_argument("--data-dir", metavar="DIR", help="offline data directory (default: the spec's data.data_dir, $HIERVAE_DATA, the cache)")
        p.add_argument("--no-download", action="store_true", help="never download data")
        p.add_argument("--best", action="store_true", help="use best.pt (the epoch with the best validation ELBO), not the last checkpoint")

    p = sub.add_parser("eval", help="IW log-likelihood, ELBO, KL and active units per layer of a run (writes RUN_DIR/eval_SPLIT.json)")
    common(p)
    p.add_argument("--iw", type=_positive_int, metavar="K", help="importance samples per example (default: the spec's eval.importance_samples)")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="evaluate the first N examples only")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--compile", action="store_true", help="torch.compile each chunk of the IW estimate (eval.compile; pays on long evaluations)")
    p.add_argument("--per-example", action="store_true", help="also write eval_SPLIT_per_example.csv (IW log-likelihood and ELBO per example)")

    p = sub.add_parser("sample", help="PNG grids of model samples and test reconstructions of a run")
    common(p)
    p.add_argument("-n", type=_positive_int, default=64, help="samples and reconstructions to draw (default: 64)")
    p.add_argument("--out", metavar="PNG_DIR", help="output directory (default: RUN_DIR)")


def build_parser() -> argparse.ArgumentParser:
    from hiervae import __version__

    parser = _Parser(prog="hiervae", description="Hierarchical latent-variable models declared as YAML graphs.")
    parser.add_argument("--version", action="version", version=f"hiervae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="does the guide respect the exact posterior's factorization? (exit 0 yes, 1 no, 2 bad spec)")
    _add_spec_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--all", action="store_true", help="details and suggestions for every failing factor (default: the first 25)")
    p.add_argument("--fix", action="store_true", help="write the corrected spec (an `extends:` overlay giving each failing factor its fix) and check it")
    p.add_argument("-o", "--out", default=None, metavar="FILE", help="where --fix writes (default: SPEC_fixed.yaml beside the spec)")

    p = sub.add_parser("render", help="draw the generative and inference graphs side by side (graphviz)")
    _add_spec_args(p)
    p.add_argument("-o", "--out", default="render", help="output directory (default: ./render), or a file: graph.svg, graph.png, graph.pdf")
    p.add_argument("--format", choices=("svg", "png", "pdf"), default="svg")
    p.add_argument("--check", action="store_true", help="mark failing guide factors and their open paths in red")
    p.add_argument("--dot", action="store_true", help="write the DOT source only (no graphviz binary needed)")

    p = sub.add_parser("fit", help="train a spec into a run directory (checkpoints, metrics, plots, TensorBoard)")
    _add_spec_args(p)
    p.add_argument("-o", "--out", default=None, help="run directory (default: runs/<spec name>)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (default: cpu)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (same spec)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="train for N epochs in all (same as --set train.epochs=N)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="offline data directory (overrides data.data_dir and $HIERVAE_DATA)")
    p.add_argument("--no-download", action="store_true", help="never download data; fail if it is not on disk")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads for torch, per process (default: torch's choice; with --nproc the cores divided among the processes)")
    p.add_argument("--nproc", type=_positive_int, default=None, metavar="N",
                   help="data-parallel training in N local processes (gloo on cpu, one GPU each on cuda); "
                        "train.batch_size is the global batch (see docs/distributed.md; under torchrun, omit it)")
    p.add_argument("--mlflow", metavar="URI", default=None,
                   help="also log params, metrics and artefacts to this MLflow tracking URI, e.g. sqlite:///mlflow.db (the mlflow extra)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no per-epoch lines")

    sub.add_parser("schema", help="print the JSON Schema of the spec language (for editors)")
    _add_eval_sample_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
        command = words[0] if words and words[0] in COMMANDS else ""
        print(f"hiervae{' ' + command if command else ''}: error: {err} (hiervae {command or ''} --help)".replace("  ", " "),
              file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except HiervaeError as err:
        print(f"hiervae {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"hiervae {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
