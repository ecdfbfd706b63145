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


class _Indexed:
    """A DAG as integer arrays (successors, predecessors, transform flags, bijective inputs):
    the closure and the path search run on these, several times faster than through
    networkx's views.  Built once per graph object (see :func:`_indexed`)."""

    def __init__(self, dag: nx.DiGraph):
        self.names = list(dag)
        self.index = {v: i for i, v in enumerate(self.names)}
        self.succ = [tuple(self.index[c] for c in dag.successors(v)) for v in self.names]
        self.pred = [tuple(self.index[p] for p in dag.predecessors(v)) for v in self.names]
        self.transform = [dag.nodes[v].get("kind") == TRANSFORM for v in self.names]
        self.indeg = [len(p) for p in self.pred]
        self.bij = [self.index[dag.nodes[v]["bijective_input"]] if self.transform[i] and dag.nodes[v].get("bijective_input")
                    in self.index else -1 for i, v in enumerate(self.names)]
        self.constants = [i for i in range(len(self.names)) if self.transform[i] and not self.pred[i]]
        self.size = len(self.names)

    def ids(self, nodes: Iterable[str]) -> list[int]:
        return [self.index[v] for v in nodes]


_INDEXED: "weakref.WeakKeyDictionary[nx.DiGraph, _Indexed]" = weakref.WeakKeyDictionary()


def _indexed(dag: nx.DiGraph) -> _Indexed:
    """The indexed form of ``dag``, cached per graph object and node count.  Graphs are built
    once and not mutated in place by hiervae; a caller that adds edges to a graph it has
    already queried must build a new graph."""
    cached = _INDEXED.get(dag)
    if cached is None or cached.size != len(dag):
        cached = _INDEXED[dag] = _Indexed(dag)
    return cached


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
        self.g = _indexed(dag)
        self.invert = invert
        self.known = bytearray(self.g.size)
        self.missing = list(self.g.indeg)  # parents not yet known, per node
        self.order: list[int] = []  # members, in the order they became known
        self._members: set[str] | None = set()
        self._add_ids(self.g.constants)

    @property
    def members(self) -> set[str]:
        if self._members is None:
            self._members = {self.g.names[i] for i in self.order}
        return self._members

    def add(self, nodes: Iterable[str]) -> None:
        self._add_ids(self.g.ids(nodes))

    def _add_ids(self, ids: Iterable[int]) -> None:
        g, known, missing, invert = self.g, self.known, self.missing, self.invert
        transform, succ, bij = g.transform, g.succ, g.bij
        queue = deque(ids)
        added = False
        while queue:
            v = queue.popleft()
            if known[v]:
                continue
            known[v] = 1
            self.order.append(v)
            added = True
            for c in succ[v]:
                if transform[c]:
                    missing[c] -= 1
                    if not known[c] and missing[c] == 0:
                        queue.append(c)  # rule 1: all parents known -> known
                    elif invert and known[c] and missing[c] == 1 and bij[c] >= 0 and not known[bij[c]]:
                        queue.append(bij[c])  # rule 2: the transform and all parents but its input
            if transform[v]:
                if missing[v] == 0:
                    pass
                elif invert and missing[v] == 1 and bij[v] >= 0 and not known[bij[v]]:
                    queue.append(bij[v])
        if added:
            self._members = None


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


@dataclass(frozen=True)
class PathStep:
    """A node on an open path and why it lets the path through."""

    node: str
    reason: str


def _search(dag: nx.DiGraph, a: set[str], b: set[str], closure: frozenset[str]):
    """Bayes-ball reachability over (node, direction) states; ``up`` means we arrived
    from a child, ``down`` from a parent.  Returns the states ``[(node, direction), ...]``
    of the first active path found from ``a`` to ``b`` given ``closure``, or None.
    Linear in the size of the graph, and it stops as soon as a node of ``b`` is reached;
    a collider is open when it or one of its descendants is in the closure (the ancestors
    of the closure, found in one pass).  States are ints, ``2 * node + direction``.
    """
    g = _indexed(dag)
    known = bytearray(g.size)
    for v in g.ids(closure):
        known[v] = 1
    goal = bytearray(g.size)
    for v in g.ids(b):
        goal[v] = 1
    return search_ids(g, sorted(g.ids(a)), goal, known)


