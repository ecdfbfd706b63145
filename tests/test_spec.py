"""The spec language works: loops, ``name(expr)`` templates, ranges, the boundary rule,
network templates, ``--set`` overrides, the expanded shipped specs, the graph IR they
build, and the published JSON Schema (``hiervae schema``)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from hiervae.cli import main
from hiervae.errors import SpecError
from hiervae.graph import build_graph, load_graph
from hiervae.language import json_schema, load_spec, parse_spec
from hiervae.language.net import Net
from hiervae.language.templates import (
    TemplateError,
    evaluate,
    expand_range,
    expand_references,
    parse_loop,
    substitute,
)

SPECS = Path(__file__).resolve().parents[1] / "specs"
SHIPPED = sorted(SPECS.glob("*.yaml"))


def _net(**written) -> Net:
    return Net.from_written(written)


def graph_of(text: str, overrides=()):
    return build_graph(parse_spec(text, file="t.yaml", overrides=overrides))


def refs(decl) -> list[str]:
    return [r.name for r in decl.given]


# A 3-layer chain with a decoder on every z; reused below with small edits.
CHAIN = """\
name: chain
vars: {L: 3}
networks:
  base: {mlp: [8], activation: relu}
  wide: {extends: base, mlp: [32]}
model:
  - for: l in 1..L
    nodes:
      eps(l): {latent: 2, given: [z(l-1)], net: base}
      z(l):   {transform: affine_diag, input: eps(l), given: [z(l-1)], net: wide}
  - x: {observed: [5], given: [z1..z(L)]}
guide:
  - for: l in 1..L
    factors:
      eps(l): {given: [x, z1..z(l-1)]}
"""


# ------------------------------------------------------------------ templates (unit level)
@pytest.mark.parametrize(
    "expr, value",
    [("l", 3), ("l-1", 2), ("2*l+1", 7), ("L-l+1", 8), ("(l+1)*2", 8), ("L//l", 3), ("L%l", 1), ("-l+4", 1), ("7", 7)],
)
def test_evaluate_integer_arithmetic(expr, value):
    assert evaluate(expr, {"l": 3, "L": 10}) == value


@pytest.mark.parametrize("expr", ["l/2", "l**2", "f(l)", "l.real", "'a'", "1.5", "l if l else 2"])
def test_evaluate_rejects_anything_but_integer_arithmetic(expr):
    with pytest.raises(TemplateError, match="only integer arithmetic|cannot parse"):
        evaluate(expr, {"l": 3})


def test_evaluate_unknown_name_lists_known_names():
    with pytest.raises(TemplateError, match=r"unknown name 'k' in \(k-1\) \(known: L, l\)"):
        evaluate("k-1", {"l": 1, "L": 2})


def test_substitute_replaces_every_outer_group():
    assert substitute("eps(l)", {"l": 3}) == "eps3"
    assert substitute("z(l-1)", {"l": 1}) == "z0"
    assert substitute("a(l)_b(2*l)", {"l": 2}) == "a2_b4"
    assert substitute("z((l+1)*2)", {"l": 1}) == "z4"
    assert substitute("plain", {}) == "plain"


def test_parse_loop():
    assert parse_loop("l in 1..L", {"L": 4}) == ("l", range(1, 5))
    assert parse_loop(" k in 2*L .. L+3 ", {"L": 2}) == ("k", range(4, 6))
    assert parse_loop("l in 3..1", {}) == ("l", range(3, 2))  # empty, not an error
    with pytest.raises(TemplateError, match="VAR in START..END"):
        parse_loop("l from 1 to 3", {})


def test_expand_range():
    assert expand_range("z1", "z4") == ["z1", "z2", "z3", "z4"]
    assert expand_range("z1", "z0") == []
    assert expand_range("gamma_2", "gamma_3") == ["gamma_2", "gamma_3"]
    with pytest.raises(TemplateError, match="same prefix"):
        expand_range("z1", "eps3")


def test_expand_references_marks_only_templated_out_of_loop_names_soft():
    loop = range(1, 4)
    out = expand_references(["x", "z(l-1)", "z1..z(l)", "w0", "z(l+1)"], {"l": 1}, loop)
    assert [(r.name, r.soft) for r in out] == [("x", False), ("z0", True), ("z1", False), ("w0", False), ("z2", False)]
    # outside a loop nothing is soft
    assert [r.soft for r in expand_references(["z(L+1)"], {"L": 3}, None)] == [False]


# ------------------------------------------------------------------ loops, templates, ranges
def test_loop_expands_in_declaration_order_with_templated_names():
    spec = parse_spec(CHAIN, file="t.yaml")
    assert [d.name for d in spec.nodes] == ["eps1", "z1", "eps2", "z2", "eps3", "z3", "x"]
    assert [d.kind for d in spec.nodes] == ["latent", "transform"] * 3 + ["observed"]
    assert [d.input for d in spec.nodes if d.kind == "transform"] == ["eps1", "eps2", "eps3"]
    assert [f.latent for f in spec.guide] == ["eps1", "eps2", "eps3"]


def test_loop_bounds_are_expressions_over_vars():
    text = CHAIN.replace("for: l in 1..L\n    nodes", "for: l in L-1..2*L-3\n    nodes")
    text = text.replace("z1..z(L)", "z2..z(L)").replace("given: [x, z1..z(l-1)]", "given: [x]")
    text = text.replace("guide:\n  - for: l in 1..L", "guide:\n  - for: l in 2..L")
    spec = parse_spec(text, file="t.yaml")
    assert [d.name for d in spec.nodes] == ["eps2", "z2", "eps3", "z3", "x"]


def test_template_arithmetic_in_names_and_references():
    text = """\
