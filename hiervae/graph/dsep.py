"""Conditional independence in a DAG with deterministic and bijective nodes.

Plain d-separation treats every node as random.  Transform nodes are not: a transform
whose parents are all known is known (Geiger, Verma & Pearl's D-separation), and a
transform ``z = f(eps; c)`` bijective in ``eps`` that is known together with ``c``
reveals ``eps``.  :func:`functional_closure` applies both rules to a fixed point;
queries then run ordinary d-separation with the closure as the conditioning set.

Works on any ``networkx.DiGraph`` whose nodes carry ``kind`` and, for transforms,
``bijective_input`` (see :mod:`hiervae.graph.ir`).
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass
from typing import Iterable

import networkx as nx

TRANSFORM = "transform"
_CONSTANTS: "weakref.WeakKeyDictionary[nx.DiGraph, tuple[int, tuple[str, ...]]]" = weakref.WeakKeyDictionary()


def _constant_transforms(dag: nx.DiGraph) -> tuple[str, ...]:
    """Transforms without parents (learned constants): known before anything is observed.

    Cached per graph object, keyed by its node count (O(1); ``number_of_edges`` walks
    every node).  Graphs are built once and not mutated in place by hiervae; a caller
    that adds edges to a graph it has already queried must build a new graph.
    """
    key = len(dag)
    cached = _CONSTANTS.get(dag)
    if cached is None or cached[0] != key:
        cached = (key, tuple(t for t in dag if _is_transform(dag, t) and dag.in_degree(t) == 0))
        _CONSTANTS[dag] = cached
    return cached[1]


def _is_transform(dag: nx.DiGraph, node: str) -> bool:
    return dag.nodes[node].get("kind") == TRANSFORM


def computable(dag: nx.DiGraph, known: Iterable[str]) -> frozenset[str]:
    """Forward closure only (rule 1): what a sampler can compute from ``known``."""
    closure = Closure(dag, invert=False)
    closure.add(known)
    return frozenset(closure.members)


def functional_closure(dag: nx.DiGraph, given: Iterable[str]) -> frozenset[str]:
    """Everything determined by ``given``: rule 1 (forward) and rule 2 (inverse), to a fixed point."""
    closure = Closure(dag, invert=True)
    closure.add(given)
    return frozenset(closure.members)


class Closure:
    """A closure that grows incrementally: ``add`` propagates the rules from new members only.

    Each transform keeps a count of parents not yet known, so adding a node costs time
    proportional to its out-degree; growing the closure node by node along a guide
    (as the builder does) is linear in the graph, not quadratic.
    """

    def __init__(self, dag: nx.DiGraph, invert: bool):
        self.dag = dag
        self.invert = invert
        self.members: set[str] = set()
        self.missing: dict[str, int] = {}  # transform -> parents not yet known (filled lazily)
        self.add(_constant_transforms(dag))

    def add(self, nodes: Iterable[str]) -> None:
        queue = deque(nodes)
        while queue:
            v = queue.popleft()
            if v in self.members:
                continue
            self.members.add(v)
            for child in self.dag.successors(v):
                if _is_transform(self.dag, child):
                    self.missing[child] = self.missing.get(child, self.dag.in_degree(child)) - 1
                    self._fire(child, queue)
            if _is_transform(self.dag, v):
                self.missing.setdefault(v, self.dag.in_degree(v))
                self._fire(v, queue)

    def _fire(self, t: str, queue: deque) -> None:
        # rule 1: all parents known -> t known
        if t not in self.members and self.missing[t] == 0:
            queue.append(t)
        # rule 2: t and all parents but its bijective input known -> the input is known
        bij = self.dag.nodes[t].get("bijective_input")
        if self.invert and t in self.members and bij is not None and bij not in self.members and self.missing[t] == 1:
            queue.append(bij)


def conditionally_independent(dag: nx.DiGraph, a: Iterable[str], b: Iterable[str], given: Iterable[str]) -> bool:
    """Is ``a`` independent of ``b`` given ``given`` for every distribution of this structure?"""
    return independent_given_closure(dag, a, b, functional_closure(dag, given))


def independent_given_closure(dag: nx.DiGraph, a: Iterable[str], b: Iterable[str], closure: frozenset[str]) -> bool:
    """:func:`conditionally_independent` with the functional closure already computed."""
    a_, b_ = set(a) - closure, set(b) - closure
    if not a_ or not b_:
        return True
    if a_ & b_:
        return False
    return _search(dag, a_, b_, closure) is None


def _ancestors_of_set(dag: nx.DiGraph, nodes: Iterable[str]) -> set[str]:
    """``nodes`` and all their ancestors, in one reverse traversal."""
    seen = set(nodes)
    queue = deque(seen)
    while queue:
        for p in dag.predecessors(queue.popleft()):
            if p not in seen:
                seen.add(p)
                queue.append(p)
    return seen


@dataclass(frozen=True)
class PathStep:
    """A node on an open path and why it lets the path through."""

    node: str
    reason: str


def _search(dag: nx.DiGraph, a: set[str], b: set[str], closure: frozenset[str]):
    """Bayes-ball reachability over (node, direction) states; ``up`` means we arrived
    from a child, ``down`` from a parent.  Returns (goal state, predecessor map) for
    the first active path found from ``a`` to ``b`` given ``closure``, or None.
    Linear in the size of the graph; a collider is open when it or one of its
    descendants is in the closure (the ancestors of the closure, found in one pass).
    """
    opened = _ancestors_of_set(dag, closure)
    start = [(v, "up") for v in sorted(a)]
    parent: dict[tuple[str, str], tuple[str, str] | None] = {s: None for s in start}
    queue = deque(start)
    while queue:
        state = queue.popleft()
        v, direction = state
        if v in b:
            return state, parent
        nxt: list[tuple[str, str]] = []
        if direction == "up" and v not in closure:
            nxt += [(p, "up") for p in dag.predecessors(v)] + [(c, "down") for c in dag.successors(v)]
        elif direction == "down":
            if v not in closure:
                nxt += [(c, "down") for c in dag.successors(v)]
            if v in opened:
                nxt += [(p, "up") for p in dag.predecessors(v)]
        for s in nxt:
            if s not in parent:
                parent[s] = state
                queue.append(s)
    return None


def open_path(dag: nx.DiGraph, a: Iterable[str], b: Iterable[str], given: Iterable[str]) -> list[PathStep] | None:
    """One active path from ``a`` to ``b`` given the closure of ``given``, with the
    reason each intermediate node lets it through; None when there is none."""
    closure = functional_closure(dag, given)
    a_, b_ = set(a) - closure, set(b) - closure
    if not a_ or not b_:
        return None
    found = _search(dag, a_, b_, closure)
    if found is None:
        return None
    goal, parent = found
    states = [goal]
    while parent[states[-1]] is not None:
        states.append(parent[states[-1]])  # type: ignore[arg-type]
    states.reverse()
    steps = [PathStep(states[0][0], "start (a variable of the factor)")]
    for (prev, _), (v, d), nxt_state in zip(states, states[1:], states[2:] + [None]):
        if nxt_state is None:
            steps.append(PathStep(v, "end (an earlier variable the factor does not condition on)"))
            break
        arrived_from_parent = d == "down"
        leaves_to_parent = nxt_state[1] == "up"
        if arrived_from_parent and leaves_to_parent:
            if v in closure:
                why = "observed" if dag.nodes[v].get("kind") == "observed" else "conditioned on" if v in set(given) else "determined by the conditioning set"
                steps.append(PathStep(v, f"collider ({prev} -> {v} <- {nxt_state[0]}), {why}"))
            else:
                witness = next(z for z in sorted(closure) if z in nx.descendants(dag, v))
                steps.append(PathStep(v, f"collider ({prev} -> {v} <- {nxt_state[0]}) with descendant {witness} in the conditioning set"))
        else:
            shape = "chain" if arrived_from_parent != leaves_to_parent else "fork"
            steps.append(PathStep(v, f"{shape} node, not in and not determined by the conditioning set"))
    return steps
