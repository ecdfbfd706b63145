"""One Adam over the program's parameters; non-finite steps are skipped without a sync."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hiervae.program import build_program
from hiervae.graph import load_graph
from hiervae.language import schema as S
from hiervae.train.optim import grads_finite, is_fused, make_optimizer, set_lr, step_unless

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"


def test_one_fused_adam_over_every_parameter_with_the_spec_settings():
    program = build_program(load_graph(QUICKSTART))
    spec = S.AdamSpec(lr=3e-3, weight_decay=1e-5, betas=(0.8, 0.99), eps=1e-7)
    opt = make_optimizer(program.parameters(), spec)
    assert isinstance(opt, torch.optim.Adam) and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert {id(p) for p in group["params"]} == {id(p) for p in program.parameters()}
    assert (group["lr"], group["weight_decay"], tuple(group["betas"]), group["eps"]) == (3e-3, 1e-5, (0.8, 0.99), 1e-7)
    assert is_fused(opt)  # CPU fused Adam exists in this torch
    assert not is_fused(make_optimizer(program.parameters(), spec, fused=False))
    set_lr(opt, 1e-4)
    assert group["lr"] == 1e-4


def _setup(fused):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    opt = make_optimizer([p], S.AdamSpec(weight_decay=1e-3), fused=fused)
    p.grad = torch.randn(5)
    opt.step()
    return p, opt


@pytest.mark.parametrize("fused", [True, False])
def test_a_step_with_non_finite_gradients_changes_nothing(fused):
    p, opt = _setup(fused)
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    p.grad = torch.tensor([1.0, float("nan"), 0.0, 0.0, 0.0])
    ok = grads_finite([p], torch.tensor(1.0))
    assert not bool(ok)
    step_unless(opt, ok)
    assert torch.equal(p.detach(), before)
    assert all(torch.equal(v, opt.state[p][k]) for k, v in state.items())
    assert not hasattr(opt, "found_inf")
    p.grad = torch.randn(5)
    ok = grads_finite([p], torch.tensor(1.0))
    assert bool(ok)
    step_unless(opt, ok)
    assert not torch.equal(p.detach(), before)
    assert int(opt.state[p]["step"]) == 2


def test_grads_finite_looks_at_the_loss_and_every_gradient():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    assert bool(grads_finite([a, b], torch.tensor(2.0)))
    assert not bool(grads_finite([a, b], torch.tensor(float("inf"))))
    b.grad[1] = float("-inf")
    assert not bool(grads_finite([a, b], torch.tensor(2.0)))
    b.grad = None  # a parameter without gradient is fine
    assert bool(grads_finite([a, b], torch.tensor(2.0)))
