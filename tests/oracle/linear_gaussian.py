"""An exact linear-Gaussian oracle for conditional independence in a model DAG.

This module knows nothing about graph separation.  It *instantiates* the model DAG (the
``networkx.DiGraph`` format of ``hiervae``: node attributes ``kind`` in
{"latent", "transform", "observed"}, ``dim``, and ``bijective_input`` for transforms) as a
concrete linear-Gaussian model, then answers "a ⊥ b | C ?" by exact linear algebra on that
model.  Any valid instance of the DAG is a witness: if the checker claims an independence that
this instance violates, the checker is wrong.

The instance
------------
Every latent or observed node ``v`` owns an independent standard-normal noise block ``n_v``
(``dim`` entries, loaded by the identity, i.e. full rank) and is linear in its parents::

    latent / observed:  v = sum_p W_vp p + n_v
    transform:          v = A_v u + sum_{q != u} B_vq q        (no noise; u = bijective input)

``A_v`` is square and invertible (unit lower-triangular times a permutation, so det = ±1 over
the rationals *and* mod p), hence ``u`` is recovered from ``v`` and the other parents, as a
bijective transform promises.  A plain transform (``bijective_input`` None) has no ``A`` term.
Unrolling in topological order writes every node as a linear map of the stacked noise vector,
``v = M_v n`` (rows = the node's dimension), so Cov(S, T) = M_S M_T^T exactly.

Deciding a ⊥ b | C exactly
--------------------------
For jointly Gaussian vectors, a ⊥ b | C iff the conditional covariance
Σ_ab − Σ_aC Σ_CC^+ Σ_Cb is zero.  Because covariances are PSD, the columns of Σ_Cb lie in the
column space of Σ_CC (and the rows of Σ_aC in its row space), so by Guttman rank additivity::

    rank [[Σ_CC, Σ_Cb], [Σ_aC, Σ_ab]] = rank Σ_CC + rank(conditional covariance)

and the test is ``rank(G) == rank(Σ_CC)`` with ``G = [M_C; M_a] [M_C; M_b]^T``.  Conditioning on
a node that is also in ``a`` or ``b`` needs no special case: its rows of ``G`` repeat rows of the
Σ_CC block and add no rank (a conditioned node is a constant).  "v is determined by S"
(Var(v | S) = 0) is the same test with a = b = {v}.

Exact arithmetic: GF(p), p = 2^31 − 1
-------------------------------------
Floating point with a tolerance gives wrong verdicts on deep chains (covariances shrink or blow
up geometrically), so every number here is an integer modulo the prime p = 2^31 − 1, kept in
numpy int64: two residues multiply to < 2^62, and ``_matmul`` splits one factor into 15- and
16-bit halves so that inner products do not overflow either.  Rank is computed by Gaussian
elimination over GF(p), vectorised per pivot column.  Why this is the *rational* answer:

* The coefficients are uniform random residues in [1, p) — read them as integers.  The model is
  then an integer model and Σ = M M^T is an integer PSD matrix; the criterion above holds for it.
* Reducing mod p is a ring homomorphism, so our matrices are exactly (integer matrix) mod p.  A
  rank over GF(p) never exceeds the rational rank, and is smaller only if p divides every nonzero
  r×r minor.  Those minors are polynomials in the random coefficients; by Schwartz–Zippel a
  nonzero polynomial of degree D vanishes mod p at a uniform random point with probability
  ≤ D/p (D is at most a few hundred here, p ≈ 2·10^9).  The same bound says the draw is *generic*
  (no accidental cancellation that a special choice of coefficients could cause).
* To make a bad draw visible instead of silent, each verdict is computed on ``draws``
  independent coefficient draws (default 2) and a disagreement raises ``NonGenericDraw``.

Two instantiations (``mode``)
-----------------------------
``mode="dense"`` — the literal construction above with the declared dims (each capped at
``max_dim``; every node linked by bijective inputs shares one dim) and dense random loadings.
It is a valid instance, so it is the right witness for *soundness*.  But it is special in one
way a generic nonlinear model is not: a linear map is injective whenever its dimensions allow.
E.g. for z = A eps + B z_prev with square B, knowing z and eps reveals z_prev exactly, while
for a generic flow z = mu(z_prev) + sigma(z_prev)·eps it does not.  So "dense" finds extra
independences the graph semantics (and the checker) rightly do not claim.

``mode="summary"`` (default) — the same equations, but chosen so that a transform never reveals
more than the graph semantics says ("a transform of its parents is a lossy summary; it gives back
its bijective input given all other parents, nothing else").  The oracle picks the dims itself
(the declared ones are ignored: structure, not size, decides):

* a non-bijective parent q enters transform w only through a low-rank summary
  ``B_wq = C_wq R_wq`` of rank ``m(q, w)``;
* nodes linked by bijective inputs form a class sharing one dim ``d``; the class dim exceeds the
  total rank of all summaries its members feed into transforms (``need``), so no pattern of
  known transforms ever pins a node down except through the closure rules;
* each summary rank m(q, w) is ≥ need(class of w), so a transform with some of its
  non-bijective parents unknown keeps more unknown variation than its children can reveal;
* if w has ≥ 2 non-bijective parents, m(q, w) + m(q', w) > d_w for every pair, so knowing w
  (and u) couples its parents (a collider is not accidentally "separable");
* a plain one-parent transform is nothing but its summary (m = d_w).

Why counting summary ranks is enough: exact (zero-variance) knowledge about a node can leave it
only through transforms — every latent or observed child adds its own full-rank noise — and a
transform passes on only its summaries.  This is a design argument, not a proof; it is checked
empirically: on thousands of random DAGs the "summary" verdicts equal those of an independent
from-scratch implementation of "functional closure + d-separation" (and hiervae's checker).

These requirements feed back into each other; they are solved by a monotone fixpoint iteration,
which diverges for a few contrived graphs (e.g. a node feeding, through a non-bijective slot, a
transform in its own bijective class twice).  Then the constructor raises ``ValueError`` and
only ``mode="dense"`` is available.
"""

