"""Image grids of model samples and of reconstructions (PNG, no pyplot state).

Samples are ancestral: the model is traced on a placeholder ``x`` of the right shape,
which only sizes the data plate (latents are drawn from the priors, never conditioned
on it), and the picture is the *mean* of the observation model given the sampled
latents (Bernoulli probabilities, not binary draws).  Reconstructions are the mean of
p(x | latents) with the latents drawn once from q(latents | x).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from pyro import poutine

from hiervae.data.observations import Observations
from hiervae.evaluation.iw import inference_mode, program_device
from hiervae.program.program import Program

GRID_PIXELS = 640  # target size of the longer side of a grid, after integer upscaling


def _observation_mean(site) -> torch.Tensor:
    fn = site["fn"]
    try:
        return fn.mean
    except (NotImplementedError, AttributeError):  # a family without a mean: show one draw
        return fn.sample()


def model_trace(program: Program, n: int, given: Mapping[str, torch.Tensor] | None = None):
    """The Pyro trace of ``n`` ancestral samples of the model, every observed node drawn
    too, and the nodes in ``given`` (latents or transforms) fixed to those values."""
    like = torch.zeros((), device=program_device(program))
    placeholder = Observations({o: program.probe_value(o, n, like) for o in program.observed})
    model = poutine.condition(poutine.uncondition(program.model), data=dict(given or {}))
    with inference_mode(program):
        return poutine.trace(model).get_trace(placeholder)


def sample_means(program: Program, n: int, node: str | None = None) -> torch.Tensor:
    """``(n, D)``: E[node | parents] for ``n`` ancestral samples from the model (``node``:
    an observed node, the first by default); the other observed nodes it depends on (a
    label in a conditional model) are drawn from the model too."""
    node = node or program.observed[0]
    with inference_mode(program):  # a family without a mean draws one: its networks in eval mode
        return _observation_mean(model_trace(program, n).nodes[node]).reshape(n, -1)


def reconstruction_means(program: Program, x, node: str | None = None) -> torch.Tensor:
    """``(B, D)``: E[node | latents] with the latents drawn once from q(latents | x)
    (``x``: a tensor, or one tensor per observed node)."""
    node = node or program.observed[0]
    x = program.observations(x)
    with inference_mode(program):
        guide = poutine.trace(program.guide).get_trace(x)
        model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x)
        return _observation_mean(model.nodes[node]).reshape(x.size, -1)


def grid(images: np.ndarray, image_shape: tuple[int, int], cols: int, pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """``(N, H*W)`` images -> one ``(rows*(H+pad)-pad, cols*(W+pad)-pad)`` array."""
    h, w = image_shape
    n = images.shape[0]
    rows = max(1, math.ceil(n / cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), pad_value, dtype=np.float32)
    for i, img in enumerate(images.reshape(n, h, w)):
        r, c = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = img
    return out


def pair_grid(left: np.ndarray, right: np.ndarray, image_shape: tuple[int, int], pad: int = 1) -> np.ndarray:
    """Pairs ``left[i] | right[i]`` side by side (no gap inside a pair), pairs in a grid."""
    h, w = image_shape
    n = left.shape[0]
    pairs = np.concatenate([left.reshape(n, h, w), right.reshape(n, h, w)], axis=2)
    cols = max(1, math.ceil(math.sqrt(n / 2)))
    return grid(pairs.reshape(n, -1), (h, 2 * w), cols, pad)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Grey-scale PNG of values in [0, 1], upscaled by an integer factor (nearest neighbour)."""
    from matplotlib import image

    scale = max(1, GRID_PIXELS // max(array.shape))
    big = np.kron(np.clip(array, 0.0, 1.0), np.ones((scale, scale), dtype=array.dtype))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.imsave(path, big, cmap="gray", vmin=0.0, vmax=1.0)
    return path


def sample_grids(program: Program, data, image_shape: tuple[int, int] | None, n: int = 64,
                 node: str | None = None) -> dict[str, np.ndarray]:
    """``{"samples": ..., "reconstructions": ...}``: grids in [0, 1] of ``n`` model samples
    and of ``n`` pairs (an image of ``data`` | its reconstruction) of the observed ``node``
    that holds images (default: the first)."""
    if image_shape is None or len(image_shape) != 2:
        raise ValueError("the data are not grey-scale images, so there is no sample grid to draw")
    node = node or program.observed[0]
    h, w = image_shape
    samples = sample_means(program, n, node).cpu().numpy()
    if samples.shape[1] != h * w:
        raise ValueError(f"observations have {samples.shape[1]} values, images {h}x{w}")
    x = program.observations(data).rows(slice(0, n)).to(program_device(program))
    recon = reconstruction_means(program, x, node).cpu().numpy()
    return {"samples": grid(samples, image_shape, max(1, math.ceil(math.sqrt(n)))),
            "reconstructions": pair_grid(x[node].cpu().numpy(), recon, image_shape)}


def write_sample_grids(program: Program, test, image_shape: tuple[int, int] | None, out_dir: str | Path, n: int = 64,
                       node: str | None = None) -> list[Path]:
    """``samples.png`` (n model samples) and ``reconstructions.png`` (n test images |
    reconstruction) of the observed ``node`` that holds images (default: the first)."""
    grids = sample_grids(program, test, image_shape, n, node)
    return [save_png(grids[name], Path(out_dir) / f"{name}.png") for name in ("samples", "reconstructions")]
