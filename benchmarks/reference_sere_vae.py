"""Hand-written PyTorch reference of the paper's MLP SeRe-VAE (appendix 7, Tables 4-5).

No Pyro: plain ``nn.Module``\\ s, one forward loop over the layers, analytic Gaussian KL,
``torch.optim.Adam``, the way one would write the model by hand.  It is the *same
network* that hiervae compiles from ``specs/sere_mlp_mnist.yaml``:

* evidence encoders (one per layer, independent, each reads the raw image) and latent
  encoders (layers 2..L, each reads z(l-1)): MLP 2 x 256, ReLU, 20 features;
* guide loc / scale networks (separate, 2 x 256, ReLU) of [evidence, latent] features;
* prior loc / scale networks (separate, 2 x 256, ReLU) of z(l-1); layer 1: constants;
* bijector ``z(l) = shift + (diag(d) + u u^T) eps(l)``, shift, raw d and u from three
  separate MLPs (2 x 20, tanh, tanh output, no batch norm) of z(l-1); layer 1: constants;
* decoder MLP (2 x 512, ReLU) of [z1..zL] -> Bernoulli logits;
* batch norm at the input of every linear layer of the ReLU networks, Glorot-normal
  weights, zero biases; ``variance = softplus(elu(raw)) + 1e-4`` (eq. 11), the same map
  for the bijector's diagonal.

:func:`load_from_program` copies a compiled hiervae program's weights into a
:class:`SeReVAE`, so ``tests/test_benchmark_reference.py`` can check that both compute
the same loss to float64 round-off, and ``benchmarks/train_speed.py`` compares like
with like.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FLOOR = 1e-4  # added to the variance (Gaussians) and to the bijector's diagonal


def raw_of_one(floor: float = FLOOR) -> float:
    """raw with softplus(elu(raw)) + floor == 1."""
    return math.log(math.expm1(1.0 - floor))


def positive(raw: torch.Tensor) -> torch.Tensor:
    """Paper eq. (11): softplus(elu(raw)) + floor."""
    return F.softplus(F.elu(raw)) + FLOOR


class MLP(nn.Module):
    """[BatchNorm] -> Linear -> act, repeated; the last Linear gets ``out_act``."""

    def __init__(self, n_in, hidden, n_out, act=nn.ReLU, out_act=None, batch_norm=True):
        super().__init__()
        widths = [n_in, *hidden, n_out]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            if batch_norm:
                layers.append(nn.BatchNorm1d(a))
            linear = nn.Linear(a, b)
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            last = i == len(widths) - 2
            if not last:
                layers.append(act())
            elif out_act is not None:
                layers.append(out_act())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def gaussian_kl(mq, sq, mp, sp):
    """KL(N(mq, sq^2) || N(mp, sp^2)) per dimension."""
    var_ratio = (sq / sp).pow(2)
    t1 = ((mq - mp) / sp).pow(2)
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())


class SeReVAE(nn.Module):
    def __init__(self, x_dim=784, layers=10, dim=10, features=20, hidden=256, bij_hidden=20, dec_hidden=512):
        super().__init__()
        L = self.L = layers
        self.dim = dim
        h, bh = [hidden, hidden], [bij_hidden, bij_hidden]
        # inference network: independent evidence encoders, latent encoders for layers 2..L
        self.evidence = nn.ModuleList(MLP(x_dim, h, features) for _ in range(L))
        self.latent = nn.ModuleList(MLP(dim, h, features) for _ in range(L - 1))
        q_in = [features] + [2 * features] * (L - 1)
        self.q_loc = nn.ModuleList(MLP(n, h, dim) for n in q_in)
        self.q_scale = nn.ModuleList(MLP(n, h, dim) for n in q_in)
        # generative model: prior of eps(1) and bijector of layer 1 are constants
        self.p1_loc = nn.Parameter(torch.zeros(dim))
        self.p1_raw = nn.Parameter(torch.full((dim,), raw_of_one()))
        self.p_loc = nn.ModuleList(MLP(dim, h, dim) for _ in range(L - 1))
        self.p_scale = nn.ModuleList(MLP(dim, h, dim) for _ in range(L - 1))
        self.f1_shift = nn.Parameter(torch.zeros(dim))
        self.f1_raw = nn.Parameter(torch.full((dim,), raw_of_one()))
        self.f1_u = nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, 1)).flatten())
        bij = lambda: MLP(dim, bh, dim, act=nn.Tanh, out_act=nn.Tanh, batch_norm=False)  # noqa: E731
        self.f_shift = nn.ModuleList(bij() for _ in range(L - 1))
        self.f_raw = nn.ModuleList(bij() for _ in range(L - 1))
        self.f_u = nn.ModuleList(bij() for _ in range(L - 1))
        self.decoder = MLP(L * dim, [dec_hidden, dec_hidden], x_dim)

    def terms(self, x, noise=None):
        """Per data point: log p(x | z), the KL of each layer, and the sampled eps and z.

        ``noise``: optional list of L standard-normal tensors (batch, dim) for the
        reparameterisation; by default drawn with ``torch.randn_like``, layer by layer.
        """
        log_lik, kls, eps_all, zs = None, [], [], []
        z = None
        for l in range(self.L):
            # q(eps(l) | x, z(l-1))
            h = self.evidence[l](x)
            if l > 0:
                h = torch.cat([h, self.latent[l - 1](z)], -1)
            q_loc, q_std = self.q_loc[l](h), positive(self.q_scale[l](h)).sqrt()
            e = torch.randn_like(q_loc) if noise is None else noise[l]
            eps = q_loc + e * q_std
            # p(eps(l) | z(l-1)) and the bijector z(l) = f(eps(l); z(l-1))
            if l == 0:
                p_loc, p_std = self.p1_loc, positive(self.p1_raw).sqrt()
                shift, d, u = self.f1_shift, positive(self.f1_raw), self.f1_u
            else:
                p_loc, p_std = self.p_loc[l - 1](z), positive(self.p_scale[l - 1](z)).sqrt()
                shift, d, u = self.f_shift[l - 1](z), positive(self.f_raw[l - 1](z)), self.f_u[l - 1](z)
            kls.append(gaussian_kl(q_loc, q_std, p_loc, p_std).sum(-1))
            z = shift + d * eps + u * (u * eps).sum(-1, keepdim=True)
            eps_all.append(eps)
            zs.append(z)
        logits = self.decoder(torch.cat(zs, -1))
        log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return log_lik, kls, eps_all, zs

    def forward(self, x, beta=1.0, noise=None):
        """Negative annealed ELBO summed over the batch: -(sum log p(x|z) - beta * sum KL)."""
        log_lik, kls, _, _ = self.terms(x, noise)
        return -(log_lik.sum() - beta * sum(kls).sum())


# ------------------------------------------------------------------ hiervae -> reference
_LAYERS = (nn.Linear, nn.BatchNorm1d)


def _mlp_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, _LAYERS)]


def _correspondence(program, ref: SeReVAE):
    """(reference part, program part) pairs: MLPs, or constant parameters."""
    sites, factors = program.sites, program.factors
    for l in range(1, ref.L + 1):
        i = l - 1
        factor = factors[f"eps{l}"]
        yield ref.evidence[i], factor.encoders["x"]
        if l > 1:
            yield ref.latent[i - 1], factor.encoders[f"z{l - 1}"]
        yield ref.q_loc[i], factor.family.nets[0].net
        yield ref.q_scale[i], factor.family.nets[1].net
        prior, bij = sites[f"eps{l}"].nets, sites[f"z{l}"].nets
        if l == 1:
            yield ref.p1_loc, prior[0].const
            yield ref.p1_raw, prior[1].const
            yield ref.f1_shift, bij[0].const
            yield ref.f1_raw, bij[1].const
            yield ref.f1_u, bij[2].const
        else:
            yield ref.p_loc[i - 1], prior[0].net
            yield ref.p_scale[i - 1], prior[1].net
            yield ref.f_shift[i - 1], bij[0].net
            yield ref.f_raw[i - 1], bij[1].net
            yield ref.f_u[i - 1], bij[2].net
    yield ref.decoder, sites[program.observed[0]].net.net


def parameter_pairs(program, ref: SeReVAE) -> list[tuple[nn.Parameter, nn.Parameter]]:
    """Every parameter of ``ref`` with the program parameter it stands for (same shape)."""
    pairs = []
    for dst, src in _correspondence(program, ref):
        if isinstance(dst, nn.Parameter):
            pairs.append((dst, src))
            continue
        d, s = _mlp_layers(dst), _mlp_layers(src)
        if [type(m) for m in d] != [type(m) for m in s]:
            raise ValueError(f"layer mismatch: {[type(m).__name__ for m in d]} vs {[type(m).__name__ for m in s]}")
        for a, b in zip(d, s):
            pairs += [(a.weight, b.weight), (a.bias, b.bias)]
    return pairs


@torch.no_grad()
def load_from_program(program, reference: SeReVAE | None = None) -> SeReVAE:
    """A :class:`SeReVAE` holding the weights of a compiled ``sere_mlp_mnist`` program.

    Built with the program's dtype/device (or refreshes ``reference``); every parameter
    and batch-norm buffer is copied, each reference parameter exactly once, and the
    parameter counts are checked to be equal.  The train/eval mode is copied too.
    """
    L = len(program.latents)
    x_dim = program.graph.nodes[program.observed[0]].dim
    dim = program.graph.nodes[program.latents[0]].dim
    p0 = next(program.parameters())
    ref = reference or SeReVAE(x_dim=x_dim, layers=L, dim=dim).to(dtype=p0.dtype, device=p0.device)
    copied = set()
    for dst, src in _correspondence(program, ref):
        if isinstance(dst, nn.Parameter):
            if dst.numel() != src.numel():
                raise ValueError(f"size mismatch {tuple(dst.shape)} vs {tuple(src.shape)}")
            dst.copy_(src.reshape(dst.shape))
            copied.add(id(dst))
            continue
        d, s = _mlp_layers(dst), _mlp_layers(src)
        if [type(m) for m in d] != [type(m) for m in s]:
            raise ValueError(f"layer mismatch: {[type(m).__name__ for m in d]} vs {[type(m).__name__ for m in s]}")
        for a, b in zip(d, s):
            a.load_state_dict(b.state_dict())  # strict: same keys and shapes, incl. running stats
            copied.update(id(p) for p in a.parameters())
    params = list(ref.parameters())
    if len(copied) != len(params) or any(id(p) not in copied for p in params):
        raise ValueError("some reference parameters have no counterpart in the program")
    n_ref, n_prog = count_parameters(ref), count_parameters(program)
    if n_ref != n_prog:
        raise ValueError(f"parameter counts differ: reference {n_ref}, program {n_prog}")
    ref.train(program.training)
    return ref


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
