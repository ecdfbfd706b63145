#!/usr/bin/env python
"""KL per latent layer after N training steps under a given beta policy (issue: KL explodes at beta = 0).

    python benchmarks/kl_warmup_probe.py specs/sere_resnet_mnist_faithful.yaml --steps 60 --beta zero
    python benchmarks/kl_warmup_probe.py specs/sere_resnet_mnist_faithful.yaml --steps 60 --beta schedule
    python benchmarks/kl_warmup_probe.py SPEC --beta 0.004 --set networks.decoder.batch_norm=false

Trains the spec's program with hiervae's own :class:`~hiervae.train.trainer.Trainer` on its
real data (``--data-dir``, default ``$HIERVAE_DATA`` or /work/shared/data), from the
training seed, for ``--steps`` steps of epoch 0, and prints the largest per-layer KL
(nats per image, the batch mean) every ``--every`` steps.  ``--beta``: ``zero`` (beta = 0
throughout: the old linear schedule's first epoch), ``schedule`` (the spec's warm-up
evaluated by the trainer, step by step, exactly as ``hiervae fit`` does) or a number
(constant beta).
"""

from __future__ import annotations

import argparse
import os
import time

import pyro
import torch

from hiervae.program import build_program
from hiervae.data.datasets import load_dataset
from hiervae.graph import load_graph
from hiervae.train import Trainer, check_data_matches
from hiervae.policy import select_analytic_kl
from hiervae.train.metrics import EpochStats


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--beta", default="schedule")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("HIERVAE_DATA", "/work/shared/data"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    graph = load_graph(args.spec, args.overrides)
    splits = load_dataset(graph.data.dataset, data_dir=args.data_dir, binarize=graph.data.binarize,
                          validation=graph.data.validation, download=False, dequantize=graph.data.dequantize)
    check_data_matches(graph, splits)
    pyro.set_rng_seed(graph.train.seed)
    trainer = Trainer(build_program(graph), graph, splits, device=torch.device("cpu"),
                      analytic_kl=select_analytic_kl(graph))
    trainer.program.train()
    constant = None if args.beta in ("zero", "schedule") else float(args.beta)
    steps_per_epoch = len(trainer.batches)
    print(f"{args.spec} {' '.join(args.overrides)} beta={args.beta} ({steps_per_epoch} steps per epoch)")
    started = time.perf_counter()
    with pyro.validation_enabled(False):
        for k, x in enumerate(trainer.batches.epoch(0)):
            if k == args.steps:
                break
            if constant is None:
                beta = 0.0 if args.beta == "zero" else trainer.betas.at_step(0, k, steps_per_epoch)
            else:
                beta = constant
            trainer.beta.fill_(beta)
            stats = EpochStats(trainer.program.latents, trainer.device)
            trainer.train_step(x, stats)
            if (k + 1) % args.every == 0 or k + 1 == args.steps:
                s = stats.summary()
                kls = list(s["kl_per_latent"].values())
                print(f"step {k + 1:4d}  beta {beta:.3g}  -log p(x|z) {-s['train_log_likelihood']:9.2f}  "
                      f"max KL/layer {max(kls):10.4g}  total KL {s['train_kl']:10.4g}  "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
