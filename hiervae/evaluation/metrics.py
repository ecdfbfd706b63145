"""Evaluation of a trained program on a data split.

* IW log-likelihood per data point (:func:`~hiervae.evaluation.iw.iw_log_likelihood`),
  reported as mean and standard error over the split;
* the ELBO (one guide sample per point, analytic KL where the caller says it is valid)
  and its per-latent KL terms (means);
* bits per dimension of the IW log-likelihood and the ELBO, for 8-bit images
  dequantised to [0, 1]^D (``data.dequantize: uniform``; ``ModelGraph.pixel_dims``):
  ``-(log p(v) - D log 256) / (D log 2)`` (:func:`hiervae.data.dequantize.bits_per_dim`);
* active units (Burda et al. 2016): unit ``u`` of a latent is active when
  ``Var_x(E_{q(u|x)}[u]) > threshold`` (0.01).  ``E_q[u | x]`` is estimated by averaging
  over ``posterior_samples`` guide samples of the latent's conditioning inputs the
  family's own mean where it has one (Gaussian factors: the loc, a Rao-Blackwellised
  estimate), else the sample itself (IAF factors).  The variance over ``x`` is the
  unbiased variance over the split, accumulated in float64 batch by batch.

Everything is batched with ``eval.batch_size`` examples and ``eval.chunk_size``
particles at a time, so peak memory does not grow with the split or with ``K``.  The
split is copied to the program's device once when it fits there
(:func:`hiervae.data.place_tensor`), else batches are copied asynchronously from pinned
host memory.  Evaluation runs in float32 whatever ``train.precision`` says: the IW
estimate is the reported number, and bf16 matmuls shift it by round-off that is not
yet characterised well enough to report (docs/performance.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine

from hiervae.data import place_tensor
from hiervae.data.observations import Observations
from hiervae.data.dequantize import bits_per_dim
from hiervae.evaluation.iw import inference_mode, iw_log_likelihood, program_device
from hiervae.language.schema import EvalSpec
from hiervae.program.objective import elbo_terms
from hiervae.program.program import Program


@dataclass
class EvalResult:
    split: str
    examples: int
    importance_samples: int
    iw_log_likelihood: float  # mean over the split, nats
    iw_log_likelihood_stderr: float
    elbo: float
    elbo_stderr: float
    reconstruction: float  # mean log p(x | latents) term of the ELBO
    kl: dict[str, float]  # latent -> mean KL (or mean log q - log p)
    kl_total: float
    analytic_kl: bool
    units: dict[str, int]  # latent -> number of units
    active_units: dict[str, int]  # latent -> number of active units
    active_units_threshold: float
    unit_variance: dict[str, list[float]] = field(default_factory=dict)  # Var_x E_q[u | x]
    seconds: float = 0.0
    # 8-bit images dequantised to [0, 1]^D: the same figures in bits/dim (else None)
    iw_bits_per_dim: float | None = None
    iw_bits_per_dim_stderr: float | None = None
    elbo_bits_per_dim: float | None = None
    per_example: dict[str, list[float]] | None = field(default=None, repr=False)  # iw_log_likelihood, elbo per example

    @property
    def active_total(self) -> int:
        return sum(self.active_units.values())

    @property
    def units_total(self) -> int:
        return sum(self.units.values())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("per_example")
        out["active_units_total"] = self.active_total
        out["units_total"] = self.units_total
        return out

    def format_table(self) -> str:
        lines = [
            f"{self.split}: {self.examples} examples, {self.importance_samples} importance samples ({self.seconds:.1f} s)",
            f"  IW log-likelihood  {self.iw_log_likelihood:12.3f} +- {self.iw_log_likelihood_stderr:.3f} nats"
            + ("" if self.iw_bits_per_dim is None else f"  ({self.iw_bits_per_dim:.4f} +- {self.iw_bits_per_dim_stderr:.4f} bits/dim)"),
            f"  ELBO               {self.elbo:12.3f} +- {self.elbo_stderr:.3f} nats"
            + ("" if self.elbo_bits_per_dim is None else f"  ({self.elbo_bits_per_dim:.4f} bits/dim)")
            + f"  ({'analytic' if self.analytic_kl else 'Monte Carlo'} KL)",
            f"  reconstruction     {self.reconstruction:12.3f}",
            f"  KL total           {self.kl_total:12.3f}",
        ]
        width = max([12, *(len(n) for n in self.kl)])
        lines += ["", f"  {'latent':<{width}} {'KL':>10} {'active units':>14}"]
        for name in self.kl:
            au = f"{self.active_units[name]}/{self.units[name]}"
            lines.append(f"  {name:<{width}} {self.kl[name]:10.3f} {au:>14}")
        lines.append(f"  {'total':<{width}} {self.kl_total:10.3f} {f'{self.active_total}/{self.units_total}':>14}")
        return "\n".join(lines)


def posterior_means(program: Program, x, samples: int = 10) -> dict[str, torch.Tensor]:
    """Estimate of ``E_q[latent | x]`` per latent, each ``(B, dim)``, from ``samples`` guide samples.

    Call under :func:`~hiervae.evaluation.iw.inference_mode`.
    """
    with pyro.plate("particles", samples, dim=-2):
        guide = poutine.trace(program.guide).get_trace(x)
    means = {}
    for name in program.latents:
        site = guide.nodes[name]
        try:
            mean = site["fn"].mean
        except (NotImplementedError, AttributeError):
            mean = site["value"]
        mean = mean.expand(site["value"].shape)
        means[name] = mean.reshape(samples, program.observations(x).size, -1).mean(0)
    return means


class _Moments:
    """Running count, sum and sum of squares (float64) of rows of a ``(n, d)`` stream."""

    def __init__(self):
        self.n, self.sum, self.sumsq = 0, None, None

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach().double()
        s, ss = rows.sum(0), rows.pow(2).sum(0)
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq = ss if self.sumsq is None else self.sumsq + ss
        self.n += rows.shape[0]

    def mean(self) -> torch.Tensor:
        return self.sum / self.n

    def variance(self) -> torch.Tensor:
        """Unbiased variance (0 with a single row)."""
        if self.n < 2:
            return torch.zeros_like(self.sum)
        return ((self.sumsq - self.sum.pow(2) / self.n) / (self.n - 1)).clamp(min=0)


def evaluate_split(
    program: Program,
    data,
    eval_spec: EvalSpec,
    split: str = "test",
    *,
    analytic_kl: bool = True,
    importance_samples: int | None = None,
    limit: int | None = None,
    posterior_samples: int = 10,
    progress: bool = False,
    pixel_dims: int | None = None,
    per_example: bool = False,
) -> EvalResult:
    """IW log-likelihood, ELBO, KL per latent and active units of ``program`` on a split.

    ``data`` is the run's data (:class:`~hiervae.data.binding.BoundData` or a
    :class:`~hiervae.data.DataSplits`; ``split`` names the split), observations (one
    ``(N, D)`` tensor per observed node) or, for a model with one observed node, a tensor.  ``importance_samples`` overrides ``eval_spec.importance_samples``;
    ``limit`` evaluates the first ``limit`` examples only.  Batches of
    ``eval_spec.batch_size`` examples, ``eval_spec.chunk_size`` particles at a time.
    A split that is re-sampled every training batch (dynamic binarisation or
    dequantisation of ``train``) is scored on one fixed sample (``DataSplits.fixed``).
    ``pixel_dims`` (``D``, ``ModelGraph.pixel_dims``) adds bits/dim to the result;
    ``per_example`` keeps every example's IW log-likelihood and ELBO (``result.per_example``).
    """
    from tqdm import tqdm

    if not isinstance(data, (torch.Tensor, dict)):  # the split as models are scored on it
        data = data.fixed(split) if hasattr(data, "fixed") else getattr(data, split)
    x_all = program.observations(data)
    if limit is not None:
        x_all = x_all.rows(slice(0, limit))
    n = x_all.size
    if n == 0:
        raise ValueError(f"the {split} split is empty")
    K = importance_samples or eval_spec.importance_samples
    device = program_device(program)
    x_all = Observations({k: place_tensor(v, device) for k, v in x_all.items()})  # on the device where it fits
    bs = eval_spec.batch_size
    start = time.perf_counter()

    iw = _Moments()
    elbo = _Moments()
    rec = _Moments()
    kl = {name: _Moments() for name in program.latents}
    au = {name: _Moments() for name in program.latents}
    batches = range(0, n, bs)
    rows: dict[str, list[float]] = {"iw_log_likelihood": [], "elbo": []}
    with inference_mode(program), tqdm(total=n, desc=f"eval {split}", unit="ex", disable=not progress, leave=False) as bar:
        for i in batches:
            x = x_all.rows(slice(i, i + bs)).to(device, non_blocking=True)
            ll = iw_log_likelihood(program, x, K, eval_spec.chunk_size, compile=eval_spec.compile)
            iw.add(ll[:, None])
            terms = elbo_terms(program, x, analytic_kl=analytic_kl)
            elbo.add(terms.elbo[:, None])
            if per_example:
                rows["iw_log_likelihood"] += ll.double().tolist()
                rows["elbo"] += terms.elbo.double().tolist()
            rec.add(terms.log_likelihood[:, None])
            for name, value in terms.kl.items():
                kl[name].add(value.reshape(x.size, -1).sum(-1, keepdim=True))
            for name, mean in posterior_means(program, x, posterior_samples).items():
                au[name].add(mean)
            bar.update(x.size)

    def stderr(m: _Moments) -> float:
        return math.sqrt(m.variance().item() / m.n)

    variances = {name: m.variance() for name, m in au.items()}
    threshold = eval_spec.active_units_threshold
    bpd = {}
    if pixel_dims:
        bpd = dict(iw_bits_per_dim=bits_per_dim(iw.mean().item(), pixel_dims),
                   iw_bits_per_dim_stderr=stderr(iw) / (pixel_dims * math.log(2.0)),
                   elbo_bits_per_dim=bits_per_dim(elbo.mean().item(), pixel_dims))
    return EvalResult(
        split=split,
        examples=n,
        importance_samples=K,
        iw_log_likelihood=iw.mean().item(),
        iw_log_likelihood_stderr=stderr(iw),
        elbo=elbo.mean().item(),
        elbo_stderr=stderr(elbo),
        reconstruction=rec.mean().item(),
        kl={name: m.mean().item() for name, m in kl.items()},
        kl_total=sum(m.mean().item() for m in kl.values()),
        analytic_kl=analytic_kl,
        units={name: int(v.numel()) for name, v in variances.items()},
        active_units={name: int((v > threshold).sum()) for name, v in variances.items()},
        active_units_threshold=threshold,
        unit_variance={name: v.tolist() for name, v in variances.items()},
        seconds=time.perf_counter() - start,
        **bpd,
        per_example=rows if per_example else None,
    )
