"""hiervae's graph checker against the exact linear-Gaussian oracle (which knows no graphs).

Two oracle instances are used (see tests/oracle/linear_gaussian.py):
* "dense"   — the literal linear-Gaussian instance with the declared dims.  It is a valid model
              of the DAG, so every independence the checker claims must hold in it (soundness).
              Being linear it is sometimes *more* independent than a generic model (a linear
              map is injective whenever dims allow), so only a high agreement rate is expected.
* "summary" — transforms pass only low-rank summaries of non-bijective parents, dims chosen by
              the oracle, so no transform reveals more than "its bijective input given the other
              parents".  This is exactly the semantics the checker implements, so its verdicts
              must agree with the checker's on every query (the oracle refuses a few contrived
              graphs; those are skipped for the exactness test only).
"""

from __future__ import annotations

import glob
import random
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from examples import NO_DATA_FACTOR
from oracle.linear_gaussian import LinearGaussianOracle
from oracle.random_dags import describe, random_dag, random_query

from hiervae.graph import load_graph
from hiervae.graph.dsep import conditionally_independent, functional_closure
from hiervae.graph.faithfulness import check

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
QUERIES_PER_DAG = 4
REPO = Path(__file__).resolve().parents[1]
SPECS = sorted(glob.glob(str(REPO / "specs" / "*.yaml")))


def summary_oracle(dag):
    try:
        return LinearGaussianOracle(dag, mode="summary")
    except ValueError:
        return None


def assert_exact_agreement(rnd, dag, oracle) -> None:
    """On random queries, the checker's verdict equals the oracle's."""
    for _ in range(QUERIES_PER_DAG):
        a, b, c = random_query(rnd, dag)
        got, want = conditionally_independent(dag, set(a), set(b), set(c)), oracle.independent(a, b, c)
        assert got == want, explain(dag, a, b, c, got, want)


def explain(dag, a, b, c, checker, oracle) -> str:
    return f"checker={checker} oracle={oracle} for {sorted(a)} ⊥ {sorted(b)} | {sorted(c)} in DAG {describe(dag)}"


# --------------------------------------------------------------------------- random DAGs


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_checker_is_sound(rnd):
    """Whenever the checker says independent, both oracle instances say independent."""
    dag = random_dag(rnd)
    oracles = [LinearGaussianOracle(dag, mode="dense")]
    if (s := summary_oracle(dag)) is not None:
        oracles.append(s)
    for _ in range(QUERIES_PER_DAG):
        a, b, c = random_query(rnd, dag)
        if conditionally_independent(dag, set(a), set(b), set(c)):
            for o in oracles:
                assert o.independent(a, b, c), explain(dag, a, b, c, True, f"{o.mode}: dependent")


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_checker_is_exact_without_transforms(rnd):
    """No deterministic nodes: plain d-separation, and a generic linear-Gaussian model is
    faithful, so the checker and the dense (declared-dims) instance agree on every query."""
    dag = random_dag(rnd, transforms=False)
    assert_exact_agreement(rnd, dag, LinearGaussianOracle(dag, mode="dense"))


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_checker_is_exact_with_transforms(rnd):
    """With transforms, the checker agrees with the lossy-summary instance on every query."""
    dag = random_dag(rnd)
    o = summary_oracle(dag)
    assume(o is not None)
    assert_exact_agreement(rnd, dag, o)


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_functional_closure_is_what_the_given_set_determines(rnd):
    """closure(Z) ∪ Z == {v : Var(v | Z) = 0} in the summary instance, and ⊆ it in the dense one."""
    dag = random_dag(rnd)
    _, _, z = random_query(rnd, dag)
    closure = set(functional_closure(dag, set(z))) | z
    dense = LinearGaussianOracle(dag, mode="dense").determined_set(z)
    assert closure <= dense, f"closure claims {sorted(closure - dense)} determined by {sorted(z)}: {describe(dag)}"
    o = summary_oracle(dag)
    if o is not None:
        want = o.determined_set(z)
        assert closure == want, (
            f"closure({sorted(z)}) = {sorted(closure)}, oracle: {sorted(want)} in DAG {describe(dag)}"
        )


