"""``train.engine: pyro``: each training step is ``pyro.infer.SVI.step`` on the compiled
``program.model`` / ``program.guide`` with the spec's Pyro ELBO and a ``pyro.optim``
optimiser (Adam, AdamW or ClippedAdam, one torch optimiser per parameter as Pyro keeps
them; ``clip_norm`` as Pyro's ``clip_args``).

The learning-rate schedule of ``train.lr_schedule`` sets the rate of every per-parameter
optimiser at each epoch (what a ``pyro.optim`` LR scheduler stepping per epoch does).
Warm-up is the ``beta`` argument of the program, a ``poutine.scale`` of the latent
sites.  The checkpoint holds the weights (the param store's tensors are the program's
own) and ``PyroOptim.get_state()``.
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.optim
import torch
from pyro import poutine

from hiervae.language import schema as S
from hiervae.policy import Objective
from hiervae.program import Program
from hiervae.train.optim import set_lr

OPTIMISERS = {"adam": pyro.optim.Adam, "adamw": pyro.optim.AdamW, "clipped_adam": pyro.optim.ClippedAdam}


def pyro_optimizer(spec: S.AdamSpec) -> pyro.optim.PyroOptim:
    args: dict[str, Any] = dict(lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay)
    if spec.name == "clipped_adam":
        args.update(lrd=spec.lrd, **({"clip_norm": spec.clip_norm} if spec.clip_norm else {}))
        return OPTIMISERS[spec.name](args)
    return OPTIMISERS[spec.name](args, {"clip_norm": spec.clip_norm} if spec.clip_norm else None)


class PyroEngine:
    """One SVI over one program."""

    def __init__(self, program: Program, objective: Objective, optimizer: S.AdamSpec):
        self.program = program
        self.optim = pyro_optimizer(optimizer)
        self.svi = pyro.infer.SVI(self._per_example(program.model), self._per_example(program.guide), self.optim,
                                  objective.pyro_elbo())

    def _per_example(self, fn):
        """``fn`` under ``poutine.scale(1 / batch)``: SVI minimises the loss per example, as
        the direct engine does (the same objective, so the same Adam trajectory)."""
        def scaled(x, beta):
            with poutine.scale(scale=1.0 / self.program.observations(x).size):
                return fn(x, beta)
        return scaled

    def step(self, x, beta: torch.Tensor) -> float:
        """One ``SVI.step``; returns the loss summed over the batch (Pyro's convention)."""
        return self.svi.step(x, beta) * self.program.observations(x).size

    def set_lr(self, lr: float) -> None:
        self.optim.pt_optim_args["lr"] = lr  # optimisers created later (first step) start from it
        for opt in self.optim.optim_objs.values():
            set_lr(opt, lr)
        # states restored by set_state are loaded when each optimiser is created (its first
        # step after a resume): they must carry this epoch's rate, not the saved one
        for state in self.optim._state_waiting_to_be_consumed.values():
            for group in state.get("param_groups", []):
                group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"pyro_optim": self.optim.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.program.register_pyro()  # the param store names the state refers to
        self.optim.set_state(state["pyro_optim"])
