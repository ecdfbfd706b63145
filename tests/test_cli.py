"""The command line: ``hiervae check | render | schema``, exit codes 0/1/2, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from hiervae.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
QUICKSTART = str(SPECS / "quickstart.yaml")
SERE_MLP = str(SPECS / "sere_mlp_mnist.yaml")

BAD_SPEC = """\
name: bad
model:
  - z: {latent: 2}
  - x:
      observed: [4]
      given: [z]
      dsit: bernoulli
"""


def hiervae(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``python -m hiervae`` as a user would (a fresh process, real exit code)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "hiervae", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


# ------------------------------------------------------------------ real processes (few: ~1 s each)
def test_check_faithful_spec_exits_0():
    proc = hiervae("check", QUICKSTART)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "quickstart" in proc.stdout and "FAITHFUL" in proc.stdout and "NOT FAITHFUL" not in proc.stdout


def test_check_unfaithful_spec_exits_1_and_explains():
    proc = hiervae("check", SERE_MLP)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert "NOT FAITHFUL - 8 of 10" in out
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith("eps")}
    assert rows == {f"eps{l}": "PASS" if l <= 2 else "FAIL" for l in range(1, 11)}
    assert "FAIL eps3: q(eps3 | x, z2)" in out
    assert "open path: eps3 -> z3 -> x <- z1 <- eps1" in out
    assert "fix: given: [x, z1, z2]" in out


def test_check_bad_spec_exits_2_with_one_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD_SPEC)
    proc = hiervae("check", "bad.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr == "hiervae check: error: bad.yaml:7: model[1].x.dsit: unknown key 'dsit' (allowed: observed, dist, given, net, options)\n"


# ------------------------------------------------------------------ in process (fast)
def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param(BAD_SPEC, r"bad\.yaml:7: model\[1\]\.x\.dsit: unknown key 'dsit'", id="unknown-key"),
        pytest.param("name: t\nmodel: [\n", r"bad\.yaml:\d+: invalid YAML: ", id="yaml-syntax"),
        pytest.param("- a\n", r"bad\.yaml:1: a spec is a mapping", id="not-a-mapping"),
        pytest.param("name: t\nmodel:\n  - x: {observed: [4], given: [z]}\n", r"bad\.yaml:3: model\[0\]\.x\.given: unknown node 'z' in given", id="dangling"),
        pytest.param("name: t\nmodel:\n  - z: {latent: 2}\n  - x: {observed: [4], given: [z]}\n", r"bad\.yaml:1: guide: no guide factor for latent 'z'", id="no-guide"),
        pytest.param(
            "name: t\nmodel:\n  - for: l in 1..2\n    nodes:\n      z(l%0): {latent: 2}\n", r"bad\.yaml:5: model\[0\]\.nodes\.z\(l%0\).*: .*zero",
            id="modulo-by-zero",
        ),
    ],
)
@pytest.mark.parametrize("command", ["check", "render"])
def test_bad_spec_is_one_line_on_stderr(capsys, tmp_path, monkeypatch, command, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(text)
    extra = ["--dot", "-o", str(tmp_path / "out")] if command == "render" else []
    code, out, err = run_main(capsys, command, "bad.yaml", *extra)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"hiervae {command}: error: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_missing_spec_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "check", "nope.yaml")
    assert (code, out, err) == (2, "", "hiervae check: error: nope.yaml: no such file\n")


def test_bad_set_is_exit_2(capsys):
    code, out, err = run_main(capsys, "check", QUICKSTART, "--set", "vars.L")
    assert code == 2 and out == ""
    assert err.startswith("hiervae check: error: --set") and "KEY=VALUE" in err and err.count("\n") == 1


def test_set_overrides_reach_the_check(capsys):
    code, out, _ = run_main(capsys, "check", QUICKSTART, "--set", "vars.L=5", "--json")
    assert code == 0
    assert [f["latent"] for f in json.loads(out)["factors"]] == [f"eps{l}" for l in range(1, 6)]
    # sere_mlp_mnist with 2 layers has nothing to fail
    code, _, _ = run_main(capsys, "check", SERE_MLP, "--set", "vars.L=2")
    assert code == 0


def test_check_json(capsys):
    code, out, err = run_main(capsys, "check", SERE_MLP, "--json")
    assert code == 1 and err == ""
    report = json.loads(out)
    assert report["name"] == "sere-mlp-mnist" and report["faithful"] is False
    factors = report["factors"]
    assert [f["latent"] for f in factors] == [f"eps{l}" for l in range(1, 11)]
    for f in factors:
        assert {"latent", "given", "passed", "open_path", "suggested_given"} <= set(f)
    by = {f["latent"]: f for f in factors}
    assert by["eps1"]["passed"] is True and by["eps1"]["open_path"] is None and by["eps1"]["suggested_given"] is None
    assert by["eps2"]["given"] == ["x", "z1"] and by["eps2"]["passed"] is True
    eps3 = by["eps3"]
    assert eps3["passed"] is False and eps3["given"] == ["x", "z2"]
    assert [s["node"] for s in eps3["open_path"]] == ["eps3", "z3", "x", "z1", "eps1"]
    assert all(isinstance(s["reason"], str) for s in eps3["open_path"])
    assert eps3["suggested_given"] == ["x", "z1", "z2"]
    # --json gives every failing factor its suggestion (no truncation)
    assert by["eps10"]["suggested_given"] == ["x"] + [f"z{l}" for l in range(1, 10)]


def test_check_json_faithful(capsys):
    code, out, _ = run_main(capsys, "check", QUICKSTART, "--json")
    report = json.loads(out)
    assert code == 0 and report["faithful"] is True
    assert all(f["passed"] and f["open_path"] is None and f["suggested_given"] is None for f in report["factors"])


def test_check_table_all(capsys):
    code, out, _ = run_main(capsys, "check", SERE_MLP, "--all")
    assert code == 1
    assert out.count("\nFAIL eps") == 8 and "FAIL eps10:" in out and "more failing factors" not in out
    code, out, _ = run_main(capsys, "check", SERE_MLP)
    assert out.count("\nFAIL eps") == 5 and "... and 3 more failing factors" in out


def test_schema_prints_json_schema(capsys):
    code, out, err = run_main(capsys, "schema")
    assert code == 0 and err == ""
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "hiervae spec" and "name" in schema["required"]  # model: inherited by an overlay


def test_render_dot_writes_gv(capsys, tmp_path):
    out_dir = tmp_path / "pics"
    code, out, err = run_main(capsys, "render", QUICKSTART, "--dot", "-o", str(out_dir))
    assert code == 0 and err == ""
    written = [Path(line) for line in out.splitlines()]
    assert written == [out_dir / "quickstart.gv"]
    source = written[0].read_text()
    assert source.lstrip().startswith("digraph") and "eps1" in source and "z3" in source


def test_render_dot_with_check(capsys, tmp_path):
    code, out, _ = run_main(capsys, "render", SERE_MLP, "--dot", "--check", "-o", str(tmp_path))
    assert code == 0
    source = Path(out.strip()).read_text()
    assert "#d62728" in source  # the open path and failing factors are red


@pytest.mark.parametrize("args, message", [
    (["frobnicate"], "hiervae: error: argument COMMAND: invalid choice: 'frobnicate'"),
    ([], "hiervae: error: the following arguments are required: COMMAND"),
    (["fit", "specs/quickstart.yaml", "--threads", "0"], "hiervae fit: error: argument --threads: expected a positive integer, got '0'"),
    (["fit", "specs/quickstart.yaml", "--nproc", "x"], "hiervae fit: error: argument --nproc: expected a positive integer, got 'x'"),
    (["check"], "hiervae check: error: the following arguments are required: spec"),
    (["render", "s.yaml", "--format", "gif"], "hiervae render: error: argument --format: invalid choice: 'gif'"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and len(captured.err.strip().splitlines()) == 1, captured.err
    assert "usage:" not in captured.err and captured.out == ""