name: t
vars: {L: 3}
model:
  - for: k in 1..L
    nodes:
      h(L-k+1): {latent: 1, given: [h(L-k+2)]}
  - x: {observed: [2], given: [h1]}
guide:
  - for: k in 1..L
    factors:
      h(L-k+1): {given: [x, h(L-k+2)]}
"""
    graph = graph_of(text)
    # a top-down chain h3 -> h2 -> h1 -> x; h4 (k = 0) is outside the loop: dropped
    assert graph.nodes["h3"].parents == ()
    assert graph.nodes["h2"].parents == ("h3",)
    assert graph.nodes["h1"].parents == ("h2",)
    assert [(f.latent, f.given) for f in graph.guide] == [("h3", ("x",)), ("h2", ("x", "h3")), ("h1", ("x", "h2"))]


def test_vars_are_usable_outside_loops():
    text = CHAIN.replace("  - x: {observed: [5], given: [z1..z(L)]}", "  - x: {observed: [5], given: [z(L)]}")
    assert graph_of(text).nodes["x"].parents == ("z3",)


def test_range_expands_with_templated_end():
    graph = graph_of(CHAIN)
    assert graph.nodes["x"].parents == ("z1", "z2", "z3")


def test_empty_range_inside_loop():
    graph = graph_of(CHAIN)
    # z1..z(l-1) is empty at l = 1, then z1, then z1, z2
    assert [f.given for f in graph.guide] == [("x",), ("x", "z1"), ("x", "z1", "z2")]


def test_range_with_end_below_start_is_empty_outside_loops_too():
    text = "name: t\nmodel:\n  - z1: {latent: 1}\n  - x: {observed: [2], given: [z1, z3..z2]}\nguide:\n  - z1: {given: [x]}\n"
    assert graph_of(text).nodes["x"].parents == ("z1",)


def test_loop_with_empty_range_declares_nothing():
    text = CHAIN.replace("vars: {L: 3}", "vars: {L: 0}").replace("given: [z1..z(L)]", "given: []")
    graph = graph_of(text)
    assert list(graph.nodes) == ["x"] and graph.guide == ()


def test_templated_network_name():
    text = """\
name: t
vars: {L: 2}
networks:
  n1: {mlp: [3]}
  n2: {mlp: [4]}
model:
  - for: l in 1..L
    nodes:
      z(l): {latent: 1, net: n(l)}
  - x: {observed: [2], given: [z1..z(L)]}
guide:
  - for: l in 1..L
    factors:
      z(l): {given: [x]}
"""
    graph = graph_of(text)
    assert graph.nodes["z1"].net.layers == (3,) and graph.nodes["z2"].net.layers == (4,)


# ------------------------------------------------------------------ boundary rule
def test_boundary_reference_is_dropped_at_the_first_layer():
    graph = graph_of(CHAIN)
    assert graph.nodes["eps1"].parents == ()
    assert graph.nodes["z1"].parents == ("eps1",)
    assert graph.nodes["eps2"].parents == ("z1",)
    assert graph.nodes["z2"].parents == ("eps2", "z1")


def test_boundary_reference_to_a_declared_node_is_kept():
    """z0 declared explicitly: z(l-1) at l = 1 names a real node and stays."""
    text = CHAIN.replace("model:\n", "model:\n  - z0: {latent: 2}\n").replace(
        "guide:\n", "guide:\n  - z0: {given: [x]}\n"
    )
    graph = graph_of(text)
    assert graph.nodes["eps1"].parents == ("z0",)
    assert graph.nodes["z1"].parents == ("eps1", "z0")


def encoder_chain(L: int, x_given: str, factor: str) -> str:
    """A chain z1 -> ... -> zL -> x (x reads ``x_given``) whose guide factor z(l) is
    ``factor`` (line 12 of the text): the specs of the encoder tests."""
    return f"""\
