"""Human-readable form of a faithfulness :class:`~hiervae.graph.faithfulness.Report`."""

from __future__ import annotations

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
    if report.faithful:
        head = f"{graph.name}{source}: FAITHFUL - all {n} guide factors match the exact posterior's factorization"
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
            lines.append(f"FAIL {f.latent}: q({f.latent} | {given}) cannot equal p({f.latent} | {', '.join(earlier)}, {', '.join(graph.observed)})")
            a, b, cond = f.query
            lines.append(f"  needs {f.latent} independent of {{{', '.join(sorted(b))}}} given {{{', '.join(sorted(cond))}}} (with what they determine)")
            if f.path:
                lines.append(f"  open path: {_path_text(graph, f)}")
                for step in f.path[1:-1]:
                    lines.append(f"    {step.node}: {step.reason}")
            if f.suggestion is not None:
                lines.append(f"  fix: given: [{', '.join(f.suggestion)}]")
            lines.append("")
        earlier.append(f.latent)
    if len(failing) > shown:
        lines += [f"... and {len(failing) - shown} more failing factors (--all shows every one, --json gives them all)", ""]
    if report.analytic_kl:
        lines.append("analytic-KL ELBO (Pyro TraceMeanField_ELBO): valid for this model/guide pair")
    else:
        why = report.mean_field_problems[:3] or ["a guide or prior family has no closed-form KL (Monte Carlo ELBO, Trace_ELBO)"]
        lines.append("analytic-KL ELBO (Pyro TraceMeanField_ELBO): not valid - " + "; ".join(why))
    return "\n".join(lines)
