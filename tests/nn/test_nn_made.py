"""Conditional MADE: mask-offset degrees, autoregressive Jacobian, context connectivity."""

import pytest
import torch
from torch.autograd.functional import jacobian

from hiervae.nn.networks.made import ConditionalMADE

D, C = 5, 3


def _jacobians(made: ConditionalMADE, x: torch.Tensor, c: torch.Tensor):
    """d out / d x and d out / d context at one point: (P, D, D) and (P, D, C)."""
    return jacobian(lambda x, c: made(x, c), (x, c))


def _in_made_order(j_x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows (outputs) and columns (inputs) permuted into the MADE's generation order."""
    return j_x[..., order, :][..., order]


@pytest.mark.parametrize("random_order", [False, True])
def test_outputs_depend_exactly_on_earlier_inputs(random_order):
    """Strictly lower triangular in the MADE's order, and every allowed entry used."""
    torch.manual_seed(0)
    made = ConditionalMADE(D, C, hidden=(32, 32), activation="tanh", random_order=random_order, seed=3)
    if random_order:
        assert made.order.tolist() != list(range(D))
    else:
        assert made.order.tolist() == list(range(D))
    j_x, _ = _jacobians(made, torch.randn(D), torch.randn(C))
    assert j_x.shape == (2, D, D)
    strictly_lower = torch.ones(D, D).tril(-1).bool()
    for p in range(2):
        ordered = _in_made_order(j_x[p], made.order)
        assert (ordered[~strictly_lower] == 0).all()
        assert (ordered[strictly_lower] != 0).all()


def test_every_output_depends_on_every_context_input():
    torch.manual_seed(0)
    made = ConditionalMADE(D, C, hidden=(16,), activation="tanh", random_order=True, seed=1)
    _, j_c = _jacobians(made, torch.randn(D), torch.randn(C))
    assert j_c.shape == (2, D, C) and (j_c != 0).all()


def test_literal_offset_leaves_the_first_variable_unconditioned():
    """Hidden degrees in [C+1, C+D-1] (the paper's literal text): the first variable's
    parameters read no hidden unit, so they ignore the context; everything else does not."""
    torch.manual_seed(0)
    made = ConditionalMADE(D, C, hidden=(16,), activation="tanh", seed=1, context_only_units=False)
    _, j_c = _jacobians(made, torch.randn(D), torch.randn(C))
    first = made.order[0]
    assert (j_c[:, first] == 0).all()
    assert (j_c[:, made.order[1:]] != 0).all()


def test_degrees_follow_the_mask_offset_construction():
    made = ConditionalMADE(D, C, hidden=(7, 9), seed=2, random_order=True)
    # context 1..C, data C+1..C+D assigned through the order
    assert made.input_degrees[:C].tolist() == [1, 2, 3]
    data = made.input_degrees[C:]
    assert sorted(data.tolist()) == list(range(C + 1, C + D + 1))
    assert data[made.order].tolist() == list(range(C + 1, C + D + 1))
    # "equal" hidden degrees: cycled over [C, C+D-1] (C = the context-only units)
    assert made.hidden_degrees[0].tolist() == [3, 4, 5, 6, 7, 3, 4]
    literal = ConditionalMADE(D, C, hidden=(6,), context_only_units=False)
    assert literal.hidden_degrees[0].tolist() == [4, 5, 6, 7, 4, 5]
    plain = ConditionalMADE(D, 0, hidden=(6,))
    assert plain.hidden_degrees[0].tolist() == [1, 2, 3, 4, 1, 2]


def test_random_hidden_degrees_stay_in_range_and_are_seeded():
    a = ConditionalMADE(D, C, hidden=(50, 50), hidden_degrees="random", seed=4)
    b = ConditionalMADE(D, C, hidden=(50, 50), hidden_degrees="random", seed=4)
    for m_a, m_b in zip(a.hidden_degrees, b.hidden_degrees):
        assert torch.equal(m_a, m_b)
        assert m_a.min() >= C and m_a.max() <= C + D - 1
    assert a.hidden_degrees[1].min() >= a.hidden_degrees[0].min()


def test_seed_fixes_the_random_order():
    a = ConditionalMADE(8, 2, hidden=(8,), random_order=True, seed=5)
    b = ConditionalMADE(8, 2, hidden=(8,), random_order=True, seed=5)
    c = ConditionalMADE(8, 2, hidden=(8,), random_order=True, seed=6)
    assert torch.equal(a.order, b.order) and not torch.equal(a.order, c.order)


def test_explicit_order_and_params_per_dim():
    torch.manual_seed(0)
    made = ConditionalMADE(4, 0, hidden=(16,), activation="tanh", order=[3, 2, 1, 0], params_per_dim=3)
    j_x = jacobian(lambda x: made(x), torch.randn(4))
    assert j_x.shape == (3, 4, 4)
    above = torch.ones(4, 4).triu(1).bool()
    for p in range(3):  # reversed order: output i reads exactly the inputs j > i
        assert (j_x[p][~above] == 0).all() and (j_x[p][above] != 0).all()


def test_batches_broadcast_against_the_context():
    made = ConditionalMADE(D, C, hidden=(8,))
    out = made(torch.randn(6, 4, D), torch.randn(4, C))
    assert out.shape == (6, 4, 2, D)
    single = made(torch.randn(4, D)[1], torch.randn(4, C)[1])
    assert single.shape == (2, D)


def test_single_feature_reads_only_the_context():
    torch.manual_seed(0)
    made = ConditionalMADE(1, 2, hidden=(4,), activation="tanh")
    j_x, j_c = _jacobians(made, torch.randn(1), torch.randn(2))
    assert (j_x == 0).all() and (j_c != 0).all()


def test_masked_weights_can_be_reused():
    made = ConditionalMADE(D, C, hidden=(8, 8))
    x, c = torch.randn(3, D), torch.randn(3, C)
    assert torch.equal(made(x, c), made(x, c, made.masked_weights()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(order=[0, 0, 1, 2, 3]), "permutation"),
        (dict(hidden_degrees="lumpy"), "hidden_degrees"),
        (dict(hidden=()), "hidden layer"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConditionalMADE(D, C, **kwargs)


def test_wrong_context_width_is_refused():
    made = ConditionalMADE(D, C, hidden=(8,))
    with pytest.raises(ValueError, match="context has 2 features, expected 3"):
        made(torch.randn(D), torch.randn(2))
    with pytest.raises(ValueError, match="context has None features"):
        made(torch.randn(D))
