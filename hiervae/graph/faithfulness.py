"""Does the guide respect the factorization of the model's exact posterior?

The exact posterior factorizes in the guide's sampling order as
``p(e_1..e_n | x) = prod_i p(e_i | e_<i, x)``.  A guide factor ``q(e_i | P_i, x)`` can
equal ``p(e_i | e_<i, x)`` for all parameter values exactly when, in the model DAG,

    e_i  ⊥  (e_<i minus what P_i determines)  |  P_i ∪ observed

(see ``docs/checks.md``).  For a failing factor the report carries one open path as
evidence and a 1-minimal conditioning set that would fix it, preferring transform
nodes (summaries shared with the model) over raw samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import networkx as nx

from hiervae.graph.catalog import FAMILIES
from hiervae.graph.dsep import PathStep, computable, conditionally_independent, functional_closure, open_path
from hiervae.graph.ir import LATENT, TRANSFORM, ModelGraph


@dataclass(frozen=True)
class FactorResult:
    latent: str
    given: tuple[str, ...]
    passed: bool
    query: tuple[frozenset[str], frozenset[str], frozenset[str]]  # (a, b, conditioning set)
    path: list[PathStep] | None = None
    suggestion: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Report:
    name: str
    factors: list[FactorResult]
    mean_field_ok: bool  # Pyro's TraceMeanField_ELBO (analytic KL) is structurally valid
    mean_field_problems: list[str] = field(default_factory=list)
    analytic_kl_families: bool = True  # every (guide, prior) family pair has a closed-form KL

    @property
    def faithful(self) -> bool:
        return all(f.passed for f in self.factors)

    @property
    def analytic_kl(self) -> bool:
        return self.mean_field_ok and self.analytic_kl_families

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "faithful": self.faithful,
            "analytic_kl_elbo": self.analytic_kl,
            "mean_field_structure_ok": self.mean_field_ok,
            "mean_field_problems": self.mean_field_problems,
            "factors": [
                {
                    "latent": f.latent,
                    "given": list(f.given),
                    "passed": f.passed,
                    "query": {"independent": sorted(f.query[0]), "of": sorted(f.query[1]), "given": sorted(f.query[2])},
                    "open_path": [{"node": s.node, "reason": s.reason} for s in f.path] if f.path else None,
                    "suggested_given": list(f.suggestion) if f.suggestion is not None else None,
                }
                for f in self.factors
            ],
        }


def factor_query(dag: nx.DiGraph, latent: str, earlier: Iterable[str], given: Iterable[str], observed: Iterable[str]):
    """The CI query that decides one factor: (a, b, conditioning set), closure applied."""
    conditioning = frozenset(given) | frozenset(observed)
    closure = functional_closure(dag, conditioning)
    a = frozenset({latent}) - closure
    b = frozenset(earlier) - closure
    return a, b, conditioning


def factor_passes(dag: nx.DiGraph, latent: str, earlier: Iterable[str], given: Iterable[str], observed: Iterable[str]) -> bool:
    a, b, cond = factor_query(dag, latent, earlier, given, observed)
    return conditionally_independent(dag, a, b, cond)


def suggest(dag: nx.DiGraph, latent: str, earlier: list[str], observed: list[str], current: Iterable[str]) -> tuple[str, ...]:
    """A 1-minimal set of guide-computable nodes that makes the factor pass.

    Start from everything the guide could condition on at this point (it always
    passes: it determines every earlier sample), then drop members one at a time while
    the factor still passes — raw samples first, then transforms, earliest first — so
    that summaries (transform nodes) are kept in preference to raw samples.  Repeat
    until no single member can be dropped.
    """
    allowed = computable(dag, set(earlier) | set(observed)) - set(observed)
    order = {n: i for i, n in enumerate(nx.topological_sort(dag))}
    kept = sorted(allowed | (set(current) - set(observed)), key=lambda n: order[n])
    removal = sorted(kept, key=lambda n: (dag.nodes[n].get("kind") == TRANSFORM, order[n]))
    changed = True
    while changed:
        changed = False
        for n in removal:
            if n in kept:
                trial = [m for m in kept if m != n]
                if factor_passes(dag, latent, earlier, trial, observed):
                    kept = trial
                    changed = True
    return tuple(o for o in current if o in observed) + tuple(kept)


def _latent_sources(graph: ModelGraph, node: str) -> set[str]:
    """The latents a node is computed from through deterministic nodes (itself if latent)."""
    kind = graph.nodes[node].kind
    if kind != TRANSFORM:
        return {node}
    out: set[str] = set()
    for p in graph.nodes[node].parents:
        out |= _latent_sources(graph, p)
    return out


def mean_field_problems(graph: ModelGraph) -> list[str]:
    """Pyro's analytic-KL ELBO needs each latent's model parents to be computable in the guide
    before that latent is sampled: none may depend on it or on its guide descendants."""
    guide = nx.DiGraph()
    guide.add_nodes_from(f.latent for f in graph.guide)
    for f in graph.guide:
        for g in f.given:
            if g in graph.nodes and graph.nodes[g].kind != "observed":
                guide.add_edges_from((s, f.latent) for s in _latent_sources(graph, g) if graph.nodes[s].kind == LATENT)
    problems = []
    for f in graph.guide:
        downstream = nx.descendants(guide, f.latent) | {f.latent}
        for parent in graph.nodes[f.latent].parents:
            bad = _latent_sources(graph, parent) & downstream
            if bad:
                problems.append(f"{f.latent}: its prior's input {parent} depends on {', '.join(sorted(bad))}, sampled no earlier than {f.latent} in the guide")
    return problems


def check(graph: ModelGraph, max_suggestions: int | None = None) -> Report:
    """Check every guide factor.  Suggestions cost O(depth) queries each; ``max_suggestions``
    bounds how many failing factors get one (None: all)."""
    dag = graph.dag
    observed = graph.observed
    results: list[FactorResult] = []
    earlier: list[str] = []
    for factor in graph.guide:
        query = factor_query(dag, factor.latent, earlier, factor.given, observed)
        passed = conditionally_independent(dag, *query)
        path = suggestion = None
        if not passed:
            path = open_path(dag, *query)
            if max_suggestions is None or sum(r.suggestion is not None for r in results) < max_suggestions:
                suggestion = suggest(dag, factor.latent, earlier, observed, factor.given)
        results.append(FactorResult(factor.latent, factor.given, passed, query, path, suggestion))
        earlier.append(factor.latent)
    families_ok = all(
        FAMILIES[f.family].analytic_kl and FAMILIES[graph.nodes[f.latent].family].analytic_kl for f in graph.guide
    )
    problems = mean_field_problems(graph)
    return Report(graph.name, results, not problems, problems, families_ok)
