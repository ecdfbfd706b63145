"""hiervae.render: the DOT picture (shapes, clusters, sharing, plate, check overlay), files, speed."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from hiervae.errors import HiervaeError
from hiervae.graph import load_graph
from hiervae.graph.faithfulness import check
from hiervae.render import COLLAPSE_ABOVE, layers, plate_size, pretty, render_dot, write
from hiervae.render.dot import NO_DOT, OBSERVED_FILL, RED, SHARED_FILL

SPECS = Path(__file__).resolve().parents[1] / "specs"
HAS_DOT = shutil.which("dot") is not None


def _value(text: str, i: int) -> tuple[str, int]:
    """One DOT attribute value starting at text[i]: "quoted", <html> or bare."""
    if text[i] == '"':
        j = i + 1
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return text[i + 1:j], j + 1
    if text[i] == "<":
        depth, j = 0, i
        while True:
            depth += {"<": 1, ">": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                return text[i + 1:j - 1], j
    j = text.find(" ", i)
    j = len(text) if j < 0 else j
    return text[i:j], j


def _attrs(text: str) -> dict[str, str]:
    out, i = {}, 0
    while i < len(text):
        m = re.compile(r"\s*(\w+)=").match(text, i)
        if not m:
            break
        out[m.group(1)], i = _value(text, m.end())
    return out


def parse(source: str) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], dict[str, str]]]:
    """Node and edge statements of the DOT source: id -> attrs, (tail, head) -> attrs."""
    nodes, edges = {}, {}
    ident = r'"[^"]+"|[^\s\[\]"]+'
    for line in source.splitlines():
        m = re.fullmatch(rf"\s*({ident}) -> ({ident})(?: \[(.*)\])?", line)
        if m:
            attrs = _attrs(m.group(3) or "")
            if attrs.get("style") != "invis":
                edges[(m.group(1).strip('"'), m.group(2).strip('"'))] = attrs
            continue
        m = re.fullmatch(rf"\s*({ident}) \[(.*)\]", line)
        if m and m.group(1) not in ("node", "edge", "graph"):
            nodes[m.group(1).strip('"')] = _attrs(m.group(2))
    return nodes, edges


@pytest.fixture(scope="module")
def quickstart():
    return load_graph(SPECS / "quickstart.yaml")


@pytest.fixture(scope="module")
def sere():
    graph = load_graph(SPECS / "sere_mlp_mnist.yaml")
    return graph, check(graph)


def test_pretty_names():
    assert [pretty(n) for n in ("eps3", "z1", "x", "gamma12", "z", "eps_2", "h-top")] == ["ε³", "z¹", "x", "γ¹²", "z", "ε²", "h-top"]


def test_plate_size_is_the_training_set(quickstart, sere):
    assert plate_size(quickstart) == "1397"  # 1797 digits - 200 test - 200 validation
    assert plate_size(sere[0]) == "50000"  # 60000 MNIST - 10000 validation
    unknown = dataclasses.replace(quickstart, data=quickstart.data.model_copy(update={"dataset": "my_data"}))
    assert plate_size(unknown) == "N"


def test_layers_put_each_level_on_one_rank(quickstart):
    assert layers(quickstart) == {"eps1": 0, "z1": 0, "eps2": 1, "z2": 1, "eps3": 2, "z3": 2, "x": 3}
    maf = layers(load_graph(SPECS / "sere_maf_cifar10.yaml"))
    assert maf["gamma2"] == maf["z2"] == maf["eps2"] == 1 and maf["x"] == 5
    iaf = layers(load_graph(SPECS / "sere_iaf_mnist.yaml"))  # parentless eps(l) still sit on layer l
    assert iaf["eps10"] == iaf["z10"] == 9


def test_quickstart_picture(quickstart):
    nodes, edges = parse(render_dot(quickstart).source)
    src = render_dot(quickstart).source
    assert "subgraph cluster_p {" in src and "subgraph cluster_q {" in src
    assert 'label="generative model p"' in src and 'label="inference model q"' in src
    assert src.count('label="N = 1397"') == 2  # one plate per cluster
    for side in "pq":
        assert nodes[f"{side}_eps1"]["shape"] == "circle" and nodes[f"{side}_eps1"]["fillcolor"] == "white"
        assert nodes[f"{side}_x"]["shape"] == "circle" and nodes[f"{side}_x"]["fillcolor"] == OBSERVED_FILL
        for z in ("z1", "z2"):  # computed by the guide: the same module, the same fill in p and q
            assert nodes[f"{side}_{z}"]["shape"] == "diamond" and nodes[f"{side}_{z}"]["fillcolor"] == SHARED_FILL
        assert edges[(f"{side}_eps2", f"{side}_z2")]["penwidth"] == "2.6"  # bijective input: bold
        assert "penwidth" not in edges[(f"{side}_z1", f"{side}_z2")]  # conditioning: ordinary
    assert nodes["p_z3"]["fillcolor"] == "white" and "q_z3" not in nodes  # only the model uses z3
    assert "ε³" in nodes["p_eps3"]["label"] and ">4<" in nodes["p_eps3"]["label"]  # name and dimension
    for given, latent in [("x", "eps1"), ("x", "eps3"), ("z1", "eps2"), ("z2", "eps3")]:
        assert (f"q_{given}", f"q_{latent}") in edges
    assert ("q_x", "q_z1") not in edges and ("q_eps1", "q_z1") in edges  # q mirrors the transform's parents
    assert "shared transform" in nodes["legend"]["label"]
    assert RED not in src


def test_check_overlay_marks_the_first_open_path(sere):
    graph, report = sere
    nodes, edges = parse(render_dot(graph, report).source)
    path = [s.node for s in next(f for f in report.factors if not f.passed).path]
    assert path == ["eps3", "z3", "x", "z1", "eps1"]
    red = {e for e, a in edges.items() if a.get("color") == RED}
    assert red == {("p_eps3", "p_z3"), ("p_z3", "p_x"), ("p_z1", "p_x"), ("p_eps1", "p_z1")}  # both directions
    assert "collider" in nodes["p_x"]["tooltip"] and "collider" in nodes["p_x"]["xlabel"]
    failing = {f.latent for f in report.factors if not f.passed}
    for f in report.factors:
        assert (nodes[f"q_{f.latent}"].get("color") == RED) == (f.latent in failing)
    assert "8 of 10 guide factors fail" in render_dot(graph, report).source


def test_passing_report_draws_nothing_red():
    graph = load_graph(SPECS / "sere_mlp_mnist_faithful.yaml")
    src = render_dot(graph, check(graph)).source
    assert RED not in src and "all 10 guide factors match" in src


def test_dot_only_needs_no_binary(quickstart, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    paths = write(quickstart, tmp_path / "out", formats=("svg", "png"), dot_only=True)
    assert paths == [tmp_path / "out" / "quickstart.gv"]
    assert paths[0].read_text(encoding="utf-8").startswith("digraph quickstart {")
    with pytest.raises(HiervaeError) as err:
        write(quickstart, tmp_path / "out", formats=("svg",))
    assert str(err.value) == NO_DOT and "\n" not in NO_DOT and "apt-get install graphviz" in NO_DOT
    with pytest.raises(HiervaeError, match="unknown format"):
        write(quickstart, tmp_path / "out", formats=("jpg",), dot_only=True)


@pytest.mark.skipif(not HAS_DOT, reason="graphviz `dot` binary not installed")
def test_renders_svg_and_png(sere, tmp_path):
    graph, report = sere
    gv, svg, png = write(graph, tmp_path, formats=("svg", "png"), report=report)
    assert (gv.suffix, svg.suffix, png.suffix) == (".gv", ".svg", ".png")
    text = svg.read_text(encoding="utf-8")
    assert "<svg" in text and "generative model p" in text and "inference model q" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_collapse_threshold():
    def hidden(levels: int) -> bool:  # quickstart with L layers has L + 1 levels
        return "layers 4–" in render_dot(load_graph(SPECS / "quickstart.yaml", [f"vars.L={levels - 1}"])).source
    assert not hidden(COLLAPSE_ABOVE) and hidden(COLLAPSE_ABOVE + 1)


def test_thousand_layers_render_as_a_small_picture():
    graph = load_graph(SPECS / "sere_mlp_mnist_faithful.yaml", overrides=["vars.L=1000"])
    dot = render_dot(graph)
    nodes, edges = parse(dot.source)
    assert len(nodes) < 40 and "layers 4–998" in dot.source
    assert {"p_eps1", "p_z3", "p_eps999", "p_eps1000", "p_x", "q_eps1000"} <= set(nodes) and "p_eps500" not in nodes
    assert edges[("q_…", "q_eps1000")]["style"] == "dashed"  # z4..z998 -> eps1000, routed through "⋮"
    if HAS_DOT:
        assert dot.pipe(format="svg").startswith(b"<?xml")
