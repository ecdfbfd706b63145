"""Human-readable form of a faithfulness :class:`~hiervae.graph.faithfulness.Report`."""

from __future__ import annotations

from hiervae.graph.dsep import functional_closure
from hiervae.graph.faithfulness import FactorResult, Report
from hiervae.graph.ir import ModelGraph

DETAILED = 5  # failing factors explained in full unless --all


def _path_text(graph: ModelGraph, result: FactorResult) -> str:
    nodes = [s.node for s in result.path or []]
    dag = graph.dag
    out = nodes[0]
    for u, v in zip(nodes, nodes[1:]):
        out += f" -> {v}" if dag.has_edge(u, v) else f" <- {v}"
    return out


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def format_report(graph: ModelGraph, report: Report, show_all: bool = False) -> str:
    failing = [f for f in report.factors if not f.passed]
    source = f" ({graph.source})" if graph.source else ""
    n = len(report.factors)
    order = {name: i for i, name in enumerate(graph.nodes)}

    def names(nodes) -> str:
        return ", ".join(sorted(nodes, key=order.__getitem__))

    if n == 0:
        head = f"{graph.name}{source}: nothing to check - the model has no latent variables"
    elif report.faithful:
        head = f"{graph.name}{source}: FAITHFUL - " + ("the guide factor matches" if n == 1 else f"all {n} guide factors match") + " the exact posterior's factorization"
    else:
        head = f"{graph.name}{source}: NOT FAITHFUL - {len(failing)} of {n} guide factors cannot match the exact posterior"
    lines = [head, ""]
    if n:
        rows = [("factor", "given", "verdict")]
        rows += [(f.latent, ", ".join(f.given) or "-", "PASS" if f.passed else "FAIL") for f in report.factors]
        lines += _table(rows) + [""]
    earlier: list[str] = []
    shown = 0
    for f in report.factors:
        if not f.passed and (show_all or shown < DETAILED):
            shown += 1
            given = ", ".join(f.given) or "nothing"
            exact = ", ".join([*earlier, *graph.observed])
            lines.append(f"FAIL {f.latent}: q({f.latent} | {given}) cannot equal p({f.latent} | {exact})")
            a, b, cond = f.query
            determined = functional_closure(graph.dag, cond) - cond
            also = f", which also determine {{{names(determined)}}}" if determined else ", which determine nothing else"
            given_text = f"{{{names(cond)}}}" if cond else "nothing"
            lines.append(f"  needs {f.latent} independent of {{{names(b)}}} given {given_text}{also}")
            if f.path:
                lines.append(f"  open path: {_path_text(graph, f)}")
                for step in f.path[1:-1]:
                    lines.append(f"    {step.node}: {step.reason}")
            if f.suggestion is not None:
                lines.append(f"  fix: given: [{', '.join(f.suggestion)}]")
            lines.append("")
        earlier.append(f.latent)
    if len(failing) > shown:
        lines += [f"... and {len(failing) - shown} more failing factors (--all explains and fixes every one)", ""]
    if n == 0:
        pass
    elif report.analytic_kl:
        lines.append("analytic-KL ELBO (Pyro TraceMeanField_ELBO): valid for this model/guide pair")
    else:
        why = report.mean_field_problems[:3]
        if report.kl_families_missing:
            why.append(f"no closed-form KL for family {', '.join(report.kl_families_missing)}; "
                       f"training uses the Monte Carlo ELBO (Trace_ELBO)")
        lines.append("analytic-KL ELBO (Pyro TraceMeanField_ELBO): not valid - " + "; ".join(why))
    return "\n".join(lines)
