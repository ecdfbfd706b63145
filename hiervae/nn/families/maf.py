"""The ``maf`` likelihood: ``p(x | context)`` as a conditional masked autoregressive flow
over a context-dependent base (paper section 4.2, appendix 9).

Density conventions (all in nats, natural log)
----------------------------------------------
Pixels ``k in {0..255}`` are dequantised to ``v = (k + u) / 256 in [0, 1)``,
``u ~ U[0, 1)`` (:func:`dequantize`), then mapped to logit space
``y = logit(alpha + (1 - alpha) v)`` (the paper's formula, appendix 9.1, alpha = 0.05)::

    log p(v)   = log p(y) + log|dy/dv|,  log|dy/dv| = sum_i log(1 - alpha) - log s_i - log(1 - s_i),
                 s = alpha + (1 - alpha) v                       (density on [0, 1]^D)
    log p(256 v) = log p(v) - D log 256                          (density on [0, 256)^D)
    bits/dim   = -(log p(v) - D log 256) / (D log 2)             (:func:`bits_per_dim`)

:class:`MAFLikelihood` with ``logit_alpha`` set models ``v`` (dequantised values in
[0, 1]) and includes the logit Jacobian in ``log_prob`` (:mod:`hiervae.nn.logit_space`), so
its ``log_prob`` is ``log p(v)`` and :func:`hiervae.data.dequantize.bits_per_dim` applies
directly.  The dequantisation noise is
*not* added by the distribution (a ``log_prob`` must be a deterministic function of
its argument): the data pipeline adds it (``data.dequantize: uniform``, see
:mod:`hiervae.data.dequantize`).
Without ``logit_alpha`` the flow models ``x`` in R^D as given.
"""

from __future__ import annotations

from typing import Annotated, Literal, Sequence

import pyro.distributions as dist
import torch
from pydantic import Field
from pyro.distributions.conditional import ConditionalDistribution
from torch import nn
from torch.distributions import constraints

from hiervae.language.net import Net
from hiervae.language.schema import MAX_COUNT, MAX_SIZE
from hiervae.nn.families.normal import VARIANCE_FLOOR, diag_normal, raw_of_one, scale_from_raw, variance_from_raw
from hiervae.nn.logit_space import from_logit_space, logit_transform
from hiervae.nn.networks.made import ConditionalMADE
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import FAMILIES, Family

BASES = ("unit_rank_normal", "normal", "std_normal")
MADE_CONTEXTS = ("all", "split", "none")


