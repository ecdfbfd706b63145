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

from collections import deque
from dataclasses import dataclass
from typing import Iterable

import networkx as nx

TRANSFORM = "transform"


def _is_transform(dag: nx.DiGraph, node: str) -> bool:
    return dag.nodes[node].get("kind") == TRANSFORM


def computable(dag: nx.DiGraph, known: Iterable[str]) -> frozenset[str]:
    """Forward closure only (rule 1): what a sampler can compute from ``known``."""
    return _closure(dag, known, invert=False)


def functional_closure(dag: nx.DiGraph, given: Iterable[str]) -> frozenset[str]:
    """Everything determined by ``given``: rule 1 (forward) and rule 2 (inverse), to a fixed point."""
    return _closure(dag, given, invert=True)


def _closure(dag: nx.DiGraph, given: Iterable[str], invert: bool) -> frozenset[str]:
    closed: set[str] = set()
    missing = {t: dag.in_degree(t) for t in dag if _is_transform(dag, t)}
    queue = deque(given)

    def try_transform(t: str) -> None:
        # rule 1: all parents known -> t known
        if t not in closed and missing[t] == 0:
            queue.append(t)
        # rule 2: t and all parents but its bijective input known -> the input is known
        bij = dag.nodes[t].get("bijective_input")
        if invert and t in closed and bij is not None and bij not in closed and missing[t] == 1:
            queue.append(bij)

    while queue:
        v = queue.popleft()
        if v in closed:
            continue
        closed.add(v)
        for child in dag.successors(v):
            if child in missing:
                missing[child] -= 1
                try_transform(child)
        if v in missing:
            try_transform(v)
    return frozenset(closed)


def conditionally_independent(dag: nx.DiGraph, a: Iterable[str], b: Iterable[str], given: Iterable[str]) -> bool:
    """Is ``a`` independent of ``b`` given ``given`` for every distribution of this structure?"""
    closure = functional_closure(dag, given)
    a_, b_ = set(a) - closure, set(b) - closure
    if not a_ or not b_:
        return True
    if a_ & b_:
        return False
    return nx.is_d_separator(dag, a_, b_, set(closure))


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


def open_path(dag: nx.DiGraph, a: Iterable[str], b: Iterable[str], given: Iterable[str]) -> list[PathStep] | None:
    """One active path from ``a`` to ``b`` given the closure of ``given``, or None.

    Bayes-ball reachability over (node, direction) states: ``up`` means we arrived
    from a child, ``down`` from a parent.  Each step records its predecessor so the
    path can be printed with the reason each intermediate node is open.
    """
    closure = functional_closure(dag, given)
    a_, b_ = set(a) - closure, set(b) - closure
    if not a_ or not b_:
        return None
    opened = _ancestors_of_set(dag, closure)  # colliders with a conditioned descendant are open
    start = [(v, "up") for v in sorted(a_)]
    parent: dict[tuple[str, str], tuple[str, str] | None] = {s: None for s in start}
    queue = deque(start)
    goal = None
    while queue:
        state = queue.popleft()
        v, direction = state
        if v in b_ and parent[state] is not None or (v in b_ and v in a_):
            goal = state
            break
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
    if goal is None:
        return None
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
