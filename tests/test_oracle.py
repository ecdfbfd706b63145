"""Self-tests of the linear-Gaussian CI oracle on cases whose answer is known by hand.

The oracle (tests/oracle/linear_gaussian.py) is the independent referee for hiervae's
factorization check, so it is tested here without any hiervae code.
"""

from __future__ import annotations

import random
from fractions import Fraction

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.linear_gaussian import P, LinearGaussianOracle, _matmul, rank_mod_p
from oracle.random_dags import describe, random_dag, random_query

MODES = ["summary", "dense"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def make_dag(nodes: dict[str, tuple], edges: list[tuple[str, str]]) -> nx.DiGraph:
    """nodes: name -> (kind, dim) or ("transform", dim, bijective_input)."""
    g = nx.DiGraph()
    for name, (kind, dim, *bij) in nodes.items():
        attrs = {"bijective_input": bij[0] if bij else None} if kind == "transform" else {}
        g.add_node(name, kind=kind, dim=dim, **attrs)
    g.add_edges_from(edges)
    return g


# --------------------------------------------------------------------------- textbook cases


@pytest.mark.parametrize("mode", MODES)
def test_chain(mode):
    g = make_dag({"a": ("latent", 2), "b": ("latent", 1), "c": ("observed", 3)}, [("a", "b"), ("b", "c")])
    o = LinearGaussianOracle(g, mode=mode)
    assert not o.independent({"a"}, {"c"}, set())
    assert o.independent({"a"}, {"c"}, {"b"})
    assert not o.independent({"a"}, {"b"}, {"c"})


@pytest.mark.parametrize("mode", MODES)
def test_fork(mode):
    g = make_dag({"a": ("latent", 1), "b": ("latent", 2), "c": ("observed", 2)}, [("a", "b"), ("a", "c")])
    o = LinearGaussianOracle(g, mode=mode)
    assert not o.independent({"b"}, {"c"}, set())
    assert o.independent({"b"}, {"c"}, {"a"})


@pytest.mark.parametrize("mode", MODES)
def test_collider_and_its_descendant(mode):
    g = make_dag(
        {"a": ("latent", 2), "b": ("latent", 1), "c": ("latent", 3), "d": ("observed", 1)},
        [("a", "c"), ("b", "c"), ("c", "d")],
    )
    o = LinearGaussianOracle(g, mode=mode)
    assert o.independent({"a"}, {"b"}, set())
    assert not o.independent({"a"}, {"b"}, {"c"})
    assert not o.independent({"a"}, {"b"}, {"d"})  # a 1-dim noisy descendant still opens it
    assert o.independent({"a"}, {"d"}, {"c"})


def sere_layer() -> nx.DiGraph:
    """z = f(eps; z_prev), bijective in eps; x observed from z and z_prev."""
    return make_dag(
        {
            "z_prev": ("latent", 2),
            "eps": ("latent", 2),
            "z": ("transform", 2, "eps"),
            "x": ("observed", 3),
        },
        [("z_prev", "z"), ("eps", "z"), ("z", "x"), ("z_prev", "x")],
    )


@pytest.mark.parametrize("mode", MODES)
def test_bijective_transform_determines_its_input(mode):
    o = LinearGaussianOracle(sere_layer(), mode=mode)
    assert o.determined("eps", {"z", "z_prev"})
    assert o.determined("z", {"eps", "z_prev"})  # a transform of known parents is known
    assert o.independent({"eps"}, {"x", "z_prev", "z"}, {"z", "z_prev"})  # eps is a constant
    assert o.independent({"eps"}, {"eps"}, {"z", "z_prev"})
    # z alone does not pin eps down, and the transform is a collider between eps and z_prev
    assert not o.determined("eps", {"z"})
    assert o.independent({"eps"}, {"z_prev"}, set())
    assert not o.independent({"eps"}, {"z_prev"}, {"z"})
    assert not o.independent({"eps"}, {"z_prev"}, {"x"})


@pytest.mark.parametrize("mode", MODES)
def test_plain_deterministic_node_with_observed_parents(mode):
    g = make_dag(
        {"a": ("latent", 2), "b": ("latent", 1), "h": ("transform", 1), "y": ("observed", 2)},
        [("a", "h"), ("b", "h"), ("h", "y"), ("a", "y")],
    )
    o = LinearGaussianOracle(g, mode=mode)
    assert o.determined("h", {"a", "b"})
    assert o.independent({"h"}, {"y", "a", "b", "h"}, {"a", "b"})
    assert not o.determined("h", {"a"})
    assert not o.independent({"h"}, {"y"}, {"a"})
    assert o.independent({"a"}, {"b"}, set())
    assert not o.independent({"a"}, {"b"}, {"h"})  # deterministic collider


def test_modes_differ_exactly_where_linearity_is_special():
    """Dense: z = A eps + B z_prev with square B gives z_prev back from (z, eps).  A generic flow
    does not, and neither does the summary instance, which is what the graph semantics say."""
    g = sere_layer()
    assert LinearGaussianOracle(g, mode="dense").determined("z_prev", {"z", "eps"})
    assert not LinearGaussianOracle(g, mode="summary").determined("z_prev", {"z", "eps"})
    # one-parent plain transform of equal dim: injective when dense, a lossy summary otherwise
    h = make_dag({"a": ("latent", 1), "h": ("transform", 1), "x": ("observed", 1)}, [("a", "h"), ("a", "x")])
    assert LinearGaussianOracle(h, mode="dense").independent({"a"}, {"x"}, {"h"})
    assert not LinearGaussianOracle(h, mode="summary").independent({"a"}, {"x"}, {"h"})


@pytest.mark.parametrize("mode", MODES)
def test_query_edge_cases(mode):
    o = LinearGaussianOracle(sere_layer(), mode=mode)
    assert o.independent(set(), {"x"}, set())
    assert o.independent({"x"}, set(), {"z"})
    assert not o.independent({"x"}, {"x"}, set())  # a noisy node is not independent of itself
    assert o.independent({"x"}, {"z_prev"}, {"x"})  # conditioning makes x a constant
    assert not o.independent({"x", "eps"}, {"z_prev"}, {"x"})
    with pytest.raises(KeyError):
        o.independent({"nope"}, {"x"}, set())


@pytest.mark.parametrize("mode", MODES)
def test_deep_chain_is_exact(mode):
    """80 dim-3 layers with ~2^31-sized coefficients: any float/tolerance method breaks here."""
    n = 80
    g = make_dag({f"v{i}": ("latent", 3) for i in range(n)}, [(f"v{i}", f"v{i + 1}") for i in range(n - 1)])
    o = LinearGaussianOracle(g, mode=mode)
    assert not o.independent({"v0"}, {f"v{n - 1}"}, set())
    assert o.independent({"v0"}, {f"v{n - 1}"}, {f"v{n // 2}"})
    assert not o.determined(f"v{n - 1}", {f"v{n - 2}"})


def test_summary_mode_rejects_graphs_it_cannot_instantiate():
    # u feeds, through a non-bijective slot, a transform in its own bijective class
    g = make_dag(
        {"u": ("latent", 1), "w": ("transform", 1, "u"), "t": ("transform", 1, "u"), "x": ("observed", 1)},
        [("u", "w"), ("u", "t"), ("w", "t"), ("t", "x")],
    )
    with pytest.raises(ValueError):
        LinearGaussianOracle(g, mode="summary")
    LinearGaussianOracle(g, mode="dense")  # always possible


# --------------------------------------------------------------------------- exact arithmetic


def rank_fraction(rows: list[list[int]]) -> int:
    """Reference rank over the rationals (Fraction Gaussian elimination)."""
    m = [[Fraction(x) for x in row] for row in rows]
    rank, cols = 0, len(m[0]) if m else 0
    for c in range(cols):
        piv = next((r for r in range(rank, len(m)) if m[r][c] != 0), None)
        if piv is None:
            continue
        m[rank], m[piv] = m[piv], m[rank]
        for r in range(len(m)):
            if r != rank and m[r][c] != 0:
                f = m[r][c] / m[rank][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[rank])]
        rank += 1
    return rank


