"""A seeded mutator of spec documents, for the fuzz tests: each mutant is one shipped (or
random) spec with a few random edits -- a key deleted or misspelt, a value replaced by
one of another type or an extreme one, a list item duplicated, a name swapped, a family
or a network replaced -- dumped back to YAML text."""

from __future__ import annotations

import copy
import random
from typing import Any

import yaml

NAMES = ["normal", "std_normal", "iaf", "bernoulli", "maf", "affine_lowrank", "affine_diag", "residual",
         "spline_coupling", "planar", "mnist", "digits", "cifar10", "binarized_mnist", "x", "z1", "eps2",
         "z(l-1)", "z(l+1)", "z(L)", "z1..z(L)", "x..x", "relu", "tanh", "tnah", "dynamic", "static", "none",
         "uniform", "linear", "geometric", "constant", "prior", "down", "up", "mean_field", "trace", "auto"]
VALUES: list[Any] = [0, 1, -1, 2, 3, 7, 10**9, 10**30, 0.5, -0.0, 1e-12, 1e300, float("inf"), float("nan"), True,
                     False, None, "", "a", [], [0], [1, 2], {}, {"a": 1}, "(l", "l)", "(l//0)", "(L*L*L*L*L*L)"]


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _get(data: Any, path: tuple) -> Any:
    for p in path:
        data = data[p]
    return data


def mutate(data: dict, rnd: random.Random, edits: int | None = None) -> dict:
    data = copy.deepcopy(data)
    for _ in range(edits or rnd.randint(1, 3)):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = rnd.choice(paths)
        parent, key = _get(data, path[:-1]), path[-1]
        op = rnd.random()
        if op < 0.15 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.25 and isinstance(parent, dict) and isinstance(key, str):
            typo = key[:-1] if len(key) > 1 and rnd.random() < 0.5 else key + rnd.choice("sx_")
            parent[typo] = parent.pop(key)
        elif op < 0.35 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op < 0.55:
            parent[key] = rnd.choice(NAMES)
        elif op < 0.85:
            parent[key] = copy.deepcopy(rnd.choice(VALUES))
        else:
            other = _get(data, rnd.choice(paths))
            parent[key] = copy.deepcopy(other)
    return data


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