name: t
vars: {{L: {L}}}
networks: {{enc: {{mlp: [4], out: 3}}}}
model:
  - for: l in 1..L
    nodes:
      z(l): {{latent: 1, given: [z(l-1)]}}
  - x: {{observed: [2], given: [{x_given}]}}
guide:
  - for: l in 1..L
    factors:
      z(l): {factor}
"""


def test_boundary_drops_the_encoder_of_a_dropped_reference():
    graph = graph_of(encoder_chain(2, "z(L)", "{given: [x, z(l-1)], encoders: {x: enc, z(l-1): enc}}"))
    assert set(graph.guide[0].encoders) == {"x"}
    assert set(graph.guide[1].encoders) == {"x", "z1"}


def test_encoder_key_may_name_a_range_one_encoder_per_node():
    """`encoders: {z1..z(l-1): enc}` gives each node of the range its own encoder; at l = 1
    the range is empty and names none."""
    graph = graph_of(encoder_chain(3, "z1..z(L)", "{given: [x, z1..z(l-1)], encoders: {x: enc, z1..z(l-1): enc}}"))
    assert [sorted(f.encoders) for f in graph.guide] == [["x"], ["x", "z1"], ["x", "z1", "z2"]]
    third = graph.guide[2]
    assert third.encoders["z1"] is not None and third.encoders["z1"] == third.encoders["z2"]  # same template


def test_encoder_range_outside_given_is_an_error_at_its_key(one_line):
    with pytest.raises(SpecError) as err:
        graph_of(encoder_chain(2, "z(L)", "{given: [x], encoders: {z1..z(l-1): enc}}"))
    message = one_line(err)
    assert "encoder for 'z1', which is not in given" in message and ":12:" in message


@pytest.mark.parametrize(
    "given, unknown",
    [
        ("[w(l)]", "w1"),  # templated, index inside the loop range: a typo, reported
        ("[zz(l-1), z(l-1)]", "zz1"),  # dropped at l = 1 (index 0), reported at l = 2
        ("[z0]", "z0"),  # not templated: never dropped
    ],
)
def test_boundary_rule_does_not_hide_typos(given, unknown):
    text = f"""\
name: t
vars: {{L: 2}}
model:
  - for: l in 1..L
    nodes:
      z(l): {{latent: 1, given: {given}}}
  - x: {{observed: [2], given: [z1..z(L)]}}
