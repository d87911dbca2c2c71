"""Figures for reports and MLflow: the training loss curve, per-set metrics, a chunk
alignment (Fig. 2a) and embedding maps (Fig. 3)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

LOSS_TERMS = ("total", "focal", "center", "triplet")
METRICS = ("mAP", "HR1", "P10")


def plot_loss(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "training loss") -> Path:
    """Loss terms against step (log scale), smoothed over a short window."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = range(1, len(history) + 1)
    window = max(1, len(history) // 50)
    for term in LOSS_TERMS:
        values = pd.Series([h[term] for h in history])
        ax.plot(steps, values.rolling(window, min_periods=1).mean(), label=term)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_metrics(metrics: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path) -> Path:
    """Grouped bars: for each metric and test set, one bar per model (any number of
    models; a set a model was not scored on is left empty). The legend sits under the
    panels, so it never hides a bar."""
    models = list(metrics)
    sets = list(dict.fromkeys(s for m in metrics.values() for s in m))
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(METRICS), figsize=(max(4.0, 0.9 * len(sets) + 1.5) * len(METRICS), 4.2),
                             sharey=True, squeeze=False)
    width = 0.8 / len(models)
    for ax, metric in zip(axes[0], METRICS):
        for k, model in enumerate(models):
            values = [metrics[model][s][metric] if s in metrics[model] else np.nan for s in sets]
            ax.bar([i + k * width for i in range(len(sets))], values, width, label=model,
                   color=colours(k % 10))
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(sets))], sets,
                      rotation=20, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.set_ylim(0, 1)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(models), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.04 * ((len(models) - 1) // 6), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_alignment(similarity, threshold: float, delta: int | None, path: str | Path,
                   title: str, hop_s: float) -> Path:
    """Fig. 2(a): the chunk similarity matrix ``(n_a, n_b)`` of two versions, its matches
    (similarity above ``threshold``, hollow circles) and the aligned pairs on the offset
    diagonal ``chunk_b - chunk_a = Δ`` (filled, with the diagonal drawn through them)."""
    sim = np.asarray(similarity)
    fig, ax = plt.subplots(figsize=(6, 5))
    img = ax.imshow(sim, origin="lower", cmap="viridis", vmin=-1, vmax=1, aspect="auto")
    fig.colorbar(img, ax=ax, label="cosine similarity")
    a, b = np.nonzero(sim > threshold)
    ax.scatter(b, a, s=40, facecolors="none", edgecolors="white", label=f"match (> {threshold})")
    if delta is not None:
        on = b - a == delta
        ax.scatter(b[on], a[on], s=40, color="red", label=f"aligned (Δ = {delta}, {delta * hop_s:+.1f} s)")
        rows = np.arange(sim.shape[0])
        keep = (rows + delta >= 0) & (rows + delta < sim.shape[1])
        ax.plot(rows[keep] + delta, rows[keep], color="red", lw=0.8, ls="--")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # chunk indices
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("chunk of version b")
    ax.set_ylabel("chunk of version a")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_embedding_maps(maps: Mapping[str, np.ndarray], work_ids: Sequence, path: str | Path,
                        title: str) -> Path:
    """Fig. 3: one 2-D map ``(n, 2)`` per model side by side, points coloured by work (the
    colours cycle when there are more works than colours; each work also gets a marker)."""
    works = sorted(set(work_ids))
    index = np.array([works.index(w) for w in work_ids])
    colours = plt.get_cmap("tab20")
    markers = "os^Dv"
    fig, axes = plt.subplots(1, len(maps), figsize=(5 * len(maps), 4.6), squeeze=False)
    for ax, (model, xy) in zip(axes[0], maps.items()):
        for k in range(len(works)):
            on = index == k
            ax.scatter(xy[on, 0], xy[on, 1], s=22, color=colours(k % 20),
                       marker=markers[(k // 20) % len(markers)])
        ax.set_title(model)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
