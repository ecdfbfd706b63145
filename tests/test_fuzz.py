"""Fuzzing the spec language: seeded mutants of every shipped spec (keys deleted or misspelt,
values of another type or extreme, items duplicated, names swapped).

* ``check`` on every mutant ends with exit code 0, 1 or 2, one line on error, no traceback,
  no hang (a few hundred mutants here, thousands in the slow suite);
* every mutant ``check`` accepts compiles (``build_program``), so nothing compile would
  refuse gets past ``check`` (mutants of the shipped specs with their networks shrunk, so
  that compiling a hundred of them is quick)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fuzz.mutate import dump, mutate
from fuzz.run import run
from oracle.random_specs import random_spec

from hiervae.errors import SpecError
from hiervae.graph import build_graph
from hiervae.language import load_spec, parse_spec
from hiervae.program import build_program

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.yaml"))


def _shrunk(path: Path) -> dict:
    data = load_spec(path).data  # the merged document (extends resolved)
    for net in (data.get("networks") or {}).values():
        if "mlp" in net:
            net["mlp"] = [4]
        if "resnet" in net:
            net["resnet"] = [2]
    if "L" in data.get("vars", {}):
        data["vars"]["L"] = 2
    for entry in data["model"]:
        node = entry.get("x") if isinstance(entry, dict) else None
        if isinstance(node, dict) and isinstance(node.get("net"), dict):
            node["net"]["mlp"] = [4]
    return data


def _check_contract(count: int, seed: int, tmp_path: Path) -> dict:
    rnd = random.Random(seed)
    bases = {p.name: load_spec(p).data for p in SPECS}
    codes: dict = {}
    for i in range(count):
        name = rnd.choice(sorted(bases))
        path = tmp_path / f"m{i}.yaml"
        path.write_text(dump(mutate(bases[name], rnd, edits=rnd.choice([1, 1, 2, 3]))))
        outcome = run(["check", str(path)])
        assert outcome.problem() is None, f"{name} mutant {path.read_text()[:2000]}\n{outcome.problem()}"
        codes[outcome.code] = codes.get(outcome.code, 0) + 1
    return codes


def _compile_contract(count: int, seed: int) -> tuple[int, int]:
    rnd = random.Random(seed)
    bases = {p.name: _shrunk(p) for p in SPECS}
    accepted = 0
    for i in range(count):
        if i % 4 == 0:
            text = random_spec(rnd)
        else:
            name = rnd.choice(sorted(bases))
            text = dump(mutate(bases[name], rnd, edits=rnd.choice([1, 1, 2])))
        try:
            graph = build_graph(parse_spec(text, file="mutant.yaml"))
        except SpecError:
            continue
        accepted += 1
        try:
            build_program(graph)
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"check accepts, compile refuses ({err.__class__.__name__}: {err}):\n{text}")
    return accepted, count


def test_check_keeps_its_contract_on_mutated_specs(tmp_path):
    codes = _check_contract(300, seed=1, tmp_path=tmp_path)
    assert codes.get(2, 0) > 100 and codes.get(0, 0) + codes.get(1, 0) > 10, codes  # both outcomes occur


def test_every_spec_check_accepts_compiles():
    accepted, total = _compile_contract(400, seed=2)
    assert accepted > 80, (accepted, total)  # not vacuous: many mutants are accepted and compiled


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 8))
def test_check_keeps_its_contract_on_thousands_of_mutants(seed, tmp_path):
    _check_contract(1000, seed=seed, tmp_path=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8, 11))
def test_every_spec_check_accepts_compiles_thousands(seed):
    _compile_contract(1500, seed=seed)