def search_ids(g: "_Indexed", a: list[int], goal: bytearray, known: bytearray):
    """:func:`_search` on node ids: ``goal`` and ``known`` (the closure) as byte flags."""
    pred, succ = g.pred, g.succ
    opened_memo: dict[int, bool] = {}

    def opened(v: int) -> bool:
        """Is ``v`` in the closure or an ancestor of a member (a collider there is open)?
        Found lazily, by a search of ``v``'s descendants that stops at the first member."""
        if v in opened_memo:
            return opened_memo[v]
        seen, stack, found = {v}, [v], False
        while stack and not found:
            u = stack.pop()
            if known[u] or opened_memo.get(u):
                found = True
                break
            for c in succ[u]:
                if c not in seen and opened_memo.get(c) is not False:
                    seen.add(c)
                    stack.append(c)
        if found:
            opened_memo[v] = True
        else:
            for u in seen:  # nothing below any of them is a member
                opened_memo[u] = False
        return found

    UP, DOWN = 0, 1
    parent: dict[int, int] = {}
    queue: deque[int] = deque()

    def path(state: int) -> list[tuple[str, str]]:
        out = []
        while state >= 0:
            out.append((g.names[state >> 1], "up" if state & 1 == UP else "down"))
            state = parent[state]
        return out[::-1]

    for v in a:
        s = 2 * v + UP
        parent[s] = -1
        queue.append(s)
        if goal[v]:
            return path(s)
    while queue:
        state = queue.popleft()
        v, direction = state >> 1, state & 1
        ups: tuple[int, ...] = ()
        downs: tuple[int, ...] = ()
        if direction == UP and not known[v]:
            ups, downs = pred[v], succ[v]
        elif direction == DOWN:
            if not known[v]:
                downs = succ[v]
            if opened(v):
                ups = pred[v]
        for nodes, d in ((ups, UP), (downs, DOWN)):
            for w in nodes:
                s = 2 * w + d
                if s not in parent:
                    parent[s] = state
                    if goal[w]:
                        return path(s)
                    queue.append(s)
    return None


class Minimizer:
    """The queries of one guide factor's minimal fix, answered fast: e_i ⊥ (B minus the
    closure) | closure(K), for a set K that shrinks one member at a time.

    :meth:`passes` computes the closure of K from scratch; :meth:`passes_without` answers
    for K minus one member by retracting only what that member's removal can undo (the
    nodes whose derivation may use it, not crossing other members of K) and re-deriving
    them, so certifying every member of an l-member fix costs about l small queries
    instead of l closures of the whole set."""

    def __init__(self, dag: nx.DiGraph, latent: str, others: Iterable[str]):
        self.g = _indexed(dag)
        self.a = self.g.index[latent]
        self.others = self.g.ids(others)  # earlier samples and observed nodes
        self.base: set[int] = set()
        self.known = bytearray(self.g.size)

    def set_base(self, members: Iterable[str]) -> bool:
        """Make ``members`` the current K (its closure computed once); returns whether it passes."""
        closure = Closure.__new__(Closure)
        closure.g, closure.invert = self.g, True
        closure.known, closure.missing, closure.order, closure._members = bytearray(self.g.size), list(self.g.indeg), [], None
        closure._add_ids(self.g.constants)
        self.base = set(self.g.ids(members))
        closure._add_ids(self.base)
        self.known = closure.known
        return self._passes(self.known)

    def passes(self, members: Iterable[str]) -> bool:
        saved = self.base, self.known
        try:
            return self.set_base(members)
        finally:
            self.base, self.known = saved

    def _dependents(self, u: int) -> list[int]:
        g, out = self.g, []
        for t in g.succ[u]:
            if g.transform[t]:
                out.append(t)  # rule 1 used u as a parent of t
                if g.bij[t] >= 0 and g.bij[t] != u:
                    out.append(g.bij[t])  # rule 2 used u as another parent of t
        if g.transform[u] and g.bij[u] >= 0:
            out.append(g.bij[u])  # rule 2 used u itself
        return out

    def _derivable(self, w: int, known: bytearray) -> bool:
        g = self.g
        if g.transform[w] and all(known[p] for p in g.pred[w]):
            return True
        for t in g.succ[w]:  # w is the bijective input of a known transform whose other parents are known
            if g.transform[t] and g.bij[t] == w and known[t] and all(known[p] for p in g.pred[t] if p != w):
                return True
        return False

    def passes_without(self, member: str) -> bool:
        s = self.g.index[member]
        known = bytearray(self.known)
        affected, queue = {s}, [s]
        while queue:
            for w in self._dependents(queue.pop()):
                if known[w] and w not in affected and w not in self.base:
                    affected.add(w)
                    queue.append(w)
        for w in affected:
            known[w] = 0
        changed = True
        while changed:  # re-derive, least fixpoint: no circular support survives
            changed = False
            for w in affected:
                if not known[w] and w != s and self._derivable(w, known):
                    known[w] = 1
                    changed = True
        if not known[s] and self._derivable(s, known):  # a member may also be determined by the rest
            known[s] = 1
            changed = True
            while changed:
                changed = False
                for w in affected:
                    if not known[w] and self._derivable(w, known):
                        known[w] = 1
                        changed = True
        return self._passes(known)

    def _passes(self, known: bytearray) -> bool:
        if known[self.a]:
            return True
        goal = bytearray(self.g.size)
        any_goal = False
        for v in self.others:
            if not known[v]:
                goal[v] = 1
                any_goal = True
        return not any_goal or search_ids(self.g, [self.a], goal, known) is None


def open_path(dag: nx.DiGraph, a: Iterable[str], b: Iterable[str], given: Iterable[str],
              closure: frozenset[str] | None = None) -> list[PathStep] | None:
    """One active path from ``a`` to ``b`` given the closure of ``given`` (``closure``, when
    the caller has it), with the reason each intermediate node lets it through; None when
    there is none."""
    closure = functional_closure(dag, given) if closure is None else closure
    a_, b_ = set(a) - closure, set(b) - closure
    if not a_ or not b_:
        return None
    states = _search(dag, a_, b_, closure)
    if states is None:
        return None
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