def test_parentless_transform_is_a_constant():
    """Smallest case of a disagreement found by the property tests: a transform with no parents
    (e.g. a learned constant) is determined by the empty set (closure rule 1, vacuously)."""
    dag = nx.DiGraph()
    dag.add_node("c", kind="transform", dim=1, bijective_input=None)
    dag.add_node("x", kind="observed", dim=1)
    dag.add_edge("c", "x")
    o = LinearGaussianOracle(dag, mode="summary")
    assert set(functional_closure(dag, set())) == o.determined_set(set()) == {"c"}
    assert conditionally_independent(dag, {"c"}, {"x"}, set()) == o.independent({"c"}, {"x"}, set()) is True


def test_agreement_rate_with_dense_instance():
    """Seeded batch: report how often the checker matches the literal dense linear model."""
    rnd = random.Random(2024)
    agree = total = claimed = 0
    for _ in range(150):
        dag = random_dag(rnd)
        o = LinearGaussianOracle(dag, mode="dense")
        for _ in range(QUERIES_PER_DAG):
            a, b, c = random_query(rnd, dag)
            got, want = conditionally_independent(dag, set(a), set(b), set(c)), o.independent(a, b, c)
            assert want or not got, explain(dag, a, b, c, got, want)  # soundness, as above
            agree += got == want
            claimed += got
            total += 1
    rate = agree / total
    print(f"checker vs dense linear-Gaussian: {agree}/{total} = {rate:.3f} agree; {claimed} independences claimed")
    assert rate >= 0.9
    assert 0.1 * total < claimed < 0.9 * total  # both verdicts occur: the batch is not vacuous


# --------------------------------------------------------------------------- random guides


def _oracle_verdict(oracle, latent, earlier, given, observed) -> bool:
    """The factor's verdict from the oracle alone: e_i ⊥ ((e_<i ∪ observed) minus det(given)) | given."""
    rest = {e for e in set(earlier) | set(observed) if not oracle.determined(e, set(given))}
    return not rest or oracle.independent({latent}, rest, set(given))


def _random_guide(rnd, dag):
    """A random sampling order of the latents and, per factor, a random well-formed ``given``:
    any subset of what the guide can compute then, often without the data, sometimes empty
    (a non-amortised factor)."""
    from hiervae.graph.dsep import computable

    latents = [v for v in dag if dag.nodes[v]["kind"] == "latent"]
    observed = [v for v in dag if dag.nodes[v]["kind"] == "observed"]
    rnd.shuffle(latents)
    earlier: list[str] = []
    for latent in latents:
        available = sorted(computable(dag, set(earlier) | set(observed)) - {latent})
        style = rnd.random()
        if style < 0.15:
            given: list[str] = []
        else:
            given = [v for v in available if rnd.random() < rnd.choice([0.3, 0.6])]
            if style < 0.55:  # drop the data: the factors that omit x
                given = [v for v in given if v not in observed]
        yield latent, list(earlier), given, observed
        earlier.append(latent)


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_guide_factor_verdicts_and_fixes_match_the_oracle(rnd):
    """Random guides, factors reading the data or not, amortised or not: the checker's verdict
    is the oracle's, and every suggested fix passes (oracle) and is 1-minimal (oracle)."""
    from hiervae.graph.faithfulness import factor_query, suggest

    dag = random_dag(rnd)
    oracle = summary_oracle(dag)
    assume(oracle is not None)
    verdicts = []
    for latent, earlier, given_, observed in _random_guide(rnd, dag):
        (_, _, _), passed = factor_query(dag, latent, earlier, given_, observed)
        want = _oracle_verdict(oracle, latent, earlier, given_, observed)
        assert passed == want, f"{latent} | {given_}: checker {passed}, oracle {want}; {describe(dag)}"
        verdicts.append(passed)
        if not passed:
            fix = suggest(dag, latent, earlier, observed, given_)
            assert _oracle_verdict(oracle, latent, earlier, fix, observed), f"fix {fix} fails: {describe(dag)}"
            for n in fix:
                smaller = [m for m in fix if m != n]
                assert not _oracle_verdict(oracle, latent, earlier, smaller, observed), \
                    f"fix {fix} is not 1-minimal ({n} can go): {describe(dag)}"


