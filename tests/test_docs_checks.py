"""docs/checks.md is generated from the check results (scripts/gen_checks_doc.py) and must stay current."""

from __future__ import annotations

import difflib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hiervae.graph import load_graph
from hiervae.graph.faithfulness import check

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
DOC = ROOT / "docs" / "checks.md"
SCRIPT = ROOT / "scripts" / "gen_checks_doc.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_checks_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def rendered() -> str:
    return gen.render()


def test_docs_checks_md_is_current(rendered):
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if current != rendered:
        diff = "".join(list(difflib.unified_diff(current.splitlines(True), rendered.splitlines(True), "docs/checks.md", "generated", n=1))[:40])
        pytest.fail(f"docs/checks.md is stale: run `python scripts/gen_checks_doc.py` and commit it.\n{diff}")


def test_check_flag_exits_1_when_stale_and_0_when_current(tmp_path, rendered, monkeypatch, capsys):
    monkeypatch.setattr(gen, "render", lambda spec_dir=gen.SPECS: rendered)  # the real render is tested above
    out = tmp_path / "checks.md"
    assert gen.main(["--check", "--output", str(out)]) == 1  # missing
    out.write_text(rendered.replace("eps3..eps10", "eps4..eps10", 1), encoding="utf-8")
    assert gen.main(["--check", "--output", str(out)]) == 1  # stale
    assert "run `python scripts/gen_checks_doc.py`" in capsys.readouterr().err
    assert gen.main(["--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == rendered
    assert gen.main(["--check", "--output", str(out)]) == 0


def test_script_output_does_not_depend_on_hash_seed(tmp_path):
    """Run as a script under a different hash seed: same bytes (no set-order or timestamp leaks)."""
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = tmp_path / "checks.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--output", str(out)], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == gen.render()


def test_key_facts_from_the_checker():
    report = check(load_graph(SPECS / "sere_mlp_mnist.yaml"))
    assert [f.latent for f in report.factors if not f.passed] == [f"eps{l}" for l in range(3, 11)]
    first = next(f for f in report.factors if not f.passed)
    assert [s.node for s in first.path] == ["eps3", "z3", "x", "z1", "eps1"]
    assert first.path[2].reason.startswith("collider") and "observed" in first.path[2].reason
    assert first.suggestion == ("x", "z1", "z2")

    faithful = sorted(SPECS.glob("*_faithful.yaml"))
    assert len(faithful) >= 3
    for path in faithful:
        assert check(load_graph(path)).faithful, path.name

    dlgm = check(load_graph(SPECS / "dlgm_mnist.yaml"))
    assert [f.passed for f in dlgm.factors] == [True] + [False] * 9
    assert check(load_graph(SPECS / "ladder_mnist.yaml")).faithful
    assert check(load_graph(SPECS / "quickstart.yaml")).faithful


def test_doc_states_the_key_facts(rendered):
    def row(stem: str) -> str:
        return next(line for line in rendered.splitlines() if line.startswith(f"| `specs/{stem}.yaml` |"))

    assert "| FAIL (8/10 factors) | eps3..eps10 |" in row("sere_mlp_mnist")
    assert "| FAIL (9/10 factors) | eps2..eps10 |" in row("dlgm_mnist")
    for stem in ("sere_mlp_mnist_faithful", "sere_iaf_mnist_faithful", "sere_resnet_mnist_faithful", "sere_maf_cifar10_faithful", "ladder_mnist", "quickstart"):
        assert "| PASS (" in row(stem), stem
    assert "eps3 -> z3 -> x <- z1 <- eps1" in rendered
    assert "x is a collider of every z_j" in rendered
    assert "python scripts/gen_checks_doc.py" in rendered


def test_generator_refuses_prose_the_results_no_longer_support(tmp_path):
    """With the headline spec's decoder on z(L) only the spec passes, so the headline prose
    ('fails layers 3..L because x is a collider') must not be generated."""
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    path = specs / "sere_mlp_mnist.yaml"
    text = path.read_text(encoding="utf-8")
    assert "given: [z1..z(L)], net: decoder" in text
    path.write_text(text.replace("given: [z1..z(L)], net: decoder", "given: [z(L)], net: decoder"), encoding="utf-8")
    with pytest.raises(gen.StaleNarrative):
        gen.render(specs)