@SETTINGS
@given(st.randoms(use_true_random=False), st.sampled_from([3, 10, 2**20, P - 1]))
def test_rank_mod_p_equals_rational_rank(rnd, bound):
    rows, cols, true_rank = rnd.randint(1, 7), rnd.randint(1, 7), rnd.randint(0, 7)
    left = [[rnd.randint(-bound, bound) for _ in range(true_rank)] for _ in range(rows)]
    right = [[rnd.randint(-bound, bound) for _ in range(cols)] for _ in range(true_rank)]
    m = [[sum(left[i][k] * right[k][j] for k in range(true_rank)) for j in range(cols)] for i in range(rows)]
    if rnd.random() < 0.3 and rows > 1:
        m[-1] = [x + y for x, y in zip(m[0], m[-1])]  # a planted dependency
    expected = rank_fraction(m)
    reduced = np.array([[x % P for x in row] for row in m], dtype=np.int64)
    assert rank_mod_p(reduced) == expected


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_matmul_mod_p_has_no_overflow(rnd):
    n, k, m = rnd.randint(1, 6), rnd.choice([1, 5, 300]), rnd.randint(1, 6)
    a = [[rnd.choice([P - 1, rnd.randrange(P)]) for _ in range(k)] for _ in range(n)]
    b = [[rnd.choice([P - 1, rnd.randrange(P)]) for _ in range(m)] for _ in range(k)]
    got = _matmul(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64))
    want = [[sum(a[i][t] * b[t][j] for t in range(k)) % P for j in range(m)] for i in range(n)]
    assert got.tolist() == want


# --------------------------------------------------------------------------- genericity


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_verdicts_do_not_depend_on_the_coefficient_draw(rnd):
    """Generic draws: two independent seeds must agree on every query (both modes)."""
    dag = random_dag(rnd)
    queries = [random_query(rnd, dag) for _ in range(4)]
    for mode in MODES:
        try:
            o1, o2 = (LinearGaussianOracle(dag, seed=s, mode=mode, draws=1) for s in (0, 7))
        except ValueError:
            assert mode == "summary"
            continue
        for a, b, c in queries:
            assert o1.independent(a, b, c) == o2.independent(a, b, c), (mode, describe(dag), a, b, c)


def test_seeded_loop_covers_both_verdicts():
    """The random DAG/query generator must produce both verdicts often (or the property tests
    built on it would be vacuous)."""
    rnd = random.Random(5)
    verdicts = []
    for _ in range(60):
        dag = random_dag(rnd)
        o = LinearGaussianOracle(dag, mode="dense")
        verdicts += [o.independent(*random_query(rnd, dag)) for _ in range(3)]
    assert 0.1 < sum(verdicts) / len(verdicts) < 0.9