def test_random_guides_are_not_vacuous():
    """The random guides above hold both verdicts, and factors that omit the data fail too."""
    from hiervae.graph.faithfulness import factor_query

    rnd = random.Random(7)
    counts = {(omits_data, passed): 0 for omits_data in (True, False) for passed in (True, False)}
    for _ in range(60):
        dag = random_dag(rnd)
        for latent, earlier, given_, observed in _random_guide(rnd, dag):
            passed = factor_query(dag, latent, earlier, given_, observed)[1]
            counts[(not set(observed) <= set(given_), passed)] += 1
    assert all(n >= 10 for n in counts.values()), counts


def test_a_factor_that_never_reads_the_data_fails_where_its_exact_factor_depends_on_it():
    """The issue's example: q(z2) reads nothing, p(z2 | x) depends on x through z2 -> x."""
    from hiervae.graph import build_graph
    from hiervae.language import parse_spec

    graph = build_graph(parse_spec(NO_DATA_FACTOR))
    report = check(graph)
    (z2, z1) = report.factors
    assert not report.faithful and not z2.passed and z1.passed
    assert z2.suggestion == ("x",)  # the fix adds the data
    assert [s.node for s in z2.path] == ["z2", "x"]
    oracle = summary_oracle(graph.dag)
    assert not _oracle_verdict(oracle, "z2", [], [], ["x"]) and _oracle_verdict(oracle, "z1", ["z2"], ["z2"], ["x"])


def test_the_fix_keeps_what_merge_prior_reads():
    """A merged factor must read its prior's inputs: the suggested ``given`` keeps them even
    where a summary would do (c = f(a) determines a, and the unconstrained fix prefers c)."""
    from hiervae.graph.faithfulness import suggest

    dag = nx.DiGraph()
    dag.add_node("a", kind="latent", dim=1)
    dag.add_node("c", kind="transform", dim=1, bijective_input="a")
    dag.add_node("b", kind="latent", dim=1)
    dag.add_node("x", kind="observed", dim=1)
    dag.add_edges_from([("a", "c"), ("a", "b"), ("b", "x"), ("c", "x")])
    assert suggest(dag, "b", ["a"], ["x"], ["x"]) == ("x", "c")
    assert suggest(dag, "b", ["a"], ["x"], ["x"], required=["a"]) == ("x", "a")
    oracle = summary_oracle(dag)
    assert _oracle_verdict(oracle, "b", ["a"], ["x", "a"], ["x"]) and _oracle_verdict(oracle, "b", ["a"], ["x", "c"], ["x"])


# --------------------------------------------------------------------------- shipped specs


def expected_factor_verdicts(graph, oracle):
    """For each guide factor e_i (sampling order), decide from the graph and the oracle alone:
    well-formed (every given node is a function of e_<i and the observed nodes) and
    e_i ⊥ ((e_<i ∪ observed) minus what given determines) | given: the factor reads its
    ``given`` and nothing else, the data included."""
    dag = graph.dag
    observed = {v for v in dag if dag.nodes[v]["kind"] == "observed"}
    out = {}
    earlier: list[str] = []
    features = {name: list(f.given) for name, f in graph.features.items()}
    for factor in graph.guide:
        cond = set().union(set(), *(_sources(g, features) for g in factor.given))  # a feature: what it is computed from
        well_formed = all(oracle.determined(g, set(earlier) | observed) for g in cond)
        rest = {e for e in set(earlier) | observed if not oracle.determined(e, cond)}
        out[factor.latent] = (well_formed, oracle.independent({factor.latent}, rest, cond), ({factor.latent}, rest, cond))
        earlier.append(factor.latent)
    return out


@pytest.mark.parametrize("spec", SPECS or [None], ids=[Path(s).name for s in SPECS] or ["no-specs"])
def test_shipped_spec_verdicts_match_oracle(spec):
    if spec is None:
        pytest.skip("no specs/*.yaml shipped yet")
    graph = load_graph(spec)
    report = check(graph)
    summary = summary_oracle(graph.dag)
    assert summary is not None, "summary oracle cannot instantiate this spec's graph"
    dense = LinearGaussianOracle(graph.dag, mode="dense")
    expected = expected_factor_verdicts(graph, summary)
    results = {f.latent: f for f in report.factors}
    assert set(results) == set(expected), "report must have one result per guide factor"
    problems = []
    for latent, (well_formed, independent, query) in expected.items():
        r = results[latent]
        want = well_formed and independent  # an ill-formed factor cannot pass
        if r.passed != want:
            problems.append(f"{latent}: checker passed={r.passed}, oracle says {want} "
                            f"(well_formed={well_formed}, query a={sorted(query[0])} b={sorted(query[1])} given={sorted(query[2])})")
        if well_formed and r.passed != summary.independent(*r.query):
            problems.append(f"{latent}: checker's own query {r.query} is decided {not r.passed} by the oracle")
        if r.passed and not dense.independent(*query):
            problems.append(f"{latent}: passes, but the dense linear-Gaussian instance refutes it")
    assert not problems, f"{Path(spec).name}:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- features, several observed nodes


