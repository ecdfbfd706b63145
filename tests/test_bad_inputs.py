"""A corpus of bad inputs: each one is one line on stderr naming what and where, exit code 2,
no traceback, and its work bounded (a YAML bomb, a loop of a billion, a huge integer stop at
a limit instead of running)."""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import pytest

from fuzz.run import run
from hiervae.language import parse_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"
QUICKSTART = (SPECS / "quickstart.yaml").read_text()
SMALL = "name: t\nmodel:\n  - z: {latent: 2}\n  - x: {observed: [3], given: [z]}\nguide:\n  - z: {given: [x]}\n"


def _bomb(levels: int = 8) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\nname: t\n"


CORPUS = {
    # YAML
    "alias bomb": (_bomb(), "expands to more than 200000 YAML nodes"),
    "recursive alias": ("a: &a [*a]\n", "recursive alias"),
    "recursive alias in a mapping": ("a: &a {b: *a}\n", "recursive alias"),
    "deep flow nesting": ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    "deep block nesting": ("".join("  " * i + f"k{i}:\n" for i in range(2000)), "nested"),
    "a set": ("name: !!set {a, b}\nmodel: []\n", "unsupported YAML tag !!set"),
    "a timestamp tag": ("name: !!timestamp nope\n", "unsupported YAML tag !!timestamp"),
    "a python tag": ("name: !!python/object:os.system x\n", "unsupported YAML tag !!python/object:os.system"),
    "a local tag": ("name: !foo bar\n", "unsupported YAML tag !foo"),
    "a huge integer": ("name: t\nvars: {L: " + "9" * 5000 + "}\nmodel: []\n", "vars.L: cannot read the value"),
    "a float key": ("1.5: x\nname: t\n", "a mapping key must be a name"),
    "a very long value": ("name: " + "n" * 20000 + "\n", "characters (at most 10000)"),
    # templates, loops, ranges
    "a deep expression": (SMALL.replace("z: {latent: 2}", "z((" + "(" * 150 + "1" + ")" * 150 + ")): {latent: 2}"),
                          "an expression of"),
    "a huge product": (SMALL.replace("name: t", "name: t\nvars: {L: 2}").replace("z: {latent: 2}", "z(99999*99999*99999): {latent: 2}"),
                       "beyond +-1000000000"),
    "a loop of a billion": ("name: t\nvars: {L: 1000000000}\nmodel:\n  - for: l in 1..L\n    nodes:\n      z(l): {latent: 1}\n",
                            "a loop of 1000000000 iterations (at most 10000)"),
    "a range of a billion": ("name: t\nmodel:\n  - z1: {latent: 1}\n  - x: {observed: [2], given: [z1..z999999999]}\n",
                             "a range of 999999999 names"),
    "too many declarations": ("name: t\nvars: {L: 9000}\nmodel:\n" + "".join(
        f"  - for: l in 1..L\n    nodes:\n      a{k}x(l): {{latent: 1}}\n" for k in range(3)), "more than 20000 declarations"),
    # values
    "an infinite learning rate": (SMALL + "train: {optimizer: {lr: .inf}}\n", "train.optimizer.lr: Input should be a finite number"),
    "a NaN beta": (SMALL + "train: {kl_warmup: {schedule: constant, beta: .nan}}\n", "finite number"),
    "latent: true": (SMALL.replace("latent: 2", "latent: true"), "model[0].z.latent: Input should be a valid integer (got True)"),
    "a latent too large": (SMALL.replace("latent: 2", "latent: 100000000"), "model[0].z.latent: Input should be less than or equal to 16777216"),
    "a width too large": (SMALL.replace("given: [z]}", "given: [z], net: {mlp: [1000000000]}}"), "less than or equal to 16777216"),
    "kl_warmup misspelt key (linear)": (SMALL + "train: {kl_warmup: {schedule: linear, epoch: 3}}\n",
                                        "train.kl_warmup.epoch: unknown key 'epoch' (allowed: schedule, epochs)"),
    "kl_warmup misspelt key (geometric)": (SMALL + "train: {kl_warmup: {schedule: geometric, epoch: 3}}\n",
                                           "train.kl_warmup.epoch: unknown key 'epoch' (allowed: schedule, levels, epochs)"),
    # what fit would reject, rejected by check
    "an unknown dataset": (SMALL + "data: {dataset: imagenet}\n", "data.dataset: unknown dataset 'imagenet'"),
    "cifar10 binarised dynamically": (SMALL + "data: {dataset: cifar10, binarize: dynamic}\n",
                                      "data.binarize: cifar10: binarize must be none"),
    "a validation split larger than the data": (QUICKSTART.replace("validation: 200", "validation: 5000"),
                                                "data.validation: digits: validation must be an integer in [0, 1596]"),
    "an observed node of the wrong size": (QUICKSTART.replace("observed: [64]", "observed: [784]"),
                                           "has 784 features but dataset 'digits' has 64 per example"),
    "an unknown family option": (QUICKSTART.replace("net: gauss}\n  - x", "net: gauss, options: {sigma: 2}}\n  - x", 1)
                                 if False else QUICKSTART.replace("net: bij}", "net: bij, options: {rnak: 1}}"),
                                 "affine_lowrank: unknown option 'rnak' (known: rank, diag_floor)"),
    "rank -1": (QUICKSTART.replace("net: bij}", "net: bij, options: {rank: -1}}"), "option 'rank': input should be greater than or equal to 0"),
    "rank 'a'": (QUICKSTART.replace("net: bij}", "net: bij, options: {rank: a}}"), "option 'rank': input should be a valid integer"),
    "merge: prior on an iaf factor": (QUICKSTART.replace("eps(l): {dist: normal, given: [x, z(l-1)]", "eps(l): {dist: iaf, merge: prior, given: [x, z(l-1)]"),
                                      "merge: prior combines the guide's iaf with the prior's normal, and iaf merges with nothing"),
    "two observed nodes": (QUICKSTART.replace("  - x: {observed: [64]", "  - y: {observed: [2], given: [z(L)]}\n  - x: {observed: [64]"),
                           "is bound to no array: set data.arrays."),
    "an unknown activation": (QUICKSTART.replace("activation: tanh,", "activation: tnah,"), "unknown activation 'tnah'"),
    "a residual transform given an input": (SMALL.replace("  - x:", "  - h: {transform: residual, dim: 2, input: z, given: [z]}\n  - x:"),
                                            "transform 'residual' is not bijective and takes no `input`"),
    "a residual transform without given": (SMALL.replace("  - x:", "  - h: {transform: residual, dim: 2}\n  - x:"), None),
    "a network key nothing reads": (QUICKSTART.replace("decoder:  {mlp: [128], activation: relu}", "decoder:  {mlp: [8], kernel: 5}"),
                                    "'kernel' does not apply to an mlp network"),
    "a continuous density on binary pixels": (QUICKSTART.replace("dist: bernoulli", "dist: normal"),
                                              "continuous density (normal) but dataset 'digits' holds binary pixels"),
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_bad_spec_is_one_line_exit_2(name, tmp_path):
    text, message = CORPUS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    outcome = run(["check", str(path)])
    assert outcome.problem() is None, outcome.problem()
    if message is None:  # accepted by check (and then by compile: see the property tests)
        assert outcome.code in (0, 1)
        return
    assert outcome.code == 2, (outcome.code, outcome.stdout[:300])
    assert message in outcome.stderr, outcome.stderr
    assert outcome.stderr.startswith("hiervae check: error: ")


@pytest.mark.parametrize("text, field, value", [
    ("data: {dataset: cifar10}", "binarize", "none"),
    ("data: {dataset: digits}", "validation", 200),
    ("data: {dataset: binarized_mnist}", "binarize", "static"),
])
def test_a_dataset_brings_its_own_defaults(text, field, value):
    from hiervae.graph import build_graph

    shape = {"cifar10": "[3, 32, 32]", "digits": "[64]", "binarized_mnist": "[784]"}[text.split(": ")[-1].rstrip("}")]
    dist = "maf, options: {logit_alpha: 0.05}" if "cifar" in text else "bernoulli"
    spec = f"name: t\n{text[:-1]}{', dequantize: uniform' if 'cifar' in text else ''}}}\nmodel:\n  - x: {{observed: {shape}, dist: {dist}}}\n"
    assert getattr(build_graph(parse_spec(spec)).data, field) == value


def test_the_yaml_reader_keeps_nothing_between_documents():
    text = (SPECS / "sere_mlp_mnist.yaml").read_text()
    parse_spec(text)
    tracemalloc.start()
    for _ in range(30):
        parse_spec(text)
    first, _ = tracemalloc.get_traced_memory()
    for _ in range(300):
        parse_spec(text)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - first < 2_000_000, f"{(after - first) / 1e6:.1f} MB kept by 300 more loads"


# ----------------------------------------------------------------------------- run directories
@pytest.fixture
def quick(tmp_path):
    """A 1-epoch quickstart run directory."""
    out = tmp_path / "run"
    assert run(["fit", str(SPECS / "quickstart.yaml"), "--out", str(out), "--epochs", "1", "-q", "--threads", "1"]).code == 0
    return out


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_never_runs_code(quick, tmp_path):
    marker = tmp_path / "pwned"
    with open(quick / "checkpoint.pt", "wb") as f:
        pickle.dump({"program": Payload(marker)}, f)
    for args in (["eval", str(quick), "--iw", "2", "--limit", "4"], ["sample", str(quick), "-n", "4"],
                 ["fit", str(SPECS / "quickstart.yaml"), "--out", str(quick), "--resume", "--epochs", "2", "-q"]):
        outcome = run(args)
        assert outcome.problem() is None and outcome.code == 2, (args, outcome)
        assert "checkpoint" in outcome.stderr
    assert not marker.exists()  # the payload was refused, never executed


@pytest.mark.parametrize("state", [[1, 2, 3], {"program": "nope"}, {"program": {}, "rng": 5}])
def test_a_malformed_checkpoint_is_one_line(quick, state):
    import torch

    torch.save(state, quick / "checkpoint.pt")
    for args in (["eval", str(quick), "--iw", "2", "--limit", "4"],
                 ["fit", str(SPECS / "quickstart.yaml"), "--out", str(quick), "--resume", "--epochs", "2", "-q"]):
        outcome = run(args)
        assert outcome.problem() is None and outcome.code == 2, (args, outcome)


def test_out_under_a_file_or_a_link_loop_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for out in (tmp_path / "file" / "run", loop / "run"):
        outcome = run(["fit", str(SPECS / "quickstart.yaml"), "--out", str(out), "--epochs", "1", "-q"])
        assert outcome.problem() is None and outcome.code == 2, outcome
        assert "run directory" in outcome.stderr


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(quick, monkeypatch):
    """A fault-injected writer: the save of epoch 2 fails half way with ENOSPC."""
    import errno

    import torch

    import hiervae.run as run_module

    before = (quick / "checkpoint.pt").read_bytes()
    real = torch.save

    def full_disk(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_module.torch, "save", full_disk)
    outcome = run(["fit", str(SPECS / "quickstart.yaml"), "--out", str(quick), "--resume", "--epochs", "2", "-q"])
    monkeypatch.setattr(run_module.torch, "save", real)
    assert outcome.problem() is None and outcome.code == 2, outcome
    assert "No space left on device" in outcome.stderr and "previous checkpoint is kept" in outcome.stderr
    assert (quick / "checkpoint.pt").read_bytes() == before
    assert not list(quick.glob(".checkpoint.pt.*"))  # the half-written temporary is gone
    assert run(["eval", str(quick), "--iw", "2", "--limit", "4"]).code == 0  # still loadable


def test_resume_removes_what_a_killed_save_left(quick):
    stale = quick / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"torn")
    assert run(["fit", str(SPECS / "quickstart.yaml"), "--out", str(quick), "--resume", "--epochs", "2", "-q"]).code == 0
    assert not stale.exists()


