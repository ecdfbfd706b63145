"""Bad input gives ONE line naming the file, the line and the key, and saying what is wrong.

Each case is a small YAML text; ``str(err)`` must read ``t.yaml:LINE: KEY: message`` with
LINE the line of the offending key.  Spec-level errors come from ``parse_spec``,
graph-level ones (dangling references, cycles, guide order, ...) from ``build_graph``.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from hiervae.errors import HiervaeError, Location, SpecError
from hiervae.graph import build_graph
from hiervae.language import load_spec, parse_spec


def error_of(text: str, overrides=()) -> SpecError:
    """The SpecError that parsing and building ``text`` raises (any other exception fails)."""
    with pytest.raises(SpecError) as info:
        build_graph(parse_spec(textwrap.dedent(text), file="t.yaml", overrides=overrides))
    err = info.value
    assert isinstance(err, HiervaeError) and err.exit_code == 2
    assert "\n" not in str(err), "one line"
    return err


def assert_at(err: SpecError, line: int | None, key: str | None, message: str) -> None:
    text = str(err)
    where = "t.yaml" + (f":{line}" if line is not None else "")
    prefix = f"{where}: " + (f"{key}: " if key else "")
    assert text.startswith(prefix), f"{text!r} does not start with {prefix!r}"
    assert re.search(message, text[len(prefix):]), f"{text!r} does not match {message!r}"
    assert err.location == Location("t.yaml", line, key)


# A valid two-node spec; cases append or replace lines.
OK = """\
name: t
model:
  - z: {latent: 2}
  - x: {observed: [4], given: [z]}
guide:
  - z: {given: [x]}
"""

CHAIN = """\
name: t
vars: {L: 2}
model:
  - for: l in 1..L
    nodes:
      eps(l): {latent: 2, given: [z(l-1)]}
      z(l):   {transform: affine_diag, input: eps(l), given: [z(l-1)]}
  - x: {observed: [4], given: [z(L)]}
