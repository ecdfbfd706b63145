"""Learning curves and per-layer KL as PNG files (matplotlib, no display needed).

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, so the global pyplot
backend is never touched.  Files are written atomically (temp file + rename), so a
viewer never sees a half-written image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hiervae.fileio import atomic_file

LEARNING_CURVES = "learning_curves.png"
KL_PER_LATENT = "kl_per_latent.png"


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path, fsync=False) as f:
        fig.savefig(f, dpi=100, format="png")


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in history:
        if r.get(key) is not None:
            xs.append(r["epoch"])
            ys.append(r[key])
    return xs, ys


def plot_learning_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Train / validation ELBO per epoch, with beta and the learning rate underneath."""
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    for key, label in (("train_elbo", "train ELBO"), ("valid_elbo", "validation ELBO")):
        xs, ys = _series(history, key)
        if xs:
            top.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    top.set_ylabel("ELBO (nats per example)")
    top.grid(alpha=0.3)
    top.legend(loc="lower right")
    if title:
        top.set_title(title)
    xs, ys = _series(history, "beta")
    bottom.plot(xs, ys, color="tab:red", label="beta (KL weight)")
    bottom.set_ylabel("beta")
    bottom.set_ylim(-0.05, max([1.0, *ys]) + 0.05)
    bottom.set_xlabel("epoch")
    bottom.grid(alpha=0.3)
    lr_axis = bottom.twinx()
    xs, ys = _series(history, "lr")
    lr_axis.plot(xs, ys, color="tab:gray", linestyle="--", label="learning rate")
    lr_axis.set_ylabel("learning rate")
    handles = bottom.get_legend_handles_labels()[0] + lr_axis.get_legend_handles_labels()[0]
    bottom.legend(handles=handles, loc="center right", fontsize="small")
    _save(fig, path)
    return path


def plot_kl_per_latent(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """KL of each latent (layer) per epoch, and the last epoch's KL as bars."""
    from matplotlib.figure import Figure

    path = Path(path)
    key = "valid_kl_per_latent" if any(r.get("valid_kl_per_latent") for r in history) else "kl_per_latent"
    names: list[str] = []
    for r in history:
        for name in r.get(key) or {}:
            if name not in names:
                names.append(name)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    curves, bars = fig.subplots(1, 2, width_ratios=[3, 2])
    for name in names:
        xs = [r["epoch"] for r in history if (r.get(key) or {}).get(name) is not None]
        ys = [r[key][name] for r in history if (r.get(key) or {}).get(name) is not None]
        curves.plot(xs, ys, label=name)
    split = "validation" if key.startswith("valid") else "train"
    curves.set_xlabel("epoch")
    curves.set_ylabel(f"KL (nats per example, {split})")
    curves.grid(alpha=0.3)
    if names:
        curves.legend(fontsize="small", ncol=max(1, len(names) // 12))
    last = (history[-1].get(key) or {}) if history else {}
    values = [last.get(n) or 0.0 for n in names]
    bars.bar(range(len(names)), values, color="tab:blue")
    bars.set_xticks(range(len(names)), names, rotation=90 if len(names) > 8 else 0, fontsize="small")
    bars.set_ylabel("KL at the last epoch")
    bars.grid(alpha=0.3, axis="y")
    fig.suptitle(title or "KL divergence per latent")
    _save(fig, path)
    return path


def write_plots(history: Sequence[dict[str, Any]], directory: str | Path, title: str = "") -> list[Path]:
    directory = Path(directory)
    return [plot_learning_curves(history, directory / LEARNING_CURVES, title),
            plot_kl_per_latent(history, directory / KL_PER_LATENT, title)]