def _sources(name: str, guide_features: dict[str, list[str]]) -> set[str]:
    """The model nodes a guide feature is computed from (a feature of the data stands for the data)."""
    if name not in guide_features:
        return {name}
    return set().union(*(_sources(g, guide_features) for g in guide_features[name]))


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_specs_with_features_and_several_observed_nodes_match_the_oracle(rnd):
    """Random specs with model feature nodes, guide features and up to two observed nodes,
    through the language, the graph builder and the check: each factor's verdict is the
    oracle's on what it reads (a guide feature conditions like an injective function of its
    inputs), and a suggested fix, its features expanded, passes the oracle."""
    from oracle.random_specs import random_spec_and_features

    from hiervae.graph import build_graph
    from hiervae.language import parse_spec

    text, guide_features = random_spec_and_features(rnd, observed_max=2, features=True)
    graph = build_graph(parse_spec(text))
    oracle = summary_oracle(graph.dag)
    assume(oracle is not None)
    report = check(graph)
    earlier: list[str] = []
    for factor, result in zip(graph.guide, report.factors):
        reads = set().union(set(), *(_sources(g, guide_features) for g in factor.given))
        want = _oracle_verdict(oracle, factor.latent, earlier, reads, graph.observed)
        assert result.passed == want, f"{factor.latent} | {factor.given}: checker {result.passed}, oracle {want}\n{text}"
        if not result.passed:
            fixed = set().union(set(), *(_sources(g, guide_features) for g in result.suggestion))
            assert _oracle_verdict(oracle, factor.latent, earlier, fixed, graph.observed), f"fix {result.suggestion}\n{text}"
        earlier.append(factor.latent)


def test_random_specs_with_features_are_not_vacuous():
    """The generator above yields factors that read guide features (passing and failing),
    model feature nodes, and models with two observed nodes."""
    from oracle.random_specs import random_spec_and_features

    from hiervae.graph import build_graph
    from hiervae.language import parse_spec

    rnd = random.Random(11)
    counts = {"reads a feature, passes": 0, "reads a feature, fails": 0, "model feature": 0, "two observed": 0}
    for _ in range(80):
        text, guide_features = random_spec_and_features(rnd, observed_max=2, features=True)
        graph = build_graph(parse_spec(text))
        counts["model feature"] += any(n.family == "feature" for n in graph.nodes.values())
        counts["two observed"] += len(graph.observed) == 2
        for factor, result in zip(graph.guide, check(graph).factors):
            if set(factor.given) & set(guide_features):
                counts["reads a feature, passes" if result.passed else "reads a feature, fails"] += 1
    assert all(n >= 5 for n in counts.values()), counts


def test_a_feature_of_the_data_is_as_good_as_the_data():
    """A ladder: q(z1 | d1) with d1 = f(x) fails as q(z1 | x) does (z1 depends on z2 given x);
    q(z1 | d1, z2) passes; the fix keeps the feature."""
    from hiervae.graph import build_graph
    from hiervae.language import parse_spec

    text = """
name: t
networks: {g: {mlp: [4]}}
model:
  - z2: {latent: 2, dist: normal}
  - z1: {latent: 2, dist: normal, given: [z2], net: g}
  - x:  {observed: [6], dist: bernoulli, given: [z1], net: g}
guide:
  - d1: {feature: 8, given: [x], net: g}
  - d2: {feature: 4, given: [d1], net: g}
  - z2: {dist: normal, given: [d2], net: g}
  - z1: {dist: normal, given: [d1], net: g}
"""
    report = check(build_graph(parse_spec(text)))
    z2, z1 = report.factors
    assert z2.passed and not z1.passed and z1.suggestion == ("d1", "z2")
    fixed = check(build_graph(parse_spec(text.replace("z1: {dist: normal, given: [d1]", "z1: {dist: normal, given: [d1, z2]"))))
    assert fixed.faithful