guide:
"""


def test_the_base_texts_are_valid():
    build_graph(parse_spec(OK, file="t.yaml"))
    build_graph(parse_spec(CHAIN + "  - eps1: {given: [x]}\n  - eps2: {given: [x, z1]}\n", file="t.yaml"))


# (id, text, line, key, message regex); the offending key is alone on its line.
CASES = [
    # ---------------------------------------------------------------- YAML and document shape
    ("yaml-syntax", "name: t\nmodel:\n  - z: latent: 2\n", 3, None, r"^invalid YAML: mapping values are not allowed here$"),
    ("yaml-unclosed-flow", "name: t\nmodel:\n  - z: {latent: 2\n  - x: {observed: [4]}\n", 4, None, r"^invalid YAML: "),
    ("yaml-tab", "name: t\nmodel:\n\t- x: {observed: [4]}\n", 3, None, r"^invalid YAML: .*'\\t'"),
    ("duplicate-yaml-key", "name: t\nmodel:\n  - z: {latent: 2}\n    z: {latent: 3}\n", 4, "model[0].z", r"^duplicate key 'z'$"),
    ("duplicate-top-level-key", "name: t\nname: u\nmodel:\n  - x: {observed: [4]}\n", 2, "name", r"^duplicate key 'name'$"),
    ("top-level-list", "- name: t\n- model: []\n", 1, None, r"^a spec is a mapping"),
    ("top-level-scalar", "just text\n", 1, None, r"^a spec is a mapping"),
    ("unknown-top-level-key", OK + "trian: {epochs: 3}\n", 7, "trian", r"^unknown key 'trian' \(allowed: extends, name, description, vars, data, networks, model, guide, train, eval\)$"),
    ("missing-name", "model:\n  - x: {observed: [4]}\n", 1, "name", r"^missing required key 'name'$"),
    ("missing-model", "name: t\ndescription: d\n", 1, "model", r"^missing required key 'model'$"),
    ("empty-model", "name: t\nmodel: []\n", 2, "model", r"at least 1 item"),
    ("model-not-a-list", "name: t\nmodel: {x: {observed: [4]}}\n", 2, "model", r"valid list"),
    # ---------------------------------------------------------------- nodes
    ("unknown-node-key", "name: t\nmodel:\n  - z:\n      latent: 2\n      dsit: normal\n", 5, "model[0].z.dsit", r"^unknown key 'dsit' \(allowed: latent, dist, given, net, options\)$"),
    ("unknown-node-key-in-loop", "name: t\nmodel:\n  - for: l in 1..2\n    nodes:\n      z(l):\n        latent: 2\n        givne: []\n", 7, "model[0].nodes.z(l).givne", r"^unknown key 'givne'"),
    ("unknown-guide-key", OK.replace("  - z: {given: [x]}", "  - z:\n      givne: [x]"), 7, "guide[0].z.givne", r"^unknown key 'givne' \(allowed: dist, given, encoders, net, merge, options\)$"),
    ("unknown-train-key", OK + "train:\n  batchsize: 3\n", 8, "train.batchsize", r"^unknown key 'batchsize' \(allowed: batch_size, "),
    ("unknown-network-key", "name: t\nnetworks:\n  a:\n    mpl: [3]\nmodel:\n  - x: {observed: [4]}\n", 4, "networks.a.mpl", r"^unknown key 'mpl' \(allowed: extends, mlp, "),
    ("wrong-type-latent", "name: t\nmodel:\n  - z:\n      latent: ten\n", 4, "model[0].z.latent", r"integer.*'ten'"),
    ("wrong-type-batch-size", OK + "train:\n  batch_size: -1\n", 8, "train.batch_size", r"greater than 0 \(got -1\)"),
    ("wrong-type-given", "name: t\nmodel:\n  - x:\n      observed: [4]\n      given: z\n", 5, "model[0].x.given", r"valid list \(got 'z'\)"),
    ("wrong-type-vars", "name: t\nvars:\n  L: three\nmodel:\n  - x: {observed: [4]}\n", 3, "vars.L", r"integer.*'three'"),
    ("unknown-warmup-schedule", OK + "train:\n  kl_warmup: {schedule: cubic}\n", 8, "train.kl_warmup", r"'cubic'.*'geometric', 'linear', 'constant'"),
    ("two-kinds", "name: t\nmodel:\n  - z: {latent: 2, observed: [3]}\n", 3, "model[0].z", r"^a node declares exactly one of latent/transform/observed/feature \(found latent and observed\)$"),
    ("no-kind", "name: t\nmodel:\n  - x: {observed: [4]}\n  - z: {dist: normal}\n", 4, "model[1].z", r"^a node declares exactly one of latent/transform/observed/feature \(found none\)$"),
    ("node-not-a-mapping", "name: t\nmodel:\n  - x: 3\n", 3, "model[0].x", r"must be a mapping"),
    ("bad-node-name", "name: t\nmodel:\n  - 3x: {observed: [4]}\n", 3, "model[0].3x", r"identifiers.*'3x'"),
    # ---------------------------------------------------------------- networks
    ("unknown-network", "name: t\nnetworks:\n  a: {mlp: [3]}\nmodel:\n  - x:\n      observed: [4]\n      net: b\n", 7, "model[0].x.net", r"^unknown network 'b' \(templates: a\)$"),
    ("unknown-encoder-network", OK.replace("  - z: {given: [x]}", "  - z:\n      given: [x]\n      encoders:\n        x: nope"), 9, "guide[0].z.encoders.x", r"^unknown network 'nope' \(templates: none\)$"),
    ("extends-unknown", "name: t\nnetworks:\n  a:\n    extends: q\nmodel:\n  - x: {observed: [4]}\n", 4, "networks.a.extends", r"^unknown network 'q'"),
    ("extends-cycle", "name: t\nnetworks:\n  a: {extends: b}\n  b: {extends: a}\nmodel:\n  - x: {observed: [4]}\n", 3, "networks.a", r"cycle: a -> b -> a$"),
    ("extends-itself", "name: t\nnetworks:\n  a: {extends: a}\nmodel:\n  - x: {observed: [4]}\n", 3, "networks.a", r"cycle: a -> a$"),
    ("network-bad-size", "name: t\nnetworks:\n  a: {mlp: [0]}\nmodel:\n  - x: {observed: [4]}\n", 3, "networks.a.mlp[0]", r"greater than 0 \(got 0\)"),
    ("inline-network-unknown-key", "name: t\nmodel:\n  - x:\n      observed: [4]\n      net: {mlp: [3], layers: 2}\n", 5, "model[0].x.net.layers", r"unknown key 'layers'"),
    # ---------------------------------------------------------------- loops and templates
    ("bad-loop-header", "name: t\nmodel:\n  - for: l from 1 to 3\n    nodes:\n      z(l): {latent: 2}\n", 3, "model[0].for", r"VAR in START\.\.END.*'l from 1 to 3'"),
    ("loop-bound-unknown-name", "name: t\nmodel:\n  - for: l in 1..K\n    nodes:\n      z(l): {latent: 2}\n", 3, "model[0].for", r"^unknown name 'K' in \(K\) \(known: none\)$"),
    ("loop-shadows-var", "name: t\nvars: {l: 2}\nmodel:\n  - for: l in 1..2\n    nodes:\n      z(l): {latent: 2}\n", 4, "model[0].for", r"loop variable 'l' shadows"),
    ("loop-without-body", "name: t\nmodel:\n  - for: l in 1..2\n", 3, "model[0]", r"needs `nodes`"),
    ("model-loop-with-factors", "name: t\nmodel:\n  - x: {observed: [4]}\n  - for: l in 1..2\n    nodes: {}\n    factors:\n      z(l): {}\n", 6, "model[1].factors", r"factors"),
    ("unknown-name-in-template", CHAIN.replace("given: [z(l-1)]}\n      z(l)", "given: [z(k-1)]}\n      z(l)") + "  - eps1: {}\n", 6, "model[0].nodes.eps(l).given", r"^unknown name 'k' in \(k-1\) \(known: L, l\)$"),
    ("unknown-name-in-node-name", "name: t\nmodel:\n  - for: l in 1..2\n    nodes:\n      z(m): {latent: 2}\n", 5, "model[0].nodes.z(m)", r"^unknown name 'm' in \(m\) \(known: l\)$"),
    ("non-integer-template", "name: t\nmodel:\n  - for: l in 1..2\n    nodes:\n      z(l/2): {latent: 2}\n", 5, "model[0].nodes.z(l/2)", r"only integer arithmetic"),
    ("division-by-zero-in-template", "name: t\nmodel:\n  - for: l in 1..2\n    nodes:\n      z(l//0): {latent: 2}\n", 5, "model[0].nodes.z(l//0)", r"(?i)division.*zero|zero"),
    ("unbalanced-parenthesis", "name: t\nmodel:\n  - z(1: {latent: 2}\n", 3, "model[0].z(1", r"unbalanced '\('"),
    ("range-different-prefixes", "name: t\nmodel:\n  - z1: {latent: 2}\n  - x:\n      observed: [4]\n      given: [z1..y2]\n", 6, "model[1].x.given", r"^range z1\.\.y2 must be PREFIX<int>\.\.PREFIX<int> with the same prefix$"),
    # ---------------------------------------------------------------- graph: model
    ("dangling-given-model", "name: t\nmodel:\n  - z: {latent: 2}\n  - x: {observed: [4], given: [zz]}\n", 4, "model[1].x.given", r"^unknown node 'zz' in given$"),
    ("dangling-given-guide", OK.replace("given: [x]}", "given: [x, w]}"), 6, "guide[0].z.given", r"^unknown node 'w' in given$"),
    ("given-twice", "name: t\nmodel:\n  - z: {latent: 2}\n  - x: {observed: [4], given: [z, z]}\n", 4, "model[1].x.given", r"'z' is listed twice"),
    ("unknown-input", "name: t\nmodel:\n  - e: {latent: 2}\n  - z: {transform: affine_diag, input: ee}\n  - x: {observed: [4], given: [z]}\n", 4, "model[1].z.input", r"^unknown node 'ee' as input$"),
    ("input-declared-later", "name: t\nmodel:\n  - z: {transform: affine_diag, input: e}\n  - e: {latent: 2}\n  - x: {observed: [4], given: [z]}\n", 3, "model[0].z.input", r"must be declared before 'z'"),
    ("input-also-in-given", "name: t\nmodel:\n  - e: {latent: 2}\n  - z: {transform: affine_diag, input: e, given: [e]}\n  - x: {observed: [4], given: [z]}\n", 4, "model[1].z.given", r"bijective input and cannot also be in given"),
    ("input-observed", "name: t\nmodel:\n  - x: {observed: [4]}\n  - z: {transform: affine_diag, input: x}\n", 4, "model[1].z.input", r"'x' is observed"),
    ("duplicate-node", "name: t\nmodel:\n  - z: {latent: 2}\n  - x: {observed: [4], given: [z]}\n  - z: {latent: 3}\n", 5, "model[2].z", r"^node 'z' is declared twice \(first at line 3\)$"),
    ("cycle", "name: t\nmodel:\n  - a: {latent: 2, given: [b]}\n  - b: {latent: 2, given: [a]}\n  - x: {observed: [4], given: [a]}\n", 4, "model[1].b", r"^the model has a cycle: a -> b -> a$"),
    ("dim-mismatch", "name: t\nmodel:\n  - e: {latent: 2}\n  - z: {transform: affine_diag, input: e, dim: 3}\n  - x: {observed: [4], given: [z]}\n", 4, "model[1].z.dim", r"^dimension mismatch: transform 'z' has dim 3 but its bijective input 'e' has dim 2$"),
    ("bijective-without-input", "name: t\nmodel:\n  - e: {latent: 2}\n  - z: {transform: affine_lowrank, given: [e], dim: 2}\n  - x: {observed: [4], given: [z]}\n", 4, "model[1].z", r"^transform 'affine_lowrank' is bijective and needs an `input`$"),
    ("transform-without-dim", "name: t\nmodel:\n  - e: {latent: 2}\n  - h: {transform: residual, given: [e]}\n  - x: {observed: [4], given: [h]}\n", 4, "model[1].h", r"needs `dim`"),
    ("unknown-transform", "name: t\nmodel:\n  - e: {latent: 2}\n  - z: {transform: planar, input: e}\n  - x: {observed: [4], given: [z]}\n", 4, "model[1].z.transform", r"^unknown transform 'planar' \(known: affine_diag, affine_lowrank, feature, residual, spline_coupling\)$"),
    ("unknown-prior-family", "name: t\nmodel:\n  - z: {latent: 2, dist: gamma}\n  - x: {observed: [4], given: [z]}\n", 3, "model[0].z.dist", r"^unknown prior family 'gamma' \(known: normal, std_normal\)$"),
    ("unknown-likelihood-family", "name: t\nmodel:\n  - x: {observed: [4], dist: iaf}\n", 3, "model[0].x.dist", r"^unknown likelihood family 'iaf' \(known: bernoulli, categorical, logistic, maf, normal\)$"),
    ("std-normal-with-given", "name: t\nmodel:\n  - a: {latent: 2}\n  - z: {latent: 2, dist: std_normal, given: [a]}\n  - x: {observed: [4], given: [z]}\n", 4, "model[1].z.given", r"std_normal prior .* cannot be conditioned"),
    ("no-observed-node", "name: t\nmodel:\n  - z: {latent: 2}\nguide:\n  - z: {}\n", 2, "model", r"^the model has no observed node$"),
    # ---------------------------------------------------------------- graph: guide
    ("unknown-guide-family", OK.replace("given: [x]}", "given: [x], dist: bernoulli}"), 6, "guide[0].z.dist", r"^unknown guide family 'bernoulli' \(known: iaf, normal\)$"),
    ("factor-for-unknown-node", OK + "  - w: {given: [x]}\n", 7, "guide[1].w", r"^guide factor for 'w', which the model does not declare$"),
    ("factor-for-transform", CHAIN + "  - eps1: {given: [x]}\n  - z1: {given: [x]}\n", 11, "guide[1].z1", r"^guide factors are for latent nodes; 'z1' is transform$"),
    ("factor-twice", OK + "  - z: {given: [x]}\n", 7, "guide[1].z", r"^a second guide factor for 'z'$"),
    ("factor-on-itself", OK.replace("given: [x]}", "given: [x, z]}"), 6, "guide[0].z.given", r"cannot be conditioned on itself"),
    ("latent-without-factor", CHAIN + "  - eps1: {given: [x]}\n", 9, "guide", r"^no guide factor for latent 'eps2'$"),
    ("latents-without-guide", "name: t\nmodel:\n  - z: {latent: 2}\n  - w: {latent: 2}\n  - x: {observed: [4], given: [z, w]}\n", 1, "guide", r"^no guide factor for latent 'z' \(and 1 more\)$"),
    ("given-not-computable-yet", CHAIN + "  - eps1: {given: [x]}\n  - eps2: {given: [x, z2]}\n", 11, "guide[1].eps2.given", r"^'z2' is not computable before 'eps2' is sampled"),
    ("given-sampled-later", CHAIN + "  - eps2: {given: [x, z1]}\n  - eps1: {given: [x]}\n", 10, "guide[0].eps2.given", r"^'z1' is not computable before 'eps2' is sampled"),
    ("encoder-not-in-given", "name: t\nnetworks: {e: {mlp: [3]}}\n" + OK[8:].replace("given: [x]}", "given: [x], encoders: {z: e}}"), 7, "guide[0].z.encoders.z", r"^encoder for 'z', which is not in given$"),
    ("merge-prior-without-inputs", "name: t\nmodel:\n  - a: {latent: 2}\n  - z: {latent: 2, given: [a]}\n  - x: {observed: [4], given: [z]}\nguide:\n  - a: {given: [x]}\n  - z: {given: [x], merge: prior}\n", 8, "guide[1].z.merge", r"^merge: prior needs the prior's inputs in given \(missing a\)$"),
    ("merge-unknown-value", OK.replace("given: [x]}", "given: [x], merge: posterior}"), 6, "guide[0].z.merge", r"'prior'.*'posterior'"),
    # ---------------------------------------------------------------- shapes and types a schema could miss
    ("vars-bool", "name: t\nvars:\n  L: true\nmodel:\n  - x: {observed: [4]}\n", 3, "vars.L", r"integer"),
    ("empty-event-shape", "name: t\nmodel:\n  - z:\n      latent: []\n  - x: {observed: [4], given: [z]}\nguide:\n  - z: {given: [x]}\n", 4, "model[0].z.latent", r"at least 1|empty"),
]

KNOWN_BUGS: dict[str, str] = {}  # case id -> reason, for an xfail(strict=True) while a bug is open


def _params(cases, bugs):
    out = []
    for case in cases:
        marks = [pytest.mark.xfail(strict=True, reason=bugs[case[0]])] if case[0] in bugs else []
        out.append(pytest.param(*case[1:], id=case[0], marks=marks))
    return out


@pytest.mark.parametrize("text, line, key, message", _params(CASES, KNOWN_BUGS))
def test_error_names_file_line_key(text, line, key, message):
    assert_at(error_of(text), line, key, message)




@pytest.mark.parametrize(
    "text",
    [pytest.param(t, id=i) for t, i in [("", "empty"), ("\n\n", "blank-lines"), ("# only a comment\n", "comment-only")]],
)
def test_empty_spec(text):
    err = error_of(text)
    assert re.fullmatch(r"t\.yaml(:1)?: the spec is empty", str(err)), str(err)


def test_empty_spec_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(SpecError, match=r"empty\.yaml(:1)?: the spec is empty$"):
        load_spec(path)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.yaml: no such file$"):
        load_spec(tmp_path / "nope.yaml")


# Graph-level errors about one key of a node written in block style: the line must be
# that key's line, not the node's.
BLOCK_CASES = [
    ("dangling-given", "name: t\nmodel:\n  - z:\n      latent: 2\n  - x:\n      observed: [4]\n      given: [zz]\n", 7, "model[1].x.given", r"unknown node 'zz' in given"),
    ("unknown-prior-family", "name: t\nmodel:\n  - z:\n      latent: 2\n      dist: gamma\n  - x: {observed: [4], given: [z]}\n", 5, "model[0].z.dist", r"unknown prior family 'gamma'"),
    ("unknown-transform", "name: t\nmodel:\n  - e: {latent: 2}\n  - z:\n      input: e\n      transform: planar\n  - x: {observed: [4], given: [z]}\n", 6, "model[1].z.transform", r"unknown transform 'planar'"),
    ("unknown-input", "name: t\nmodel:\n  - e: {latent: 2}\n  - z:\n      transform: affine_diag\n      input: ee\n  - x: {observed: [4], given: [z]}\n", 6, "model[1].z.input", r"unknown node 'ee' as input"),
    ("dim-mismatch", "name: t\nmodel:\n  - e: {latent: 2}\n  - z:\n      transform: affine_diag\n      input: e\n      dim: 3\n  - x: {observed: [4], given: [z]}\n", 7, "model[1].z.dim", r"dimension mismatch"),
    ("std-normal-with-given", "name: t\nmodel:\n  - a: {latent: 2}\n  - z:\n      latent: 2\n      dist: std_normal\n      given: [a]\n  - x: {observed: [4], given: [z]}\n", 7, "model[1].z.given", r"std_normal"),
    ("unknown-guide-family", OK.replace("  - z: {given: [x]}", "  - z:\n      given: [x]\n      dist: bernoulli"), 8, "guide[0].z.dist", r"unknown guide family"),
    ("not-computable", CHAIN + "  - eps1: {given: [x]}\n  - eps2:\n      net: null\n      given: [x, z2]\n", 13, "guide[1].eps2.given", r"'z2' is not computable"),
    ("encoder-not-in-given", "name: t\nnetworks: {e: {mlp: [3]}}\n" + OK[8:].replace("  - z: {given: [x]}", "  - z:\n      given: [x]\n      encoders:\n        x: e\n        z: e"), 11, "guide[0].z.encoders.z", r"encoder for 'z'"),
    ("merge-prior", "name: t\nmodel:\n  - a: {latent: 2}\n  - z: {latent: 2, given: [a]}\n  - x: {observed: [4], given: [z]}\nguide:\n  - a: {given: [x]}\n  - z:\n      given: [x]\n      merge: prior\n", 10, "guide[1].z.merge", r"merge: prior needs"),
]


@pytest.mark.parametrize("text, line, key, message", _params(BLOCK_CASES, KNOWN_BUGS))
def test_graph_error_points_at_the_line_of_the_key(text, line, key, message):
    assert_at(error_of(text), line, key, message)


LOOP_FLOW = """\
name: t
vars: {L: 2}
model:
  - for: l in 1..L
    nodes:
      z(l): {latent: 2, given: GIVEN}
  - x: {observed: [4], given: [z2]}
