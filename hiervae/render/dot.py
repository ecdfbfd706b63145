"""Draw a :class:`ModelGraph` as one graphviz picture: generative model p | inference model q.

Conventions (those of the paper's Figures 1-4 and of PGM practice), explained by a legend:

* latent: white circle; observed: gray circle; deterministic transform: diamond.
* A transform computed by the guide is the *same module* in p and q, so it is drawn with
  the same blue fill in both clusters ("shared"); a transform only the model uses is white.
* The edge from a transform's bijective input is bold (f⁻¹ exists: the input is a
  function of the output, which is what makes conditioning on z^l enough in the paper's
  proof); every other edge is an ordinary conditioning edge.
* Names read like the paper: ``eps3`` -> ε³, ``gamma2`` -> γ², ``z1`` -> z¹, with the
  dimension in small type underneath.
* Each cluster holds a plate "N = <training examples>": every node is per data point.
* Layers run top-down, one layer per rank, aligned across both clusters (``newrank``); in
  q the observed nodes sit on top, since inference starts from the data.

Deep hierarchies: with more than :data:`COLLAPSE_ABOVE` levels (layers plus the data's
level; a 15-layer SeRe-VAE is drawn in full) only the first and last :data:`KEEP` levels
are drawn and the middle becomes one "⋮" node per cluster (edges to and from hidden nodes
are routed to it, dashed), so a 1000-layer spec renders in well under a second and stays
readable.

With a faithfulness report, failing guide factors are outlined red in q, and the open
path of the FIRST failing factor (guide order) is drawn red in p, each node on it tagged
with why the path passes it (tooltip: the full reason).  Only the first: in the typical
failure (a decoder reading every z) all failing factors' paths share the collider and
drawing them all turns most of p red, which shows nothing; the caption names the others.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import graphviz
import networkx as nx

from hiervae.data import DATASETS
from hiervae.errors import HiervaeError
from hiervae.graph.ir import LATENT, OBSERVED, TRANSFORM, ModelGraph

if TYPE_CHECKING:
    from hiervae.graph.faithfulness import Report

COLLAPSE_ABOVE = 16  # levels (ranks) per cluster; beyond this the middle ones become one "⋮" node
KEEP = 3  # levels kept at each end when collapsing
FORMATS = ("svg", "png", "pdf")
OBSERVED_FILL, SHARED_FILL, RED = "#c8c8c8", "#cfe2f3", "#d62728"
FEATURE_FILL = "#e6e6e6"  # a guide feature: drawn in q only
NO_DOT = ("the graphviz `dot` binary is not installed: run `apt-get install graphviz` (Debian/Ubuntu) "
          "or `brew install graphviz`, or use --dot to write the DOT source only")

_GREEK = {"eps": "ε", "epsilon": "ε", "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "zeta": "ζ",
          "eta": "η", "theta": "θ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ",
          "sigma": "σ", "tau": "τ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω"}
_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def pretty(name: str) -> str:
    """``eps3`` -> ``ε³``: the paper writes the layer index as a superscript (ε^l, z^l)."""
    m = re.fullmatch(r"([A-Za-z]+?)_?(\d*)", name)
    if not m:
        return name
    stem, index = m.groups()
    return _GREEK.get(stem.lower(), stem) + index.translate(_SUP)


def plate_size(graph: ModelGraph) -> str:
    """The number of training examples (the plate's N), or "N" for an unknown dataset."""
    data = graph.data
    source = DATASETS.get(data.dataset) if data.dataset in DATASETS else None
    if source is None or source.train_pool is None:
        return "N"
    carved = source.default_validation is not None  # else the validation split is given apart
    return str(source.train_pool - (data.validation or 0) if carved else source.train_pool)


def layers(graph: ModelGraph) -> dict[str, int]:
    """Layer of every node: one stochastic level per layer, so it can be drawn on one rank.

    A transform shares its bijective input's layer (ε^l and z^l = f(ε^l) are one level),
    a purely deterministic node shares the layer of its deepest parent (γ^l sits beside
    z^l), and every edge into a level with a latent or observed node starts a new layer.
    Falls back to plain longest-path depth if merging bijective pairs makes a cycle.
    """
    group = {n: n for n in graph.nodes}
    for n, node in graph.nodes.items():
        if node.bijective_input:
            group[n] = group[node.bijective_input]
    stochastic = {group[n] for n, node in graph.nodes.items() if node.kind != TRANSFORM}
    g = nx.DiGraph()
    g.add_nodes_from(set(group.values()))
    g.add_edges_from((group[p], group[n]) for n, node in graph.nodes.items() for p in node.parents if group[p] != group[n])
    if not nx.is_directed_acyclic_graph(g):
        group, stochastic, g = {n: n for n in graph.nodes}, set(graph.nodes), graph.dag
    depth: dict[str, int] = {}
    for v in nx.topological_sort(g):
        depth[v] = max((depth[u] + (v in stochastic) for u in g.predecessors(v)), default=0)
    return {n: depth[group[n]] for n in graph.nodes}


@dataclass
class Side:
    """One cluster: which nodes, where (layer), and which edges (tail, head, bijective)."""

    key: str  # "p" | "q"
    title: str
    rank: dict[str, int]
    edges: list[tuple[str, str, bool]]
    red_nodes: dict[str, str] = field(default_factory=dict)  # node -> reason (tooltip)
    red_edges: dict[tuple[str, str], str] = field(default_factory=dict)


def _sides(graph: ModelGraph) -> tuple[Side, Side]:
    """p: the whole model.  q: each guide latent with edges from its `given`, plus every
    transform the guide computes, with edges mirroring its model parents (same module)."""
    layer = layers(graph)

    def model_edges(n: str) -> list[tuple[str, str, bool]]:
        return [(p, n, p == graph.nodes[n].bijective_input) for p in graph.nodes[n].parents]

    p = Side("p", "generative model p", dict(layer), [e for n in graph.nodes for e in model_edges(n)])
    wanted = [f.latent for f in graph.guide] + [g for f in graph.guide for g in f.given]
    in_q: set[str] = set()
    while wanted:  # close over the inputs of transforms and guide features the guide computes
        n = wanted.pop()
        if n not in in_q:
            in_q.add(n)
            if n in graph.features:
                wanted += graph.features[n].given
            elif graph.nodes[n].kind == TRANSFORM:
                wanted += graph.nodes[n].parents
    top = min(layer.values(), default=0) - 1
    q_rank = {n: top if graph.nodes[n].kind == OBSERVED else layer[n] for n in graph.nodes if n in in_q}
    for name, feature in graph.features.items():  # declared in order: inputs first; a row below its inputs
        if name in in_q:
            q_rank[name] = max(q_rank.get(g, top) for g in feature.given) + 1
    q_edges = [(g, f.latent, False) for f in graph.guide for g in f.given]
    q_edges += [e for n in graph.nodes if n in in_q and graph.nodes[n].kind == TRANSFORM for e in model_edges(n)]
    q_edges += [(g, n, False) for n, feature in graph.features.items() if n in in_q for g in feature.given]
    return p, Side("q", "inference model q", q_rank, q_edges)


def shared_networks(graph: ModelGraph) -> dict[str, list[str]]:
    """Shared network instance -> what uses it (nodes, guide features, factors' encoders)."""
    uses: dict[str, list[str]] = {}
    for n, node in graph.nodes.items():
        if node.net is not None and node.net.shared:
            uses.setdefault(node.net.shared, []).append(n)
    for n, feature in graph.features.items():
        if feature.net is not None and feature.net.shared:
            uses.setdefault(feature.net.shared, []).append(n)
    for f in graph.guide:
        for g, net in f.encoders.items():
            if net.shared:
                uses.setdefault(net.shared, []).append(f"encoder of {g} in q({f.latent})")
    return uses


def _mark_report(graph: ModelGraph, report: Report, p: Side, q: Side) -> str:
    """Red outline for failing factors in q, the first failing factor's open path in p;
    returns the caption line."""
    failing = [f for f in report.factors if not f.passed]
    names = lambda nodes: ", ".join(map(pretty, nodes))  # noqa: E731
    for f in failing:
        fix = f"; condition on {names(f.suggestion)}" if f.suggestion else ""
        q.red_nodes[f.latent] = f"fails the check: q({pretty(f.latent)} | {names(f.given)}) cannot match the exact posterior{fix}"
    if not failing:
        return f"check: all {len(report.factors)} guide factors match the exact posterior's factorization"
    listed = names(f.latent for f in failing[:6]) + (", …" if len(failing) > 6 else "")
    caption = f"check: {len(failing)} of {len(report.factors)} guide factors fail ({listed})"
    first = failing[0]
    if not first.path:
        return caption
    steps = first.path
    for s in steps:
        p.red_nodes[s.node] = s.reason
    arrows = []
    for a, b in zip(steps, steps[1:]):
        forward = graph.dag.has_edge(a.node, b.node)
        edge = (a.node, b.node) if forward else (b.node, a.node)
        p.red_edges[edge] = f"open path of {pretty(first.latent)}: {pretty(a.node)} {'→' if forward else '←'} {pretty(b.node)}"
        arrows.append("→" if forward else "←")
    path = " ".join(x for s, arrow in zip(steps, arrows + [""]) for x in (pretty(s.node), arrow) if x)
    return f"{caption}; red: open path for {pretty(first.latent)}: {path}"


def _short(reason: str) -> str:
    """`collider (z3 -> x <- z1), observed` -> `collider, observed`: a label that fits."""
    word = reason.split()[0]
    tail = reason.rsplit("), ", 1)[1] if word == "collider" and "), " in reason else ""
    return f"{word}, {tail}" if tail else word


class _Collapse:
    """Maps layers to drawn ranks, hiding the middle of hierarchies with more than
    COLLAPSE_ABOVE levels (the data's level included; q's observed row is never hidden)."""

    def __init__(self, all_layers: Iterable[int]):
        body = sorted({lv for lv in all_layers if lv >= 0})
        self.hidden = set(body[KEEP:-KEEP]) if len(body) > COLLAPSE_ABOVE else set()
        self.span = (min(self.hidden), max(self.hidden)) if self.hidden else (0, -1)

    def is_hidden(self, side: Side, n: str) -> bool:
        return side.rank[n] in self.hidden

    def node(self, side: Side, n: str) -> str:
        return f"{side.key}_…" if self.is_hidden(side, n) else f"{side.key}_{n}"

    def rank(self, layer: int) -> int:
        return self.span[0] if layer in self.hidden else layer


def _label(graph: ModelGraph, n: str) -> str:
    shape = "×".join(map(str, graph.shape_of(n)))
    return f'<{html.escape(pretty(n))}<BR/><FONT POINT-SIZE="8">{shape}</FONT>>'


def _node_attrs(graph: ModelGraph, n: str, shared: bool) -> dict[str, str]:
    if n in graph.features:
        feature = graph.features[n]
        net = f", shared network {feature.net.shared}" if feature.net is not None and feature.net.shared else ""
        return {"shape": "diamond", "fillcolor": FEATURE_FILL, "label": _label(graph, n), "group": re.sub(r"_?\d+$", "", n),
                "tooltip": f"guide feature {n}: f({', '.join(feature.given)}), {feature.dim} features{net} (q only)"}
    node = graph.nodes[n]
    kind_attrs = {
        LATENT: {"shape": "circle", "fillcolor": "white"},
        OBSERVED: {"shape": "circle", "fillcolor": OBSERVED_FILL},
        TRANSFORM: {"shape": "diamond", "fillcolor": SHARED_FILL if shared else "white"},
    }[node.kind]
    what = f"{node.kind} {n}: {node.family}, shape {node.shape}" + (", shared by p and q" if shared and node.kind == TRANSFORM else "")
    return {**kind_attrs, "label": _label(graph, n), "tooltip": what, "group": re.sub(r"_?\d+$", "", n)}


def _draw_side(dot: graphviz.Digraph, graph: ModelGraph, side: Side, shared: set[str], plate: str,
               collapse: _Collapse, span: tuple[int, int]) -> None:
    """One mechanism for both clusters: nodes by rank inside the plate, then the edges.

    Each layer is a ``rank=same`` group; ``newrank`` aligns equal ranks across the two
    clusters, and ``remincross=false`` keeps ε left of z (the final crossing pass over the
    whole graph would otherwise flip flat edges inside clusters).  Invisible edges chain
    the ranks, so layers with no edges between them (a mean-field q) still stack top-down,
    and invisible pads fill the picture's first and last rank, so both clusters are as tall.
    """
    mine: dict[int, list[str]] = {}
    with dot.subgraph(name=f"cluster_{side.key}") as outer:
        outer.attr(label=side.title, fontsize="16", labelloc="t", style="rounded", color="gray50")
        with outer.subgraph(name=f"cluster_{side.key}_plate") as box:
            box.attr(label=f"N = {plate}", labelloc="b", labeljust="r", fontsize="11", style="solid", color="black", margin="14")
            for n in (n for n in (*graph.nodes, *graph.features) if n in side.rank):
                node_id, rank = collapse.node(side, n), collapse.rank(side.rank[n])
                if node_id in mine.get(rank, ()):
                    continue  # the collapsed-layers node, already drawn
                if collapse.is_hidden(side, n):
                    lo, hi = collapse.span
                    attrs = {"label": f"⋮\nlayers {lo + 1}–{hi + 1}\nnot drawn", "shape": "plaintext", "style": "",
                             "fontsize": "10", "tooltip": f"layers {lo + 1}..{hi + 1} collapsed (more than {COLLAPSE_ABOVE} levels)"}
                else:
                    attrs = _node_attrs(graph, n, n in shared)
                if n in side.red_nodes:
                    attrs.update(color=RED, penwidth="2.5", tooltip=side.red_nodes[n])
                    if side.key == "p":
                        attrs["xlabel"] = f'<<FONT COLOR="{RED}" POINT-SIZE="10">{html.escape(_short(side.red_nodes[n]))}</FONT>>'
                box.node(node_id, **attrs)
                mine.setdefault(rank, []).append(node_id)
            for r in set(span) - set(mine):
                box.node(f"{side.key}_pad{r}", shape="point", width="0", style="invis")
                mine[r] = [f"{side.key}_pad{r}"]
            for members in mine.values():
                box.body.append("\t{rank=same; " + " ".join(f'"{m}";' for m in members) + "}")
    order = sorted(mine)
    for a, b in zip(order, order[1:]):
        dot.edge(mine[a][0], mine[b][0], style="invis")
    seen: set[tuple[str, str]] = set()
    for tail, head, bij in side.edges:
        if tail not in side.rank or head not in side.rank:
            continue
        ends = collapse.node(side, tail), collapse.node(side, head)
        if ends[0] == ends[1] or ends in seen:
            continue
        seen.add(ends)
        attrs = {"penwidth": "2.6", "tooltip": f"{tail} → {head}: bijective input (f⁻¹ exists)"} if bij else {
            "tooltip": f"{tail} → {head}: conditioning"}
        if "_…" in ends[0] + ends[1]:
            attrs.update(style="dashed", tooltip="edges to/from collapsed layers")
        if (tail, head) in side.red_edges:
            attrs.update(color=RED, penwidth="3", tooltip=side.red_edges[(tail, head)])
        dot.edge(*ends, arrowsize="0.7", **attrs)


def _legend(graph: ModelGraph, shared: set[str], red_path: bool, red_factors: bool) -> str:
    """An HTML-table legend listing only the conventions that occur in this picture.

    A table (one node) rather than sample nodes: samples would take ranks of their own and
    stretch the layered layout.
    """
    kinds = {node.kind for node in graph.nodes.values()}
    rows = [  # (symbol, its colour, text, shown?)
        ("◯", "black", "latent (sampled)", LATENT in kinds),
        ("●", "#888888", "observed (gray)", OBSERVED in kinds),
        ("◇", "black", "deterministic transform", bool(set(graph.transforms) - shared)),
        ("◆", "#6fa8dc", "shared transform: the same module in p and q", bool(shared)),
        ("◆", "#b7b7b7", "guide feature: computed in q only (from the data)", bool(graph.features)),
        ("<B>━━▶</B>", "black", "bijective input (f⁻¹ exists)", any(n.bijective_input for n in graph.nodes.values())),
        ("──▶", "black", "conditioning", True),
        ("<B>━━▶</B>", RED, "open path of the first failing factor", red_path),
        ("◯", RED, "failing guide factor (red outline)", red_factors),
    ]
    rows += [("≡", "black", f"shared network {name}: one module for {', '.join(uses)}", True)
             for name, uses in shared_networks(graph).items()]
    cells = "".join(f'<TR><TD><FONT COLOR="{color}" POINT-SIZE="14">{sym}</FONT></TD><TD ALIGN="LEFT">{html.escape(text)}</TD></TR>'
                    for sym, color, text, shown in rows if shown)
    return f'<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2"><TR><TD COLSPAN="2"><B>legend</B></TD></TR>{cells}</TABLE>>'


def render_dot(graph: ModelGraph, report: Report | None = None) -> graphviz.Digraph:
    """The picture of ``graph`` (and of ``report``'s failures, if given) as a Digraph."""
    p, q = _sides(graph)
    caption = _mark_report(graph, report, p, q) if report is not None else ""
    shared = {n for n in q.rank if n in graph.nodes and graph.nodes[n].kind == TRANSFORM}
    collapse = _Collapse([*p.rank.values(), *q.rank.values()])
    plate = plate_size(graph)
    dot = graphviz.Digraph(graph.name)
    dot.attr(rankdir="TB", newrank="true", remincross="false", nodesep="0.3", ranksep="0.35", fontname="Helvetica",
             label=graph.name + (f"\n{caption}" if caption else ""), labelloc="t", fontsize="18")
    dot.attr("node", style="filled", fontname="Helvetica", fontsize="13", margin="0.02", penwidth="1.2")
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    drawn = {collapse.rank(r) for side in (p, q) for r in side.rank.values()}
    span = (min(drawn, default=0), max(drawn, default=0))
    for side in (p, q):
        _draw_side(dot, graph, side, shared, plate, collapse, span)
    dot.node("legend", label=_legend(graph, shared, bool(p.red_edges), bool(q.red_nodes)), shape="plaintext", style="", fontsize="11")
    return dot


def write(graph: ModelGraph, out_dir: str | Path, formats: Sequence[str] = ("svg",), report: Report | None = None,
          dot_only: bool = False, name: str | None = None) -> list[Path]:
    """Write ``<name>.gv`` (always; needs no binary) and, unless ``dot_only``, one
    ``<name>.<fmt>`` per format through the graphviz ``dot`` binary (``name``: the spec's)."""
    name = name or graph.name
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise HiervaeError(f"render: unknown format {bad[0]!r}; use one of {', '.join(FORMATS)}")
    if not dot_only and shutil.which("dot") is None:
        raise HiervaeError(NO_DOT)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = render_dot(graph, report).source
    gv = out / f"{name}.gv"
    gv.write_text(source, encoding="utf-8")
    paths = [gv]
    for fmt in () if dot_only else formats:
        try:
            data = graphviz.Source(source).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise HiervaeError(NO_DOT) from None
        except graphviz.CalledProcessError as err:
            detail = (err.stderr or b"").decode(errors="replace").strip().splitlines()
            raise HiervaeError(f"graphviz `dot` failed on {gv}: {detail[-1] if detail else err}") from None
        target = out / f"{name}.{fmt}"
        target.write_bytes(data)
        paths.append(target)
    return paths
