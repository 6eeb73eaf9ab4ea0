"""Figures of head scores: layer x head heatmaps (diverging, centred at 0), per-layer profiles, overlap matrices.

Every function returns a matplotlib Figure (Agg backend) so the same figure can be saved as PNG and logged to
TensorBoard with `add_figure`.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .scores import HeadScores  # noqa: E402


def heatmap(score: torch.Tensor, title: str) -> Figure:
    """Layer (rows) x head (columns), blue < 0 < red, symmetric around 0."""
    data = score.float().nan_to_num(0.0).numpy()
    bound = float(np.abs(data).max()) or 1.0
    layers, heads = data.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * heads + 2), max(3.0, 0.22 * layers + 1.5)))
    im = ax.imshow(
        data, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto", interpolation="nearest"
    )
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def layer_profiles(scores: HeadScores, stat: str = "signed") -> dict[str, dict[str, list[float]]]:
    """Per group and layer: the sum of positive and of negative head scores, and the signed mean."""
    out = {}
    for g in scores.groups:
        s = scores.get(g, stat).float().nan_to_num(0.0)
        out[g] = {
            "positive_sum": s.clamp(min=0).sum(dim=1).tolist(),
            "negative_sum": s.clamp(max=0).sum(dim=1).tolist(),
            "mean": s.mean(dim=1).tolist(),
        }
    return out


def profile_plot(profiles: dict[str, dict[str, list[float]]], groups: list[str], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for g in groups:
        p = profiles[g]
        line = ax.plot(p["positive_sum"], label=f"{g} +")[0]
        ax.plot(p["negative_sum"], linestyle="--", color=line.get_color(), label=f"{g} -")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("layer")
    ax.set_ylabel("sum of head scores")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def overlap_plot(analysis: dict[str, Any], kind: str) -> Figure:
    groups = analysis["groups"]
    m = np.asarray(analysis[kind]["matrix"], dtype=float) if groups else np.zeros((0, 0))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(groups) + 2), max(3.5, 0.5 * len(groups) + 1.5)))
    im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(groups)), groups, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(groups)), groups, fontsize=7)
    for i in range(len(groups)):
        for j in range(len(groups)):
            ax.text(
                j,
                i,
                f"{m[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if m[i, j] < 0.6 else "black",
            )
    ax.set_title(f"Jaccard overlap of top-{analysis['k']} {kind} heads", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def set_ablation_plot(summary: dict[str, Any]) -> Figure:
    """Mean probability drop and accuracy per ablated set: positive, negative, and every random set (points, with
    their mean +- std as a bar); the unablated accuracy as a line."""
    sets = summary["sets"]
    randoms = [n for n in sets if n.startswith("random_")]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, key, label in (
        (axes[0], "mean_drop", "mean probability drop"),
        (axes[1], "accuracy", "accuracy"),
    ):
        names = ["positive", "negative"]
        values = [sets["positive"][key], sets["negative"][key]]
        colors = ["tab:red", "tab:blue"]
        if randoms:
            r = np.array([sets[n][key] for n in randoms])
            names.append(f"random (R={len(randoms)})")
            values.append(float(r.mean()))
            colors.append("tab:gray")
        ax.bar(range(len(names)), values, color=colors, alpha=0.7)
        if randoms:
            ax.errorbar([2], [float(r.mean())], yerr=[float(r.std())], color="black", capsize=4)
            ax.scatter(np.full(len(r), 2.0), r, s=8, color="black", zorder=3)
        if key == "accuracy":
            ax.axhline(
                summary["base"]["accuracy"], color="black", linestyle="--", linewidth=0.8, label="unablated"
            )
            ax.legend(fontsize=7)
        else:
            ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel(label)
    k = len(sets["positive"]["heads"])
    fig.suptitle(
        f"set ablation: top-{k} heads ({summary['settings']['mode']}, n={summary['num_pairs']})", fontsize=9
    )
    fig.tight_layout()
    return fig
