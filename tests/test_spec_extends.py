"""`extends:` (a spec laid over another, entries patched by name) and `--set` by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hiervae.errors import SpecError
from hiervae.graph import load_graph
from hiervae.language import load_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"

BASE = """\
name: base
vars: {L: 3}
networks:
  g: {mlp: [8], activation: relu}
  enc: {mlp: [8], activation: relu, out: 4}
model:
  - for: l in 1..L
    nodes:
      z(l): {latent: 2, dist: normal, given: [z(l-1)], net: g}
  - x: {observed: [6], dist: bernoulli, given: [z(L)], net: g}
guide:
  - for: l in 1..L
    factors:
      z(l): {dist: normal, given: [x, z(l-1)], encoders: {x: enc}, net: g}
train: {batch_size: 8, epochs: 2, kl_warmup: {schedule: linear, epochs: 3}}
"""


@pytest.fixture
def base(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    return tmp_path


def overlay(folder: Path, text: str, name: str = "over.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_mappings_merge_null_deletes_and_entries_are_patched_by_name(base):
    plain = load_graph(base / "base.yaml")
    graph = load_graph(overlay(base, """\
extends: base.yaml
name: over
train: {epochs: 5, kl_warmup: null}
networks: {g: {mlp: [16]}}
guide:
  z(l): {encoders: {x: null}}
model:
  x: {given: [z1..z(L)]}
"""))
    assert graph.name == "over" and plain.name == "base"
    assert (graph.train.epochs, graph.train.batch_size) == (5, 8)  # one key changed, the others kept
    assert plain.train.kl_warmup is not None and graph.train.kl_warmup == type(graph.train)().kl_warmup
    assert graph.nodes["z2"].net.layers == (16,) and graph.nodes["z2"].net.activation == "relu"
    assert all(f.encoders == {} for f in graph.guide) and all("x" in f.encoders for f in plain.guide)
    assert graph.nodes["x"].parents == ("z1", "z2", "z3") and plain.nodes["x"].parents == ("z3",)
    assert [f.given for f in graph.guide] == [f.given for f in plain.guide]


def test_a_list_replaces_the_section_and_vars_apply_to_the_base(base):
    graph = load_graph(overlay(base, """\
extends: base.yaml
name: over
vars: {L: 2}
guide:
  - for: l in 1..L
    factors:
      z(l): {dist: normal, given: [x, z1..z(l-1)], net: g}
"""))
    assert list(graph.nodes) == ["z1", "z2", "x"]
    assert [f.given for f in graph.guide] == [("x",), ("x", "z1")]


def test_faithful_specs_are_overlays_with_the_corrected_guide():
    for name in ("sere_mlp_mnist", "sere_iaf_mnist", "sere_resnet_mnist", "sere_maf_cifar10"):
        text = (SPECS / f"{name}_faithful.yaml").read_text()
        assert f"extends: {name}.yaml" in text and len([t for t in text.splitlines() if not t.startswith("#")]) <= 13
        base, faithful = load_graph(SPECS / f"{name}.yaml"), load_graph(SPECS / f"{name}_faithful.yaml")
        assert faithful.nodes.keys() == base.nodes.keys()
        assert all(node.net == base.nodes[n].net for n, node in faithful.nodes.items())
        for f in faithful.guide:
            index = int(f.latent[len("eps"):])
            assert f.given[0] == "x" and set(f.given[1:]) == {f"z{j}" for j in range(1, index)}


def _error(path: Path, overrides=()) -> str:
    with pytest.raises(SpecError) as err:
        load_spec(path, overrides)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_errors_point_into_the_file_that_wrote_the_key(base):
    (base / "base.yaml").write_text(BASE.replace("train: {batch_size: 8", "train: {batch_size: -8"))
    text = _error(overlay(base, "extends: base.yaml\nname: over\n"))
    line = BASE.splitlines().index(next(t for t in BASE.splitlines() if t.startswith("train:"))) + 1
    assert text.startswith(f"{base / 'base.yaml'}:{line}: train.batch_size"), text
    (base / "base.yaml").write_text(BASE)
    text = _error(overlay(base, "extends: base.yaml\nname: over\ntrain: {epochs: zero}\n"))
    assert text.startswith(f"{base / 'over.yaml'}:3: train.epochs"), text
    text = _error(overlay(base, "extends: base.yaml\nname: over\nguide:\n  z(l): {dsit: normal}\n"))
    assert re.match(rf"{re.escape(str(base / 'over.yaml'))}:4: guide\[0\]\.factors\.z\(l\)\.dsit", text), text


@pytest.mark.parametrize("text, message", [
    ("extends: base.yaml\nname: o\nguide:\n  z9: {given: [x]}\n",
     r"over.yaml:4: guide.z9: the base spec has no guide entry 'z9' to patch \(entries: z\(l\)\)"),
    ("extends: base.yaml\nname: o\nmodel:\n  x: [1]\n", r"over.yaml:4: model.x: a patch of model entry 'x' is a mapping"),
    ("extends: nothere.yaml\nname: o\n", r"over.yaml:1: extends: extends 'nothere.yaml': no such file"),
    ("extends: 3\nname: o\n", r"over.yaml:1: extends: extends names a spec file"),
    ("extends: over.yaml\nname: o\n", r"extends 'over.yaml': specs extend each other in a cycle"),
])
def test_bad_extends_is_one_located_line(base, text, message):
    assert re.search(message, _error(overlay(base, text))), _error(overlay(base, text))


def test_a_chain_of_bases_is_bounded(tmp_path):
    (tmp_path / "s0.yaml").write_text(BASE)
    for i in range(1, 11):
        (tmp_path / f"s{i}.yaml").write_text(f"extends: s{i - 1}.yaml\nname: s{i}\n")
    assert load_graph(tmp_path / "s8.yaml").name == "s8"
    assert "a chain of more than 8 bases" in _error(tmp_path / "s10.yaml")


def test_set_addresses_entries_by_name(base):
    graph = load_graph(base / "base.yaml", ["model.x.net={mlp: [4]}", "guide.z(l).given=[x]", "model.z(l).latent=3"])
    assert graph.nodes["x"].net.layers == (4,) and graph.nodes["z1"].shape == (3,)
    assert all(f.given == ("x",) for f in graph.guide)
    assert load_graph(base / "base.yaml", ["model.1.x.net={mlp: [4]}"]).nodes["x"].net.layers == (4,)  # by position too
    text = _error(base / "base.yaml", ["guide.z1.given=[x]"])
    assert text == "--set: guide.z1.given: no guide entry 'z1' (entries: z(l))", text
