"""Run policy: each decision a run makes is made here, once, and everyone reads it.

* :func:`select_analytic_kl` -- whether the ELBO uses closed-form KL terms.  ``fit``
  decides and saves the decision in every checkpoint; ``eval`` uses the saved decision
  (:meth:`hiervae.run.RunDir.load_trained`), so a run is scored with the objective it
  trained on.  ``train.elbo``: ``trace`` never, ``mean_field`` always (an error where the
  model/guide pair does not allow it), ``auto`` exactly where ``hiervae check`` says it is
  valid: the structure allows it (:func:`~hiervae.graph.faithfulness.mean_field_problems`)
  and every (guide, prior) family pair has a closed form
  (:func:`~hiervae.graph.faithfulness.closed_form_kl_missing`).
* :func:`resolve_device` -- the torch device of ``--device`` (one message for every
  command when CUDA is missing).
"""

from __future__ import annotations

import torch

from hiervae.errors import Location, RunError, SpecError
from hiervae.graph.faithfulness import closed_form_kl_missing, mean_field_problems
from hiervae.graph.ir import ModelGraph

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