"""
    with pytest.raises(SpecError, match=f"unknown node '{unknown}' in given"):
        graph_of(text)


def test_templated_reference_outside_a_loop_is_not_dropped():
    text = CHAIN.replace("given: [z1..z(L)]", "given: [z(L+1)]")
    with pytest.raises(SpecError, match="unknown node 'z4' in given"):
        graph_of(text)


# ------------------------------------------------------------------ network templates
def test_network_by_name_inline_and_extends():
    text = CHAIN.replace("  - x: {observed: [5], given: [z1..z(L)]}", "  - x: {observed: [5], given: [z1..z(L)], net: {extends: wide, activation: tanh, dropout: 0.1}}")
    graph = graph_of(text)
    assert graph.nodes["eps2"].net == _net(mlp=[8], activation="relu")
    # extends copies the base and overrides the keys given
    assert graph.nodes["z2"].net == _net(mlp=[32], activation="relu")
    # inline, extending a template that itself extends another
    assert graph.nodes["x"].net == _net(mlp=[32], activation="tanh", dropout=0.1)
    assert graph.guide[0].net is None


def test_guide_networks_and_encoders_resolve():
    graph = load_graph(SPECS / "quickstart.yaml")
    f2 = graph.factor("eps2")
    assert f2.encoders == {"x": _net(mlp=[64], activation="relu", out=16), "z1": _net(mlp=[32], activation="relu", out=8)}
    assert f2.net == _net(mlp=[64], activation="relu")


# ------------------------------------------------------------------ --set overrides
def test_set_vars_changes_the_depth():
    spec = load_spec(SPECS / "quickstart.yaml", ["vars.L=4"])
    assert [d.name for d in spec.nodes] == ["eps1", "z1", "eps2", "z2", "eps3", "z3", "eps4", "z4", "x"]
    assert [f.latent for f in spec.guide] == ["eps1", "eps2", "eps3", "eps4"]
    assert build_graph(spec).nodes["x"].parents == ("z4",)


def test_set_train_values_and_nested_paths():
    spec = load_spec(
        SPECS / "quickstart.yaml",
        ["train.batch_size=32", "train.optimizer.lr=0.01", "train.optimizer.betas=[0.5, 0.9]", "eval.chunk_size=50"],
    )
    train = spec.document.train
    assert (train.batch_size, train.optimizer.lr, train.optimizer.betas) == (32, 0.01, (0.5, 0.9))
    assert spec.document.eval.chunk_size == 50
    assert train.epochs == 40  # untouched


def test_set_creates_missing_sections_and_indexes_lists():
    spec = load_spec(SPECS / "iaf_mnist.yaml", ["eval.chunk_size=10", "model.1.x.observed=[28, 28]", "networks.decoder.mlp.1=64"])
    assert spec.document.eval.chunk_size == 10
    graph = build_graph(spec)
    assert graph.nodes["x"].shape == (28, 28)
    assert graph.nodes["x"].net.layers == (512, 64)
    spec = load_spec(SPECS / "maf_cifar10.yaml", ["eval.batch_size=7"])  # no `eval:` in the file
    assert spec.document.eval.batch_size == 7


def test_resolved_yaml_records_overrides_and_reloads():
    spec = load_spec(SPECS / "quickstart.yaml", ["vars.L=2", "train.batch_size=32"])
    again = parse_spec(spec.resolved_yaml(), file="resolved.yaml")
    assert again.document == spec.document
    assert [d.name for d in again.nodes] == ["eps1", "z1", "eps2", "z2", "x"]


# ------------------------------------------------------------------ shipped specs, expanded
def test_quickstart_expanded():
    spec = load_spec(SPECS / "quickstart.yaml")
    assert spec.name == "quickstart"
    rows = [(d.name, d.kind, refs(d), d.input) for d in spec.nodes]
    assert rows == [
        ("eps1", "latent", ["z0"], None),
        ("z1", "transform", ["z0"], "eps1"),
        ("eps2", "latent", ["z1"], None),
        ("z2", "transform", ["z1"], "eps2"),
        ("eps3", "latent", ["z2"], None),
        ("z3", "transform", ["z2"], "eps3"),
        ("x", "observed", ["z3"], None),
    ]
    # the guide's factors before the boundary rule (the graph drops z0)
    assert [(f.latent, refs(f)) for f in spec.guide] == [("eps1", ["x", "z0"]), ("eps2", ["x", "z1"]), ("eps3", ["x", "z2"])]
    # every declaration remembers where it was written
    assert spec.nodes[0].location.file.endswith("quickstart.yaml")
    assert spec.nodes[0].location.line == 18 and spec.nodes[1].location.line == 19
    assert spec.nodes[-1].location.line == 20 and spec.guide[2].location.line == 25


def test_quickstart_graph():
    graph = load_graph(SPECS / "quickstart.yaml")
    assert {n: (v.kind, v.parents, v.bijective_input, v.dim, v.family) for n, v in graph.nodes.items()} == {
        "eps1": ("latent", (), None, 4, "normal"),
        "z1": ("transform", ("eps1",), "eps1", 4, "affine_lowrank"),
        "eps2": ("latent", ("z1",), None, 4, "normal"),
        "z2": ("transform", ("eps2", "z1"), "eps2", 4, "affine_lowrank"),
        "eps3": ("latent", ("z2",), None, 4, "normal"),
        "z3": ("transform", ("eps3", "z2"), "eps3", 4, "affine_lowrank"),
        "x": ("observed", ("z3",), None, 64, "bernoulli"),
    }
    assert graph.latents == ["eps1", "eps2", "eps3"] and graph.observed == ["x"] and graph.transforms == ["z1", "z2", "z3"]
    assert graph.nodes["z2"].conditioners == ("z1",)
    assert [(f.latent, f.family, f.given, sorted(f.encoders)) for f in graph.guide] == [
        ("eps1", "normal", ("x",), ["x"]),
        ("eps2", "normal", ("x", "z1"), ["x", "z1"]),
        ("eps3", "normal", ("x", "z2"), ["x", "z2"]),
    ]
    assert (graph.data.dataset, graph.data.validation, graph.train.batch_size, graph.train.kl_warmup.schedule) == ("digits", 200, 64, "linear")


def test_sere_mlp_mnist_graph():
    graph = load_graph(SPECS / "sere_mlp_mnist.yaml")
    L = 10
    assert list(graph.nodes)[-1] == "x"
    assert graph.latents == [f"eps{l}" for l in range(1, L + 1)]
    assert graph.transforms == [f"z{l}" for l in range(1, L + 1)]
    assert graph.nodes["x"].parents == tuple(f"z{l}" for l in range(1, L + 1))
    assert graph.nodes["x"].shape == (784,)
    for l in range(1, L + 1):
        eps, z = graph.nodes[f"eps{l}"], graph.nodes[f"z{l}"]
        prev = (f"z{l - 1}",) if l > 1 else ()
        assert (eps.dim, eps.parents, eps.family) == (10, prev, "normal")
        assert (z.dim, z.parents, z.bijective_input, z.options) == (10, (f"eps{l}",) + prev, f"eps{l}", {"rank": 1})
    assert [f.latent for f in graph.guide] == [f"eps{l}" for l in range(1, L + 1)]
    assert [f.given for f in graph.guide] == [("x",)] + [("x", f"z{l - 1}") for l in range(2, L + 1)]
    assert graph.nodes["eps1"].net.separate is True and graph.nodes["eps1"].net.batch_norm is True
    assert graph.train.kl_warmup.schedule == "geometric" and graph.train.optimizer.weight_decay == 1e-5


def test_dag_attributes():
    dag = load_graph(SPECS / "quickstart.yaml").dag
    assert dict(dag.nodes["eps1"]) == {"kind": "latent", "dim": 4}
    assert dict(dag.nodes["z1"]) == {"kind": "transform", "dim": 4, "bijective_input": "eps1"}
    assert dict(dag.nodes["x"]) == {"kind": "observed", "dim": 64}
    assert set(dag.edges) == {("eps1", "z1"), ("z1", "eps2"), ("z1", "z2"), ("eps2", "z2"), ("z2", "eps3"), ("z2", "z3"), ("eps3", "z3"), ("z3", "x")}


def test_dag_attributes_non_bijective_transform_and_event_shapes():
    dag = load_graph(SPECS / "sere_maf_cifar10.yaml").dag
    assert dict(dag.nodes["gamma2"]) == {"kind": "transform", "dim": 300, "bijective_input": None}
    assert set(dag.predecessors("gamma2")) == {"gamma1", "z2"}
    assert dict(dag.nodes["x"]) == {"kind": "observed", "dim": 3 * 32 * 32}
    assert dict(dag.nodes["z1"])["bijective_input"] == "eps1"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_spec_loads(path):
    graph = load_graph(path)
    assert graph.observed, "every model has an observed node"
    assert sorted(f.latent for f in graph.guide) == sorted(graph.latents)
    assert graph.name == yaml.safe_load(path.read_text())["name"]


def test_faithful_variants_share_the_generative_model():
    for faithful in SPECS.glob("*_faithful.yaml"):
        a = load_graph(SPECS / faithful.name.replace("_faithful", ""))
        b = load_graph(faithful)
        assert {n: (v.parents, v.shape, v.family) for n, v in a.nodes.items()} == {
            n: (v.parents, v.shape, v.family) for n, v in b.nodes.items()
        }, faithful.name


# ------------------------------------------------------------------ JSON Schema for editors
@pytest.fixture(scope="module")
def schema():
    return json_schema()


def test_schema_command_prints_the_json_schema(capsys, schema):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == schema
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_is_a_valid_json_schema(schema):
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_spec_validates_against_the_schema(schema, path):
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(trian={}),  # unknown top-level key
        lambda d: d["model"][1]["x"].update(dsit="normal"),  # unknown key in a node
        lambda d: d["model"][1]["x"].update(observed="ten"),  # wrong type
        lambda d: d["model"][1].update(y={"dist": "normal"}),  # no kind
        lambda d: d["model"][0]["nodes"]["eps(l)"].update(mlp=[3]),  # unknown key inside a loop body
        lambda d: d["model"][0].update(**{"for": "l from 1 to 3"}),  # bad loop header
        lambda d: d["guide"][0]["factors"]["eps(l)"].update(merge="posterior"),
        lambda d: d["networks"]["gauss"].update(layers=3),
        lambda d: d["train"].update(batch_size=0),
        lambda d: d.pop("name"),
    ],
)
def test_schema_rejects_what_the_loader_rejects(schema, edit):
    data = yaml.safe_load((SPECS / "quickstart.yaml").read_text())
    assert jsonschema.Draft202012Validator(schema).is_valid(data)
    edit(data)
    assert not jsonschema.Draft202012Validator(schema).is_valid(data)


# ------------------------------------------------------------------ YAML features
def test_yaml_anchors_and_aliases_work():
    text = "name: t\nnetworks:\n  a: &a {mlp: [3], activation: relu}\nmodel:\n  - x: {observed: [4], net: *a}\n"
    assert graph_of(text).nodes["x"].net == _net(mlp=[3], activation="relu")


def test_yaml_merge_keys_work():
    text = "name: t\nnetworks:\n  a: &a {mlp: [3], activation: relu}\n  b:\n    <<: *a\n    dropout: 0.5\nmodel:\n  - x: {observed: [4], net: b}\n"
    assert graph_of(text).nodes["x"].net == _net(mlp=[3], activation="relu", dropout=0.5)


# ------------------------------------------------------------------ docs/spec.md stays in step
DOC = Path(__file__).resolve().parents[1] / "docs" / "spec.md"


def _yaml_blocks(text: str) -> list[str]:
    return [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]


def test_doc_documents_every_key():
    from hiervae.language import schema as S

    doc = DOC.read_text()
    models = [S.SpecDocument, S.DataSpec, S.NetworkSpec, *S.NODE_KINDS.values(), S.GuideFactorSpec, S.LoopSpec,
              S.TrainSpec, S.AdamSpec, S.GeometricWarmup, S.LinearWarmup, S.ConstantBeta, S.EvalSpec]
    missing = [f"{m.__name__}.{f.alias or n}" for m in models for n, f in m.model_fields.items() if f"`{f.alias or n}`" not in doc]
    assert not missing


def test_doc_defaults_match_the_schema():
    from hiervae.language import schema as S

    doc = DOC.read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.setdefault(cells[0].strip("`"), []).append(cells[1])
    for model in (S.DataSpec, S.TrainSpec, S.AdamSpec, S.EvalSpec):
        for name, field in model.model_fields.items():
            if isinstance(field.default, (int, float, str)) and not isinstance(field.default, bool):
                shown = [yaml.safe_load(c.strip("`")) for c in rows.get(name, []) if c.startswith("`")]
                assert field.default in shown, (model.__name__, name, field.default, rows.get(name))


def test_doc_lists_families_transforms_and_shipped_specs():
    from hiervae.nn import FAMILIES, TRANSFORMS

    doc = DOC.read_text()
    for name in [*FAMILIES, *TRANSFORMS]:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
    for path in SHIPPED:
        assert f"`{path.name}`" in doc, path.name


def test_doc_examples_are_valid():
    blocks = _yaml_blocks(DOC.read_text())
    # the minimal example is the shipped quickstart, comments aside
    assert yaml.safe_load(blocks[0]) == yaml.safe_load((SPECS / "quickstart.yaml").read_text())
    for block in blocks:
        data = yaml.safe_load(block)  # every fragment is valid YAML
        if isinstance(data, dict) and "name" in data and "model" in data:
            build_graph(parse_spec(block, file="docs/spec.md"))


def test_skip_connections_across_several_layers_drop_every_index_below_the_loop():
    text = """
name: skip
vars: {L: 4}
model:
  - for: l in 1..L
    nodes:
      z(l): {latent: 2, given: [z(l-1), z(l-2), z(l-3)], net: {mlp: [4]}}
  - x: {observed: [3], given: [z(L)], net: {mlp: [4]}}
guide:
  - for: l in 1..L
    factors:
      z(l): {given: [x, z(l-1), z(l-2)], net: {mlp: [4]}}
"""
    graph = build_graph(parse_spec(text))
    assert [graph.nodes[f"z{l}"].parents for l in range(1, 5)] == [(), ("z1",), ("z2", "z1"), ("z3", "z2", "z1")]
    assert graph.factor("z2").given == ("x", "z1")
    with pytest.raises(SpecError, match="unknown node 'w-1'"):  # a name declared nowhere, outside a loop
        build_graph(parse_spec(text.replace("  - x: {observed: [3], given: [z(L)]", "  - x: {observed: [3], given: [z(L), w(0-1)]")))
