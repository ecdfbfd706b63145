"""Writes mixture8.npz beside this file: 4000 points of an 8-d mixture of 4 Gaussians that
lie near a 2-d plane (a latent-variable model's kind of data), and the component of each.

    python specs/data/make_mixture8.py

Deterministic (numpy's legacy RandomState(0) stream), so the shipped file is reproducible.
"""

from pathlib import Path

import numpy as np


def mixture(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    basis = np.linalg.qr(rng.randn(8, 2))[0]  # an orthonormal 2-d plane in R^8
    centres = np.array([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
    component = rng.randint(0, 4, size=n)
    plane = centres[component] + 0.5 * rng.randn(n, 2)
    x = plane @ basis.T + 0.05 * rng.randn(n, 8)
    return x.astype(np.float32), component.astype(np.int64)


if __name__ == "__main__":
    x, component = mixture()
    np.savez(Path(__file__).with_name("mixture8.npz"), x=x, component=component)