"""
LOOP_BLOCK = LOOP_FLOW.replace("      z(l): {latent: 2, given: GIVEN}", "      z(l):\n        latent: 2\n        given: GIVEN")


@pytest.mark.parametrize(
    "text, line",
    [
        pytest.param(LOOP_FLOW, 6, id="flow"),
        pytest.param(LOOP_BLOCK, 8, id="block"),
    ],
)
@pytest.mark.parametrize(
    "given, unknown, iteration",
    [("[w(l)]", "w1", "l=1"), ("[z(l-1), zz(l-1)]", "zz1", "l=2")],
    ids=["typo-at-l1", "typo-dropped-at-l1-caught-at-l2"],
)
def test_error_inside_a_loop_names_the_iteration(text, line, given, unknown, iteration):
    err = error_of(text.replace("GIVEN", given))
    assert (err.location.file, err.location.line) == ("t.yaml", line)
    assert err.location.key.startswith("model[0].nodes.z(l)") and "given" in err.location.key
    assert iteration in err.location.key
    assert str(err).startswith(f"t.yaml:{line}: model[0].nodes.z(l)")
    assert str(err).endswith(f": unknown node '{unknown}' in given")


# ------------------------------------------------------------------ --set
@pytest.mark.parametrize(
    "override, expected",
    [
        ("vars.L", r"^--set: .*KEY=VALUE.*'vars\.L'$"),
        ("model.7.x=3", r"^--set: model\[7\]: no such key to override$"),
        ("name.x=3", r"^--set: name\.x: no such key to override$"),
        ("train.batch_size=[1", r"^--set: train\.batch_size: cannot parse value '\[1'$"),
        pytest.param("nope.x=3", r"^--set: nope(\.x)?: .*'nope'", id="nope.x=3"),
    ],
)
def test_bad_override(override, expected):
    err = error_of(OK, [override])
    assert re.search(expected, str(err)), str(err)


def test_override_with_a_bad_value_points_at_the_override():
    """The bad value came from --set, not from the file: the error says so."""
    err = error_of(OK + "train:\n  epochs: 3\n", ["train.epochs=many"])
    assert re.match(r"^--set: train\.epochs: .*integer.*'many'", str(err)), str(err)
