"""`hiervae check --fix`: the written overlay gives each failing factor exactly the check's
suggestion, leaves every other factor as it was, passes the check, and compiles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hiervae.cli import main
from hiervae.graph import load_graph
from hiervae.graph.faithfulness import check
from hiervae.program import build_program
from examples import NO_DATA_FACTOR

SPECS = Path(__file__).resolve().parents[1] / "specs"

def _factors(graph):
    return {f.latent: f for f in graph.guide}


def _fix(path: Path, *extra: str) -> tuple[int, Path]:
    out = path.with_name(f"{path.stem}_fixed.yaml")
    return main(["check", str(path), "--fix", *extra]), out


def _assert_fixed(original: Path, written: Path):
    graph, fixed = load_graph(original), load_graph(written)
    report = check(graph)
    assert not report.faithful  # guard: there was something to fix
    assert check(fixed).faithful
    before, after = _factors(graph), _factors(fixed)
    assert list(before) == list(after)  # same factors, same order
    for result in report.factors:
        new, old = after[result.latent], before[result.latent]
        assert new.given == (result.suggestion if not result.passed else old.given)
        assert (new.family, new.net, new.merge, new.options) == (old.family, old.net, old.merge, old.options)
        assert {n: e for n, e in old.encoders.items() if n in new.given} == new.encoders
    def features(g):
        return {n: (f.dim, f.given, f.net) for n, f in g.features.items()}

    assert features(fixed) == features(graph) and fixed.nodes.keys() == graph.nodes.keys()
    build_program(fixed)


@pytest.mark.parametrize("name", ["sere_mlp_mnist", "dlgm_mnist", "sere_iaf_mnist", "sere_maf_cifar10"])
def test_fix_of_each_failing_shipped_spec_is_its_suggestion_and_passes(tmp_path, name, capsys):
    spec = tmp_path / f"{name}.yaml"
    shutil.copy(SPECS / f"{name}.yaml", spec)
    code, written = _fix(spec)
    assert code == 0, capsys.readouterr().out
    assert f"{written.name}; hiervae check" in capsys.readouterr().out.splitlines()[-1]
    text = written.read_text()
    assert text.splitlines()[2] == f"extends: {name}.yaml"
    assert isinstance(yaml.safe_load(text)["guide"], list)  # loop factors: the guide unrolled
    _assert_fixed(spec, written)


def test_a_top_level_factor_is_patched_by_name_and_the_data_added(tmp_path, capsys):
    spec = tmp_path / "nodata.yaml"
    spec.write_text(NO_DATA_FACTOR)
    code, written = _fix(spec, "-o", str(tmp_path / "sub" / "fixed.yaml"))
    written = tmp_path / "sub" / "fixed.yaml"
    assert code == 0 and written.is_file()
    doc = yaml.safe_load(written.read_text())
    assert doc["extends"] == "../nodata.yaml" and isinstance(doc["guide"], dict)
    assert doc["guide"]["z2"]["given"] == ["x"]
    _assert_fixed(spec, written)
    assert "FAITHFUL" in capsys.readouterr().out.splitlines()[-1]


def test_a_fix_keeps_features_merge_inputs_and_encoders_it_still_reads(tmp_path):
    text = (SPECS / "ladder_mnist.yaml").read_text()
    text = text.replace("z(5-k): {dist: normal, given: [d(5-k), z(6-k)], net: gauss, merge: prior,",
                        "z(5-k): {dist: normal, given: [d(5-k)], encoders: {d(5-k): {mlp: [8]}}, net: gauss,")
    spec = tmp_path / "ladder.yaml"
    spec.write_text(text)
    code, written = _fix(spec)
    assert code == 0
    fixed = _factors(load_graph(written))
    assert fixed["z3"].given[0] == "d3" and "z4" in fixed["z3"].given and "d3" in fixed["z3"].encoders
    _assert_fixed(spec, written)

    merge = tmp_path / "merge.yaml"  # merge: prior reads the prior's inputs: a fix keeps them
    merge.write_text((SPECS / "ladder_mnist.yaml").read_text().replace(
        "z5: {dist: normal, given: [d5]", "z5: {dist: normal, given: []"))
    code, written = _fix(merge)
    assert code == 0
    _assert_fixed(merge, written)


def test_fix_refusals_and_a_faithful_spec(tmp_path, capsys):
    spec = tmp_path / "quickstart.yaml"
    shutil.copy(SPECS / "quickstart.yaml", spec)
    assert main(["check", str(spec), "--fix"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("fix: nothing to fix")
    assert not (tmp_path / "quickstart_fixed.yaml").exists()
    for argv, message in [
        (["--fix", "--set", "vars.L=2"], "put the --set values in the file first"),
        (["-o", str(tmp_path / "x.yaml")], "-o names the file --fix writes: add --fix"),
        (["--fix", "-o", str(spec)], "--fix would overwrite"),
    ]:
        nodata = tmp_path / "nodata.yaml"
        nodata.write_text(NO_DATA_FACTOR)
        if argv[-1] == str(spec):
            argv = ["--fix", "-o", str(nodata)]
        assert main(["check", str(nodata), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
