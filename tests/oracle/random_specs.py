"""Random, valid hiervae specs (YAML text) for property tests, driven by a ``random.Random``.

Latent nodes (``normal``), bijective transforms (``affine_diag`` on a latent or transform
input, with optional conditioners), non-bijective ``residual`` transforms, observed nodes
(``bernoulli``), small MLP networks, and a guide in a random sampling order whose factors
read random subsets of what the guide can compute then: the data or not, amortised or not.
"""

from __future__ import annotations

import random

import networkx as nx

from hiervae.graph.dsep import computable


def random_spec(rnd: random.Random, n_min: int = 3, n_max: int = 9, observed_max: int = 1,
                features: bool = False) -> str:
    """A spec's text; ``features``: model feature nodes and guide features (a guide entry
    ``f0: {feature: 3, given: [...]}`` before some factors, read by later ones)."""
    return random_spec_and_features(rnd, n_min, n_max, observed_max, features)[0]


def random_spec_and_features(rnd: random.Random, n_min: int = 3, n_max: int = 9, observed_max: int = 1,
                             features: bool = False) -> tuple[str, dict[str, list[str]]]:
    """``(text, guide feature -> its given)``."""
    nodes: list[tuple[str, str, int, list[str], str | None]] = []  # (name, kind, dim, given, input)
    kinds = ["latent", "latent", "transform", "residual", "observed"] + (["feature"] if features else [])
    n = rnd.randint(n_min, n_max)
    for i in range(n):
        name = f"v{i}"
        earlier = [m for m in nodes if m[1] != "observed" or rnd.random() < 0.2]
        kind = rnd.choice(kinds if i else ["latent"])
        if kind == "observed" and sum(m[1] == "observed" for m in nodes) >= observed_max:
            kind = "latent"
        given = [m[0] for m in earlier if rnd.random() < 0.4]
        if kind == "transform":
            inputs = [m for m in nodes if m[1] in ("latent", "transform", "residual")]
            if not inputs:
                kind = "latent"
            else:
                source = rnd.choice(inputs)
                given = [g for g in given if g != source[0]]
                nodes.append((name, "transform", source[2], given, source[0]))
                continue
        if kind in ("residual", "feature") and not given:
            kind = "latent"
        dim = rnd.randint(1, 3)
        if kind == "residual":  # at most one residual conditioner of its dim: the one it refines
            same = [m[0] for m in nodes if m[1] == "residual" and m[2] == dim and m[0] in given]
            given = [g for g in given if g not in same[1:]]
        nodes.append((name, kind, dim, given, None))
    if not any(m[1] == "observed" for m in nodes):
        nodes.append((f"v{n}", "observed", rnd.randint(2, 4), [m[0] for m in nodes if rnd.random() < 0.6], None))
    lines = ["name: random", "networks: {g: {mlp: [4]}}", "model:"]
    for name, kind, dim, given, source in nodes:
        net = ", net: g" if given else ""
        if kind == "latent":
            lines.append(f"  - {name}: {{latent: {dim}, dist: normal, given: [{', '.join(given)}]{net}}}")
        elif kind == "transform":
            lines.append(f"  - {name}: {{transform: affine_diag, input: {source}, given: [{', '.join(given)}]{net}}}")
        elif kind == "residual":
            lines.append(f"  - {name}: {{transform: residual, dim: {dim}, given: [{', '.join(given)}]{net}}}")
        elif kind == "feature":
            lines.append(f"  - {name}: {{feature: {dim}, given: [{', '.join(given)}]{net}}}")
        else:
            lines.append(f"  - {name}: {{observed: [{dim}], dist: bernoulli, given: [{', '.join(given)}]{net}}}")
    dag = nx.DiGraph()
    for name, kind, dim, given, source in nodes:
        attrs = {"kind": "transform" if kind in ("residual", "feature") else kind, "dim": dim}
        if attrs["kind"] == "transform":
            attrs["bijective_input"] = source
        dag.add_node(name, **attrs)
        dag.add_edges_from((p, name) for p in given + ([source] if source else []))
    latents = [m[0] for m in nodes if m[1] == "latent"]
    observed = [m[0] for m in nodes if m[1] == "observed"]
    rnd.shuffle(latents)
    lines.append("guide:" if latents else "guide: []")
    earlier: list[str] = []
    guide_features: dict[str, list[str]] = {}
    for latent in latents:
        available = sorted(computable(dag, set(earlier) | set(observed)) - {latent})
        if features and rnd.random() < 0.5:  # a guide feature of what is computable now (often the data)
            inputs = [v for v in available + list(guide_features) if rnd.random() < 0.5] or available[:1]
            if inputs:
                name = f"f{len(guide_features)}"
                guide_features[name] = inputs
                lines.append(f"  - {name}: {{feature: {rnd.randint(1, 3)}, given: [{', '.join(inputs)}], net: g}}")
        style = rnd.random()
        pool = available + list(guide_features)
        given = [] if style < 0.15 else [v for v in pool if rnd.random() < 0.5]
        if 0.15 <= style < 0.45:
            given = [v for v in given if v not in observed]
        net = ", net: g" if given else ""
        lines.append(f"  - {latent}: {{dist: normal, given: [{', '.join(given)}]{net}}}")
        earlier.append(latent)
    return "\n".join(lines) + "\n", guide_features