def test_fit_refuses_a_spec_without_data(tmp_path):
    path = tmp_path / "nodata.yaml"
    path.write_text(SMALL)
    assert run(["check", str(path)]).code == 0
    outcome = run(["fit", str(path), "--out", str(tmp_path / "run"), "-q"])
    assert outcome.problem() is None and outcome.code == 2 and "declares no data" in outcome.stderr


def test_a_latent_family_without_a_reparameterised_sampler_is_refused(monkeypatch, tmp_path):
    """Training draws latents with rsample (pathwise gradients); a family that cannot is a
    check error, not a silent fall-back to biased gradients."""
    from hiervae.nn import FAMILIES, DiagonalGaussianHead

    class ScoreOnly(DiagonalGaussianHead):
        reparameterized = False

    monkeypatch.setitem(FAMILIES._entries, "score_only", ScoreOnly)
    path = tmp_path / "s.yaml"
    path.write_text(SMALL.replace("z: {latent: 2}", "z: {latent: 2, dist: score_only}"))
    outcome = run(["check", str(path)])
    assert outcome.code == 2 and "score_only has no reparameterised sampler" in outcome.stderr, outcome
    path.write_text(SMALL.replace("z: {given: [x]}", "z: {dist: score_only, given: [x]}"))
    outcome = run(["check", str(path)])
    assert outcome.code == 2 and "score_only has no reparameterised sampler" in outcome.stderr, outcome
