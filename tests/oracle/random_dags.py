"""Random model DAGs and CI queries for property tests (driven by a ``random.Random``).

Hypothesis drives these through ``st.randoms(use_true_random=False)``, so failures shrink and
replay deterministically; plain loops pass a seeded ``random.Random``.
"""

from __future__ import annotations

import random

import networkx as nx

PARENTLESS_TRANSFORM_P = 0.1  # how often a transform drawn without parents stays a (constant) transform


def random_dag(rnd: random.Random, n_min: int = 5, n_max: int = 14, transforms: bool = True) -> nx.DiGraph:
    """A random DAG in hiervae's format: kinds, dims 1-3, transforms with/without a bijective
    input (then dim = that input's dim), at least one observed node, nodes n0, n1, ... in
    topological order."""
    n = rnd.randint(n_min, n_max)
    density = rnd.choice([0.2, 0.3, 0.45])
    kinds = ["latent", "latent", "observed"] + (["transform", "transform"] if transforms else [])
    g = nx.DiGraph()
    for i in range(n):
        v = f"n{i}"
        kind = rnd.choice(kinds)
        parents = [f"n{j}" for j in range(i) if rnd.random() < density]
        attrs: dict = {"kind": kind, "dim": rnd.randint(1, 3)}
        if kind == "transform":
            if not parents and rnd.random() >= PARENTLESS_TRANSFORM_P:  # parentless = constant: rare
                attrs["kind"] = "latent"
            else:
                u = rnd.choice(parents) if parents and rnd.random() < 0.6 else None
                attrs["bijective_input"] = u
                if u is not None:
                    attrs["dim"] = g.nodes[u]["dim"]
        g.add_node(v, **attrs)
        g.add_edges_from((p, v) for p in parents)
    if not any(d["kind"] == "observed" for _, d in g.nodes(data=True)):
        last = g.nodes[f"n{n - 1}"]  # a sink: turning it into an observed node is harmless
        last["kind"] = "observed"
        last.pop("bijective_input", None)
    return g


def random_query(rnd: random.Random, dag: nx.DiGraph) -> tuple[set[str], set[str], set[str]]:
    """Disjoint random (a, b, given) with a and b non-empty."""
    nodes = sorted(dag)
    rnd.shuffle(nodes)
    na, nb = rnd.randint(1, 3), rnd.randint(1, 3)
    a, b, rest = set(nodes[:na]), set(nodes[na : na + nb]), nodes[na + nb :]
    p = rnd.choice([0.2, 0.4, 0.6])
    given = {v for v in rest if rnd.random() < p}
    return a, b, given


def describe(dag: nx.DiGraph) -> str:
    """Compact, copy-pasteable description of a DAG for failure messages."""
    parts = []
    for v, d in dag.nodes(data=True):
        bij = f" bij={d['bijective_input']}" if d.get("bijective_input") else ""
        parents = ",".join(sorted(dag.predecessors(v)))
        parts.append(f"{v}:{d['kind']}[{d['dim']}]{bij}<-({parents})")
    return "; ".join(parts)