from __future__ import annotations

from typing import Iterable

import networkx as nx
import numpy as np

P = 2**31 - 1  # Mersenne prime: residues fit in 31 bits, products of two fit in int64
_SPLIT = 1 << 16  # _matmul splits the left factor at 16 bits
_MAX_SUMMARY_DIM = 400  # "summary" gives up (ValueError) when the node dims sum past this


class NonGenericDraw(AssertionError):
    """Two independent coefficient draws gave different verdicts (probability ~ D/p)."""


# --------------------------------------------------------------------------- GF(p) algebra


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact ``a @ b mod P`` for int64 residue matrices.

    ``a = hi * 2^16 + lo`` with hi < 2^15 and lo < 2^16; each product with a residue of ``b``
    is < 2^47, so inner sums of up to 2^15 terms stay below 2^62.
    """
    if a.shape[1] >= 1 << 15:
        raise ValueError("inner dimension too large for overflow-free int64 products")
    hi = ((a >> 16) @ b) % P
    lo = ((a & (_SPLIT - 1)) @ b) % P
    return (hi * _SPLIT + lo) % P


def rank_mod_p(m: np.ndarray) -> int:
    """Rank over GF(P) by Gaussian elimination (row swaps, one vectorised update per pivot)."""
    a = np.array(m, dtype=np.int64) % P
    rows, cols = a.shape
    r = 0
    for c in range(cols):
        if r == rows:
            break
        nz = np.flatnonzero(a[r:, c])
        if nz.size == 0:
            continue
        piv = r + int(nz[0])
        if piv != r:
            a[[r, piv]] = a[[piv, r]]
        inv = pow(int(a[r, c]), P - 2, P)  # Fermat inverse
        a[r, c:] = (a[r, c:] * inv) % P
        f = a[r + 1 :, c].copy()
        a[r + 1 :, c:] = (a[r + 1 :, c:] - (f[:, None] * a[r, c:][None, :]) % P) % P
        r += 1
    return r


def _invertible(d: int, rng: np.random.Generator) -> np.ndarray:
    """Unit lower-triangular times a permutation: det = ±1 over Q and over GF(P)."""
    lower = np.tril(rng.integers(1, P, size=(d, d), dtype=np.int64), -1) + np.eye(d, dtype=np.int64)
    return lower[:, rng.permutation(d)]


def _coeffs(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    return rng.integers(1, P, size=shape, dtype=np.int64)


# --------------------------------------------------------------------------- dims and ranks


def _classes(dag: nx.DiGraph) -> dict[str, str]:
    """Node -> representative of its class (nodes linked by bijective-input edges)."""
    rep = {v: v for v in dag}

    def find(v: str) -> str:
        while rep[v] != v:
            rep[v] = rep[rep[v]]
            v = rep[v]
        return v

    for w in dag:
        u = _bijective_input(dag, w)
        if u is not None:
            rep[find(u)] = find(w)
    return {v: find(v) for v in dag}


def _bijective_input(dag: nx.DiGraph, v: str) -> str | None:
    return dag.nodes[v].get("bijective_input") if dag.nodes[v]["kind"] == "transform" else None


def _summary_plan(dag: nx.DiGraph) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Dims and summary ranks for mode="summary" (see the module docstring).

    Monotone fixpoint over class dims ``cdim`` and summary ranks ``m``::

        need(c) = 1 + sum of m(q, w) over slots leaving class c      (c's members never pinned)
        m(q, w) = max(need(class w),                                  (w keeps unknown variation)
                      d_w // 2 + 1   if w has >= 2 non-bijective parents,   (pairs stay coupled)
                      d_w            if w is a plain one-parent transform)  (w is all summary)
        cdim(c) = max(cdim(c), need(c))
    """
    cls = _classes(dag)
    slots = [  # (q, w): q feeds transform w through a non-bijective slot
        (q, w)
        for w in dag
        if dag.nodes[w]["kind"] == "transform"
        for q in dag.predecessors(w)
        if q != _bijective_input(dag, w)
    ]
    n_slots = {w: sum(1 for _, w2 in slots if w2 == w) for w in dag}
    cdim = {c: 1 for c in cls.values()}
    need = dict(cdim)
    while True:
        dim = {v: cdim[cls[v]] for v in dag}
        rank = {}
        for q, w in slots:
            m = need[cls[w]]
            if n_slots[w] >= 2:
                m = max(m, dim[w] // 2 + 1)
            elif _bijective_input(dag, w) is None:
                m = max(m, dim[w])
            rank[q, w] = m
        old_need, need = need, {c: 1 for c in cdim}
        for (q, _), m in rank.items():
            need[cls[q]] += m
        new = {c: max(cdim[c], need[c]) for c in cdim}
        if new == cdim and need == old_need:
            return dim, rank
        cdim = new
        if sum(cdim[cls[v]] for v in dag) > _MAX_SUMMARY_DIM:
            raise ValueError("no lossy-summary instantiation of this graph within the size limit")


def _dense_dims(dag: nx.DiGraph, max_dim: int) -> dict[str, int]:
    cls = _classes(dag)
    cdim: dict[str, int] = {}
    for v, c in cls.items():
        cdim[c] = min(cdim.get(c, max_dim), int(dag.nodes[v]["dim"]), max_dim)
    return {v: max(1, cdim[cls[v]]) for v in dag}


# --------------------------------------------------------------------------- the oracle


class _Instance:
    """One coefficient draw: every node as an exact linear map of the noise vector (mod P)."""

    def __init__(self, dag: nx.DiGraph, dims: dict[str, int], ranks: dict | None, rng: np.random.Generator):
        order = list(nx.topological_sort(dag))
        noisy = [v for v in order if dag.nodes[v]["kind"] != "transform"]
        offset, n = {}, 0
        for v in noisy:
            offset[v], n = n, n + dims[v]
        self.maps: dict[str, np.ndarray] = {}
        for v in order:
            d, kind = dims[v], dag.nodes[v]["kind"]
            m = np.zeros((d, n), dtype=np.int64)
            if kind != "transform":
                m[:, offset[v] : offset[v] + d] = np.eye(d, dtype=np.int64)  # own noise
            u = _bijective_input(dag, v)
            for p in sorted(dag.predecessors(v)):
                if p == u:
                    load = _invertible(d, rng)  # bijective in u (dims agree by construction)
                elif kind == "transform" and ranks is not None:
                    r = ranks[p, v]  # lossy low-rank summary C @ R of the parent
                    load = _matmul(_coeffs((d, r), rng), _coeffs((r, dims[p]), rng))
                else:
                    load = _coeffs((d, dims[p]), rng)
                m = (m + _matmul(load, self.maps[p])) % P
            self.maps[v] = m
        self.n_noise = n

    def _stack(self, nodes: Iterable[str]) -> np.ndarray:
        rows = [self.maps[v] for v in sorted(nodes)]
        return np.vstack(rows) if rows else np.zeros((0, self.n_noise), dtype=np.int64)

    def independent(self, a: set[str], b: set[str], given: set[str]) -> bool:
        mc = self._stack(given)
        g = _matmul(np.vstack([mc, self._stack(a)]), np.vstack([mc, self._stack(b)]).T)
        k = mc.shape[0]
        return rank_mod_p(g) == rank_mod_p(g[:k, :k])


class LinearGaussianOracle:
    """Exact CI oracle for a model DAG instantiated as a random linear-Gaussian model.

    ``mode``: "summary" (default; transforms are lossy summaries, dims chosen by the oracle) or
    "dense" (declared dims capped at ``max_dim``, dense loadings).  See the module docstring.
    """

    def __init__(self, dag: nx.DiGraph, seed: int = 0, *, mode: str = "summary", max_dim: int = 3, draws: int = 2):
        if mode == "summary":
            dims, ranks = _summary_plan(dag)
        elif mode == "dense":
            dims, ranks = _dense_dims(dag, max_dim), None
        else:
            raise ValueError(f"unknown mode {mode!r}")
        self.dag, self.mode, self.dims = dag, mode, dims
        self._instances = [
            _Instance(dag, dims, ranks, np.random.default_rng([seed, k])) for k in range(draws)
        ]

    def independent(self, a: Iterable[str], b: Iterable[str], given: Iterable[str] = ()) -> bool:
        """Exactly: is a ⊥ b | given in this instance?  Empty a or b -> True."""
        a, b, given = set(a), set(b), set(given)
        for v in a | b | given:
            if v not in self.dag:
                raise KeyError(v)
        if not a or not b:
            return True
        verdicts = {inst.independent(a, b, given) for inst in self._instances}
        if len(verdicts) > 1:
            raise NonGenericDraw(f"coefficient draws disagree on {sorted(a)} ⊥ {sorted(b)} | {sorted(given)}")
        return verdicts.pop()

    def determined(self, node: str, given: Iterable[str]) -> bool:
        """Var(node | given) == 0: the node is a (linear) function of ``given``."""
        return self.independent({node}, {node}, given)

    def determined_set(self, given: Iterable[str]) -> frozenset[str]:
        """All nodes with zero conditional variance given ``given`` (includes ``given``)."""
        given = set(given)
        return frozenset(v for v in self.dag if v in given or self.determined(v, given))
