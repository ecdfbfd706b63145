"""Command line: ``hiervae check | render | schema``.

Every command turns a :class:`~hiervae.errors.HiervaeError` into one line on stderr and
exit code 2, without a traceback; heavy imports (torch, pyro) happen inside the
commands that need them, so ``check`` and ``schema`` start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from hiervae.errors import HiervaeError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def decorate(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn

    return decorate


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a spec value, e.g. vars.L=100 (repeatable)")


# ---------------------------------------------------------------- check
@command("check")
def run_check(args: argparse.Namespace) -> int:
    from hiervae.graph import load_graph
    from hiervae.graph.faithfulness import check
    from hiervae.report import format_report

    graph = load_graph(args.spec, args.overrides)
    report = check(graph, max_suggestions=None if args.all else 25)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(graph, report, show_all=args.all))
    return 0 if report.faithful else 1


# ---------------------------------------------------------------- render
@command("render")
def run_render(args: argparse.Namespace) -> int:
    from hiervae.graph import load_graph
    from hiervae.graph.faithfulness import check
    from hiervae.render import write

    graph = load_graph(args.spec, args.overrides)
    report = check(graph, max_suggestions=0) if args.check else None
    paths = write(graph, Path(args.out), formats=(args.format,), report=report, dot_only=args.dot)
    for path in paths:
        print(path)
    return 0


# ---------------------------------------------------------------- schema
@command("schema")
def run_schema(args: argparse.Namespace) -> int:
    from hiervae.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from hiervae import __version__

    parser = argparse.ArgumentParser(prog="hiervae", description="Hierarchical latent-variable models declared as YAML graphs.")
    parser.add_argument("--version", action="version", version=f"hiervae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="does the guide respect the exact posterior's factorization? (exit 0 yes, 1 no, 2 bad spec)")
    _add_spec_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--all", action="store_true", help="details and suggestions for every failing factor (default: the first 25)")

    p = sub.add_parser("render", help="draw the generative and inference graphs side by side (graphviz)")
    _add_spec_args(p)
    p.add_argument("-o", "--out", default="render", help="output directory (default: ./render)")
    p.add_argument("--format", choices=("svg", "png", "pdf"), default="svg")
    p.add_argument("--check", action="store_true", help="mark failing guide factors and their open paths in red")
    p.add_argument("--dot", action="store_true", help="write the DOT source only (no graphviz binary needed)")

    sub.add_parser("schema", help="print the JSON Schema of the spec language (for editors)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
