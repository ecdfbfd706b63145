"""Run policy: each decision a run makes is made here, once, and everyone reads it.

* :func:`select_analytic_kl` -- whether the ELBO uses closed-form KL terms.  ``fit``
  decides and saves the decision in every checkpoint; ``eval`` uses the saved decision
  (:meth:`hiervae.run.RunDir.load_trained`), so a run is scored with the objective it
  trained on.  ``train.elbo``: ``trace`` never, ``mean_field`` always (an error where the
  model/guide pair does not allow it), ``auto`` exactly where ``hiervae check`` says it is
  valid: the structure allows it (:func:`~hiervae.graph.faithfulness.mean_field_problems`)
  and every (guide, prior) family pair has a closed form
  (:func:`~hiervae.graph.faithfulness.closed_form_kl_missing`).
* :func:`select_objective` -- the engine, the ELBO and its options (particles, alpha, DReG)
  and the optimiser a run trains with, or one located error for a combination that
  cannot run; ``check`` calls it too, so it refuses what ``fit`` would.
* :func:`resolve_device` -- the torch device of ``--device`` (one message for every
  command when CUDA is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from hiervae.errors import Location, RunError, SpecError
from hiervae.graph.build import build_graph
from hiervae.graph.faithfulness import closed_form_kl_missing, mean_field_problems
from hiervae.graph.ir import ModelGraph
from hiervae.language import Spec, load_spec

DEVICE_TYPES = ("cpu", "cuda")


def analytic_kl_problems(graph: ModelGraph) -> list[str]:
    """Why closed-form KL terms would not give the model's ELBO (empty: they would)."""
    problems = list(mean_field_problems(graph))
    missing = closed_form_kl_missing(graph)
    if missing:
        problems.append(f"no closed-form KL for family {', '.join(missing)}")
    return problems


def select_analytic_kl(graph: ModelGraph, where: Location | None = None) -> bool:
    """``train.elbo`` -> analytic KL or not (see the module docstring)."""
    mode = graph.train.elbo
    if mode == "trace":
        return False
    problems = analytic_kl_problems(graph)
    if mode == "mean_field" and problems:
        raise SpecError(f"mean_field (analytic KL) is not valid for this model ({'; '.join(problems)}); "
                        f"use auto or trace", where)
    return not problems


PYRO_ONLY_ELBOS = ("tracegraph", "renyi")


@dataclass(frozen=True)
class Objective:
    """What one training step optimises, and with what."""

    engine: str  # direct | pyro
    elbo: str  # mean_field | trace | tracegraph | renyi | iwae (auto resolved)
    analytic_kl: bool
    particles: int = 1
    alpha: float = 0.0  # renyi / iwae (0)
    dreg: bool = False

    def pyro_elbo(self) -> Any:
        """The ``pyro.infer`` ELBO of this objective (either engine computes its loss)."""
        import pyro.infer as infer

        if self.elbo in ("renyi", "iwae"):
            return infer.RenyiELBO(alpha=self.alpha, num_particles=self.particles)
        cls = {"mean_field": infer.TraceMeanField_ELBO, "trace": infer.Trace_ELBO,
               "tracegraph": infer.TraceGraph_ELBO}[self.elbo]
        return cls(num_particles=self.particles)


def select_objective(graph: ModelGraph, source: Any = None) -> Objective:
    """``train.engine`` / ``elbo`` / ``num_particles`` / ``renyi_alpha`` / ``dreg`` and the
    optimiser, checked together; ``source`` (a SourceMap) locates the errors."""
    t = graph.train

    def at(*key: str) -> Location | None:
        return source.at(("train", *key)) if source is not None else None

    direct = t.engine == "direct"
    if direct and t.elbo in PYRO_ONLY_ELBOS:
        hint = " (renyi with alpha 0 is iwae, which the direct engine has)" if t.elbo == "renyi" else ""
        raise SpecError(f"elbo {t.elbo} runs on Pyro's SVI: set train.engine: pyro{hint}", at("elbo"))
    if t.elbo == "renyi" and t.renyi_alpha == 1:
        raise SpecError("renyi_alpha 1 is the ELBO itself: use elbo: trace", at("renyi_alpha"))
    if t.renyi_alpha != 0 and t.elbo != "renyi":
        raise SpecError(f"renyi_alpha applies to elbo: renyi, not {t.elbo}", at("renyi_alpha"))
    if direct and t.num_particles > 1 and t.elbo != "iwae":
        raise SpecError(f"the direct engine draws one sample per data point for elbo {t.elbo}: use elbo: iwae, or "
                        f"train.engine: pyro for Pyro's num_particles", at("num_particles"))
    if t.dreg and not (direct and t.elbo == "iwae"):
        raise SpecError("dreg (doubly-reparameterised gradients) is for elbo: iwae on the direct engine", at("dreg"))
    if not direct:
        for key, why in (("free_bits", t.free_bits > 0), ("compile", t.compile)):
            if why:
                raise SpecError(f"train.{key} needs the direct engine (Pyro's ELBOs have no such option)", at(key))
    if direct and t.optimizer.name == "clipped_adam":
        raise SpecError("clipped_adam is pyro.optim.ClippedAdam: set train.engine: pyro (the direct engine has adam "
                        "and adamw, with clip_norm)", at("optimizer", "name"))
    if t.optimizer.lrd != 1 and t.optimizer.name != "clipped_adam":
        raise SpecError("lrd (learning-rate decay per step) is an option of clipped_adam", at("optimizer", "lrd"))
    if t.optimizer.lrd != 1 and t.lr_schedule != "constant":
        raise SpecError("clipped_adam's lrd and lr_schedule both set the learning rate: choose one",
                        at("optimizer", "lrd"))
    if t.free_bits > 0 and t.elbo in ("iwae", "renyi"):
        raise SpecError("free_bits acts on KL terms, which the importance-weighted bound has not", at("free_bits"))
    # the importance-weighted bounds and TraceGraph_ELBO have no closed-form KL term
    analytic = t.elbo in ("auto", "mean_field", "trace") and select_analytic_kl(graph, at("elbo"))
    elbo = t.elbo if t.elbo != "auto" else ("mean_field" if analytic else "trace")
    alpha = t.renyi_alpha if t.elbo == "renyi" else 0.0
    return Objective(t.engine, elbo, analytic, t.num_particles, alpha, t.dreg)


def load_checked(path: str | Path, overrides: Iterable[str] = ()) -> tuple[Spec, ModelGraph, Objective]:
    """A spec file (with ``--set`` overrides), its graph and its objective: everything ``fit``
    would refuse before touching data, refused here (``check``, ``hiervae.compile``)."""
    spec = load_spec(path, overrides)
    graph = build_graph(spec)
    return spec, graph, select_objective(graph, spec.source)


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``, refused with one line when this machine cannot run it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise RunError(f"--device {name}: not a device (use cpu or cuda)") from None
    if device.type not in DEVICE_TYPES:
        raise RunError(f"--device {name}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise RunError(f"--device {name}: CUDA is not available ({why}); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RunError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    return device
