"""Does the guide respect the factorization of the model's exact posterior?

The exact posterior factorizes in the guide's sampling order as
``p(e_1..e_n | x) = prod_i p(e_i | e_<i, x)``.  A guide factor reads exactly what the
compiled program gives it, its ``given`` ``P_i`` (observed nodes only where it lists them),
so ``q(e_i | P_i)`` can equal ``p(e_i | e_<i, x)`` for all parameter values exactly when,
in the model DAG,

    e_i  ⊥  ((e_<i ∪ observed) minus what P_i determines)  |  P_i

(see ``docs/checks.md``): a factor that does not read the data passes only where its exact
factor does not depend on the data.  For a failing factor the report carries one open
path as evidence and a 1-minimal conditioning set that would fix it, preferring
transform nodes (summaries shared with the model) over raw samples, and keeping the data
and whatever the factor must read (``merge: prior`` reads the prior's inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import networkx as nx

from hiervae.graph.dsep import Minimizer, PathStep, computable, functional_closure, independent_given_closure, open_path
from hiervae.graph.ir import TRANSFORM, ModelGraph
from hiervae.nn.registry import FAMILIES


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
    node_order: tuple[str, ...] = ()  # the model's topological order, for stable listings
    kl_families_missing: list[str] = field(default_factory=list)  # guide families without a closed form

    def _order(self, name: str) -> int:
        return self.node_order.index(name) if name in self.node_order else len(self.node_order)

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
                    "query": {"independent": sorted(f.query[0], key=self._order), "of": sorted(f.query[1], key=self._order), "given": sorted(f.query[2], key=self._order)},
                    "open_path": [{"node": s.node, "reason": s.reason} for s in f.path] if f.path else None,
                    "suggested_given": list(f.suggestion) if f.suggestion is not None else None,
                }
                for f in self.factors
            ],
        }


def factor_query(dag: nx.DiGraph, latent: str, earlier: Iterable[str], given: Iterable[str], observed: Iterable[str]):
    """The CI query that decides one factor: (a, b, conditioning set), closure applied,
    and whether it holds.  ``b`` holds the earlier samples and the observed nodes that
    ``given`` does not determine: what the exact factor may depend on beyond ``given``."""
    conditioning = frozenset(given)
    closure = functional_closure(dag, conditioning)
    a = frozenset({latent}) - closure
    b = (frozenset(earlier) | frozenset(observed)) - closure
    return (a, b, conditioning), independent_given_closure(dag, a, b, closure)


def factor_passes(dag: nx.DiGraph, latent: str, earlier: Iterable[str], given: Iterable[str], observed: Iterable[str]) -> bool:
    return factor_query(dag, latent, earlier, given, observed)[1]


def suggest(dag: nx.DiGraph, latent: str, earlier: list[str], observed: list[str], current: Iterable[str],
            required: Iterable[str] = ()) -> tuple[str, ...]:
    """A 1-minimal set of guide-computable nodes that makes the factor pass.

    Start from everything the guide could condition on at this point, the observed nodes
    included (it always passes: it determines every earlier sample and the data), then
    drop members one at a time while the factor still passes -- raw samples first, then
    transforms, then observed nodes, earliest first -- so that summaries (transform nodes)
    are kept in preference to raw samples and the data in preference to both.  ``required``
    nodes (what the factor must read whatever the check says) are never dropped.  Repeat
    until no single member can be dropped.  Returned in the order: observed nodes, then
    the model's topological order.

    Cost: each class (raw samples, transforms, observed) is first dropped whole in one query
    (raw samples usually go at once: the transforms determine them); a member whose drop
    failed is tried again only if something was dropped after that failure (its verdict
    was against a larger set).  So a factor costs about one query per member of the fix.
    """
    order = {n: i for i, n in enumerate(nx.topological_sort(dag))}
    allowed = computable(dag, set(earlier) | set(observed))
    keep = set(required)
    kept = set(allowed | set(current) | keep)
    rank = {"observed": 2, TRANSFORM: 1}

    queries = Minimizer(dag, latent, [*earlier, *observed])
    removal = sorted((n for n in kept if n not in keep), key=lambda n: (rank.get(dag.nodes[n].get("kind"), 0), order[n]))
    for r in (0, 1, 2):  # a whole class at once
        group = {n for n in removal if rank.get(dag.nodes[n].get("kind"), 0) == r}
        if group and queries.passes(kept - group):
            kept -= group
    queries.set_base(kept)
    pending = [n for n in removal if n in kept]
    while pending:
        stale: set[str] = set()  # failed against a set that has shrunk since
        failed_since_drop: list[str] = []
        for n in pending:
            if queries.passes_without(n):
                kept.discard(n)
                queries.set_base(kept)
                stale.update(failed_since_drop)
                failed_since_drop = []
            else:
                failed_since_drop.append(n)
        pending = [n for n in removal if n in stale]
    ordered = sorted(kept, key=lambda n: order[n])
    return tuple(n for n in ordered if n in set(observed)) + tuple(n for n in ordered if n not in set(observed))


def closed_form_kl_missing(graph: ModelGraph) -> list[str]:
    """Guide families (sorted) that have no closed-form KL against their latent's prior
    family (``Family.analytic_kl_with``); empty when every factor has one."""
    return sorted({f.family for f in graph.guide
                   if graph.nodes[f.latent].family not in FAMILIES.get(f.family).analytic_kl_with})


def mean_field_problems(graph: ModelGraph) -> list[str]:
    """Pyro's analytic-KL ELBO needs each latent's model parents to be computable in the guide
    without that latent: no parent may depend on it, directly or through guide samples
    that depend on it.

    Dependence in the guide is reachability in H = model's deterministic edges + one edge
    from each guide factor's ``given`` node to its latent.  Only a parent computed from a
    latent sampled no earlier than the factor can be affected, so H is searched only then
    (the latest guide position among a node's sources is one pass in topological order).
    """
    position = {f.latent: i for i, f in enumerate(graph.guide)}
    latest: dict[str, int] = {}  # latest guide position among the latents a node is computed from
    for name, node in graph.nodes.items():
        if node.kind == TRANSFORM:
            latest[name] = max((latest[p] for p in node.parents), default=-1)
        else:
            latest[name] = position.get(name, -1)
    h: nx.DiGraph | None = None
    problems = []
    for f in graph.guide:
        for parent in graph.nodes[f.latent].parents:
            if latest[parent] < position[f.latent]:
                continue
            if h is None:
                h = nx.DiGraph()
                h.add_nodes_from(graph.nodes)
                for name in graph.transforms:
                    h.add_edges_from((p, name) for p in graph.nodes[name].parents)
                for g in graph.guide:
                    h.add_edges_from((x, g.latent) for x in graph.reads(g.given))
            if parent == f.latent or nx.has_path(h, f.latent, parent):
                problems.append(f"{f.latent}: its prior's input {parent} depends on {f.latent} in the guide, which samples {f.latent} first")
    return problems


def _keep_features(graph: ModelGraph, given: tuple[str, ...], fix: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A fix in model nodes, written with the guide features the factor reads where a
    feature's sources are all in the fix (the feature stands for them)."""
    if fix is None or not graph.features:
        return fix
    kept = [g for g in given if g in graph.features and set(graph.reads((g,))) <= set(fix)]
    covered = set(graph.reads(tuple(kept)))
    return tuple(kept) + tuple(n for n in fix if n not in covered)


def required_inputs(graph: ModelGraph, factor) -> tuple[str, ...]:
    """What a factor must read whatever the check says: the prior's inputs under ``merge: prior``."""
    return graph.nodes[factor.latent].parents if factor.merge == "prior" else ()


def check(graph: ModelGraph, max_suggestions: int | None = None) -> Report:
    """Check every guide factor.  Suggestions cost O(depth) queries each; ``max_suggestions``
    bounds how many failing factors get one (None: all)."""
    dag = graph.dag
    observed = graph.observed
    results: list[FactorResult] = []
    earlier: list[str] = []
    for factor in graph.guide:
        reads = graph.reads(factor.given)  # guide features stand for what they are computed from
        query, passed = factor_query(dag, factor.latent, earlier, reads, observed)
        path = suggestion = None
        if not passed:
            path = open_path(dag, *query, closure=functional_closure(dag, query[2]))
            if max_suggestions is None or sum(r.suggestion is not None for r in results) < max_suggestions:
                suggestion = suggest(dag, factor.latent, earlier, observed, reads, required_inputs(graph, factor))
                suggestion = _keep_features(graph, factor.given, suggestion)
        results.append(FactorResult(factor.latent, factor.given, passed, query, path, suggestion))
        earlier.append(factor.latent)
    problems = mean_field_problems(graph)
    missing = closed_form_kl_missing(graph)
    return Report(graph.name, results, not problems, problems, not missing, tuple(graph.nodes), missing)
