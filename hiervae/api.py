"""The Python API: a compiled spec or a trained run as one object, :class:`Model`.

    model = hiervae.compile("specs/quickstart.yaml")      # untrained
    model = hiervae.load_run("runs/quickstart")            # the run's weights (best=True: best.pt)
    x = model.data("test")                                 # observations of a split
    model.encode(x) / model.decode({...}) / model.sample(n)
    model.log_likelihood(x, samples=1000) / model.elbo(x)  # per example
    model.program.model, model.program.guide               # the Pyro pair, for your own inference

Every method runs in eval mode without gradients (``inference_mode``); the program itself
is an ``nn.Module`` to train as you like.  Documented with executed examples in
``docs/api.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch.distributions import Distribution

from hiervae.data.loading import load_data
from hiervae.data.observations import Observations
from hiervae.errors import HiervaeError
from hiervae.evaluation.iw import inference_mode, iw_log_likelihood, program_device
from hiervae.evaluation.samples import model_trace
from hiervae.graph import ModelGraph
from hiervae.graph.faithfulness import Report
from hiervae.graph.faithfulness import check as check_graph
from hiervae.graph.ir import LATENT, OBSERVED, TRANSFORM
from hiervae.policy import load_checked
from hiervae.program import Program, build_program
from hiervae.program.objective import ElboTerms, elbo_terms
from hiervae.run import RunDir


class Model:
    """A spec's program (with a run's weights, if loaded from one) and what you do with it."""

    def __init__(self, graph: ModelGraph, program: Program, analytic_kl: bool, run: RunDir | None = None):
        self.graph, self.program, self.analytic_kl, self.run = graph, program, analytic_kl, run

    @property
    def latents(self) -> tuple[str, ...]:
        return tuple(self.program.latents)

    @property
    def observed(self) -> tuple[str, ...]:
        return tuple(self.program.observed)

    # ---------------------------------------------------------------- data
    def data(self, split: str = "test", data_dir: str | Path | None = None, download: bool = True) -> Observations:
        """A split of the spec's data as the model is scored on it (one tensor per observed
        node; a fixed binarisation or dequantisation of ``train``)."""
        if split not in ("train", "valid", "test"):
            raise HiervaeError(f"unknown split {split!r} (known: train, valid, test)")
        data = load_data(self.graph, data_dir=data_dir, download=download)
        return self.program.observations(data.fixed(split))

    def _observations(self, x) -> Observations:
        return self.program.observations(x).to(program_device(self.program))

    # ---------------------------------------------------------------- inference
    def encode(self, x, samples: int | None = None) -> dict[str, torch.Tensor]:
        """The guide on ``x``: every latent and transform node.  ``samples=None``: posterior
        means ``(B, dim)`` (each factor's mean, averaged over 32 draws of the layers above
        it); ``samples=K``: ``K`` joint posterior samples, ``(K, B, dim)``."""
        data = self._observations(x)
        with inference_mode(self.program):
            guide, model = self.program.walk(data, 32 if samples is None else samples)
        nodes = [n for n, v in self.graph.nodes.items() if v.kind in (LATENT, TRANSFORM)]
        values = model.values  # the guide's latents and every transform of them
        if samples is not None:
            return {n: values[n] for n in nodes}
        out = {}
        for n in nodes:
            value = values[n]
            if n in guide.dists:
                try:
                    value = guide.dists[n].mean.expand(value.shape)
                except (NotImplementedError, AttributeError):  # a family without a closed-form mean
                    pass
            out[n] = value.mean(0)
        return out

    def decode(self, latents: Mapping[str, torch.Tensor]) -> dict[str, Distribution]:
        """p(observed | the given latents or transforms), the other latents drawn from the
        model: one distribution per observed node, batch ``(B,)`` (``.mean`` is the
        decoder's mean).  Observed nodes that others depend on (a label) are drawn too."""
        unknown = [n for n in latents if n not in self.graph.nodes or self.graph.nodes[n].kind == OBSERVED]
        if unknown:
            known = ", ".join(n for n, v in self.graph.nodes.items() if v.kind != OBSERVED)
            raise HiervaeError(f"decode takes latent or transform nodes: {', '.join(unknown)} is not one (known: {known})")
        sizes = {v.shape[0] for v in latents.values()}
        if len(sizes) != 1:
            raise HiervaeError(f"decode: every given node needs the same batch size, got {sorted(sizes)}")
        trace = model_trace(self.program, sizes.pop(), latents)
        return {o: trace.nodes[o]["fn"] for o in self.observed}

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` ancestral samples from the model: every node's value, ``(n, ...)``."""
        trace = model_trace(self.program, n)
        return {name: trace.nodes[name]["value"] for name in self.graph.nodes}

    # ---------------------------------------------------------------- scores
    def log_likelihood(self, x, samples: int = 1000, chunk: int = 100) -> torch.Tensor:
        """``(B,)``: the importance-weighted estimate of log p(x) per example (nats), every
        observed node included; float64 accumulation."""
        return iw_log_likelihood(self.program, self._observations(x), samples, chunk)

    def elbo(self, x) -> ElboTerms:
        """Per-example ELBO terms (``.elbo``, ``.log_likelihood``, ``.kl[latent]``), with the
        KL the run trained with (closed form where valid)."""
        with inference_mode(self.program):
            return elbo_terms(self.program, self._observations(x), self.analytic_kl)


def compile(spec: str | Path, overrides: Iterable[str] = (), device: str | torch.device = "cpu") -> Model:
    """A spec file (with ``--set``-style ``overrides``) compiled to an untrained :class:`Model`."""
    _, graph, objective = load_checked(spec, overrides)
    return Model(graph, build_program(graph).to(device), objective.analytic_kl)


def check(spec: str | Path, overrides: Iterable[str] = ()) -> Report:
    """``hiervae check`` as a value: the :class:`~hiervae.graph.faithfulness.Report`
    (``.faithful``, ``.factors`` with each failing factor's open path and suggested fix)."""
    _, graph, _ = load_checked(spec, overrides)
    return check_graph(graph, max_suggestions=None)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", best: bool = False) -> Model:
    """A run directory written by ``hiervae fit``: its spec and checkpoint (``best``: ``best.pt``)."""
    run = RunDir(run_dir).require()
    trained = run.load_trained(device, best=best)
    return Model(trained.graph, trained.program, trained.analytic_kl, run)


__all__ = ["Model", "check", "compile", "load_run"]