def _expand_context(context: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    if context is None or context.shape[-1] == 0:
        return None
    return context.expand(*torch.broadcast_shapes(context.shape[:-1], x.shape[:-1]), -1)


class MAFStep(nn.Module):
    """One conditional MAF step (Papamakarios et al. 2017, eq. 3-4).

    Generative direction ``x_i = u_i exp(a_i) + m_i`` with ``(m, a) = MADE(x_<i, context)``;
    density direction ``u = (x - m(x)) exp(-a(x))`` in one pass, ``log|du/dx| = -sum a``.
    ``a`` is the raw MADE output (unbounded), as in the MAF paper.

    ``identity_init`` zeroes the MADE's output layer, so the step starts as the exact
    identity (``m = a = 0``) and learns away from it; otherwise the whole MADE is
    Glorot-initialised (the paper's Table 8, literally).  See :class:`MAFLikelihood`
    for why the identity start is the default.
    """

    def __init__(self, dim: int, context_features: int, identity_init: bool = True, **made_options):
        super().__init__()
        self.made = ConditionalMADE(dim, context_features, params_per_dim=2,
                                    output_init="zero" if identity_init else "glorot", **made_options)

    def density(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self.made(x, _expand_context(context, x)).unbind(-2)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(-1)

    def generate(self, u: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Sequential inversion: ``D`` MADE passes, variable ``order[j]`` fixed at pass ``j``."""
        context = _expand_context(context, u)
        if context is not None:
            u = u.expand(*context.shape[:-1], -1)
        x = torch.zeros_like(u)
        weights = self.made.masked_weights()
        for i in self.made.order.tolist():
            shift, log_scale = self.made(x, context, weights).unbind(-2)
            x = x.clone()
            x[..., i] = u[..., i] * torch.exp(log_scale[..., i]) + shift[..., i]
        return x


class BatchNormStep(nn.Module):
    """Batch normalisation as a bijector (MAF paper, appendix B), density direction::

        u = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta,
        log|du/dx| = sum(log_gamma - 0.5 log(var + eps)).

    In training mode ``mean``/``var`` are the statistics of the batch being scored (all
    leading dims pooled; the log-determinant uses those same statistics, so it is
    exact for the map actually applied) and the running averages are updated with
    ``momentum``; in eval mode, or for fewer than two rows, the running averages are
    used.  The generative direction (sampling) always uses the running averages.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = x.reshape(-1, x.shape[-1])
        if self.training and rows.shape[0] > 1:
            mean, var = rows.mean(0), rows.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(rows.var(0, unbiased=True).detach(), self.momentum)
            return mean, var
        return self.running_mean, self.running_var

    def density(self, x: torch.Tensor, context=None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = self._stats(x)
        u = (x - mean) * torch.rsqrt(var + self.eps) * self.log_gamma.exp() + self.beta
        log_det = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum(-1)
        return u, log_det.expand(x.shape[:-1])

    def generate(self, u: torch.Tensor, context=None) -> torch.Tensor:
        scale = torch.sqrt(self.running_var + self.eps) * torch.exp(-self.log_gamma)
        return (u - self.beta) * scale + self.running_mean


class FlowDistribution(dist.TorchDistribution):
    """``x = g_T(... g_1(u0))``, ``u0 ~ base``, for steps already bound to their contexts.

    ``steps`` is a list of ``(module, context)`` with ``module.density(x, context) ->
    (u, log|du/dx|)`` and ``module.generate(u, context) -> x``.  ``log_prob`` runs the
    density direction (one pass per step, exact); ``rsample`` the generative direction
    (sequential for MAF steps).  With ``logit_alpha`` the event is ``v`` in [0, 1]^D and
    ``y = logit(alpha + (1 - alpha) v)`` is what the steps model (module docstring).
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, base: dist.TorchDistribution, steps: list, logit_alpha: float | None = None,
                 validate_args: bool | None = False):
        self.base, self.steps, self.logit_alpha = base, list(steps), logit_alpha
        super().__init__(base.batch_shape, base.event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        if self.logit_alpha is None:
            return constraints.real_vector
        return constraints.independent(constraints.interval(-self.logit_alpha / (1 - self.logit_alpha), 1.0), 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self.logit_alpha is None:
            u, total = value, 0.0
        else:
            u, total = logit_transform(value, self.logit_alpha)
        for module, context in reversed(self.steps):
            u, log_det = module.density(u, context)
            total = total + log_det
        return self.base.log_prob(u) + total

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        u = self.base.rsample(sample_shape)
        for module, context in self.steps:
            u = module.generate(u, context)
        return u if self.logit_alpha is None else from_logit_space(u, self.logit_alpha)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)


@FAMILIES.register("maf")
class MAFLikelihood(Family, ConditionalDistribution, nn.Module):
    """``p(x | context)``: conditional MAF over a context-dependent base (paper section 4.2).

    ``flows x mades_per_flow`` :class:`MAFStep`\\ s (Table 9: 2 x 5, MADEs of 2 x 1024
    relu units, random input order, "equal" hidden degrees), with a
    :class:`BatchNormStep` between consecutive steps when ``batch_norm``.  Orders: with
    ``random_order`` MADE ``k`` gets its own random order (seed ``seed + k``), which
    replaces explicit permutations; otherwise orders alternate natural / reversed.

    Base (``base``): ``unit_rank_normal`` = ``N(loc, diag(d) + u u^T)`` (Pyro's
    ``LowRankMultivariateNormal``, rank 1; ``d`` through :func:`variance_from_raw`),
    ``normal`` = diagonal, ``std_normal`` = N(0, I).  Its parameters come from three
    separate MLPs (``base_hidden``) of the first ``base_context`` context features
    (``None``: all of them), or are learned constants without context.

    MADE context (``made_context``): ``all`` = every MADE reads the whole context;
    ``split`` = the features after the base's ``base_context`` leading ones are cut
    into ``mades_per_flow`` equal chunks and MADE ``k`` of every flow reads chunk ``k``
    (the paper's "each latent code conditioning its respective MADE layer": with
    ``given: [gamma(L), z1..z(L)]``, ``base_context = dim(gamma)``, MADE ``l`` reads
    ``z(l)`` and the base reads ``gamma(L)``); ``none`` = unconditional MADEs.

    ``logit_alpha``: model ``v`` in [0, 1]^D through ``y = logit(alpha + (1 - alpha) v)``
    (see the module docstring for the convention; the caller dequantises).
    Initialisation (``identity_init``, default on): every MADE's output layer starts at
    zero, so every MAF step starts as the identity; with fresh running statistics the
    batch-norm steps are the identity too in eval mode, so the freshly built flow's
    ``log_prob`` is the base density of ``y`` plus the logit Jacobian, finite for every
    ``v`` in the support.  The paper's literal initialisation (Table 8: Glorot-normal
    everywhere, ``identity_init: false``) is not: a relu MADE with zero biases is
    positively homogeneous, so its raw log-scale grows linearly with ``|x|`` and
    ``x exp(-a(x))`` compounds over the 10 steps; on logit-space pixels near 255
    (``y ~ 6``) the shipped CIFAR-10 flow overflows to inf/NaN in eval mode.  Starting
    flows at the identity is the usual remedy (nflows
    zero-initialises the last layer of its MADE residual blocks, Glow its coupling
    networks' last convolution); only the output layer departs from Table 8, and the
    model family (unbounded affine MAF steps, as in the MAF paper) is unchanged.

    Networks: ``net`` is every MADE's (``mlp`` widths and ``activation``); the base's
    networks are ``base_hidden`` / ``base_activation`` (options).  The ``batch_norm`` option
    is the bijector between steps, not a network setting.
    """

    roles = frozenset({"likelihood"})
    continuous = True
    net_keys = frozenset({"mlp", "activation"})
    net_defaults = Net(layers=(1024, 1024), activation="relu")
    doc = "conditional masked autoregressive flow over a unit-rank Gaussian base"

    @classmethod
    def check_build(cls, dim, context_features, net, options, filled) -> None:
        base, made_context = options.get("base", "unit_rank_normal"), options.get("made_context", "all")
        flows, mades = options.get("flows", 2), options.get("mades_per_flow", 5)
        logit_alpha, base_context = options.get("logit_alpha"), options.get("base_context")
        if base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {base!r}")
        if made_context not in MADE_CONTEXTS:
            raise ValueError(f"made_context must be one of {', '.join(MADE_CONTEXTS)}, got {made_context!r}")
        if flows < 1 or mades < 1:
            raise ValueError("flows and mades_per_flow must be >= 1")
        if logit_alpha is not None and not 0 <= logit_alpha < 1:
            raise ValueError(f"logit_alpha must be in [0, 1), got {logit_alpha}")
        n_base = context_features if base_context is None else base_context
        if not 0 <= n_base <= context_features:
            raise ValueError(f"base_context must be in [0, {context_features}] (the context's size), got {base_context}")
        if not (net or cls.net_defaults).layers and (net or cls.net_defaults).layers is not None:
            raise ValueError("every MADE needs at least one hidden layer (net: {mlp: [...]})")
        if made_context == "split":
            start = 0 if base_context is None else base_context
            rest = context_features - start
            if rest % mades:
                raise ValueError(f"made_context 'split' needs the {rest} context features after the base's {start} "
                                 f"to divide into {mades} equal chunks (mades_per_flow)")

    def __init__(
        self,
        dim: int,
        context_features: int,
        net: Net | None = None,
        flows: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 2,
        mades_per_flow: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 5,
        batch_norm: bool = True,
        base: Literal["unit_rank_normal", "normal", "std_normal"] = "unit_rank_normal",
        logit_alpha: Annotated[float, Field(ge=0, lt=1)] | None = None,
        random_order: bool = True,
        seed: Annotated[int, Field(ge=0)] = 0,
        base_context: Annotated[int, Field(ge=0, le=MAX_SIZE)] | None = None,
        made_context: Literal["all", "split", "none"] = "all",
        base_hidden: Sequence[Annotated[int, Field(ge=1, le=MAX_SIZE)]] = (512,),
        base_activation: str = "relu",
        variance_floor: Annotated[float, Field(ge=0)] = VARIANCE_FLOOR,
        batch_norm_momentum: Annotated[float, Field(gt=0, le=1)] = 0.1,
        identity_init: bool = True,
    ):
        super().__init__()
        net = self.network(net)
        hidden, activation = net.layers, net.activation
        self.check_build(dim, context_features, net, dict(base=base, made_context=made_context, flows=flows,
                         mades_per_flow=mades_per_flow, logit_alpha=logit_alpha, base_context=base_context,
                         base_hidden=base_hidden), {})
        n_base = context_features if base_context is None else base_context
        self.dim, self.context_features = dim, context_features
        self.base_kind, self.logit_alpha, self.variance_floor = base, logit_alpha, variance_floor
        self.base_features = n_base
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

        # Context slices: base reads [0, n_base); MADE k reads made_slices[k].
        if made_context == "all":
            made_slices = [(0, context_features)] * mades_per_flow
        elif made_context == "none":
            made_slices = [(0, 0)] * mades_per_flow
        else:
            start = 0 if base_context is None else base_context
            size = (context_features - start) // mades_per_flow
            made_slices = [(start + k * size, start + (k + 1) * size) for k in range(mades_per_flow)]
        self.made_slices = made_slices

        if base == "std_normal":
            self.base_nets = nn.ModuleList()
        else:
            base_net = Net(layers=tuple(base_hidden), activation=base_activation)
            inits = [torch.zeros(dim), torch.full((dim,), raw_of_one(variance_floor))]
            if base == "unit_rank_normal":
                inits.append(nn.init.xavier_normal_(torch.empty(dim, 1)).flatten())
            self.base_nets = nn.ModuleList(ParamNet(n_base, init, base_net) for init in inits)

        steps: list[nn.Module] = []
        total = flows * mades_per_flow
        for k in range(total):
            lo, hi = made_slices[k % mades_per_flow]
            order = None if random_order else (torch.arange(dim).flip(0) if k % 2 else torch.arange(dim))
            steps.append(MAFStep(dim, hi - lo, hidden=tuple(hidden), activation=activation,
                                 random_order=random_order, seed=seed + k, order=order,
                                 identity_init=identity_init))
            if batch_norm and k < total - 1:
                steps.append(BatchNormStep(dim, momentum=batch_norm_momentum))
        self.steps = nn.ModuleList(steps)
        self._made_index = [i for i, s in enumerate(steps) if isinstance(s, MAFStep)]

    def base_distribution(self, context: torch.Tensor | None) -> dist.TorchDistribution:
        if self.base_kind == "std_normal":
            shape = (*(() if context is None else context.shape[:-1]), self.dim)
            return diag_normal(self._zero.expand(shape), (self._zero + 1).expand(shape))
        base_ctx = None if context is None else context[..., : self.base_features]
        params = [net(base_ctx) for net in self.base_nets]
        if self.base_kind == "normal":
            return diag_normal(params[0], scale_from_raw(params[1], self.variance_floor))
        loc, raw, factor = params
        return dist.LowRankMultivariateNormal(loc, factor.unsqueeze(-1), variance_from_raw(raw, self.variance_floor))

    def condition(self, context: torch.Tensor | None = None) -> FlowDistribution:
        if context is not None and context.shape[-1] != self.context_features:
            raise ValueError(f"context has {context.shape[-1]} features, expected {self.context_features}")
        if context is None and self.context_features:
            raise ValueError(f"a context with {self.context_features} features is required")
        bound = []
        made_k = 0
        for module in self.steps:
            ctx = None
            if isinstance(module, MAFStep):
                lo, hi = self.made_slices[made_k % len(self.made_slices)]
                made_k += 1
                ctx = None if (context is None or hi == lo) else context[..., lo:hi]
            bound.append((module, ctx))
        return FlowDistribution(self.base_distribution(context), bound, self.logit_alpha)
