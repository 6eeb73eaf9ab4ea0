"""Figures of tracing results (matplotlib `Figure`s, no pyplot state): saved as PNG and logged to TensorBoard."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .aggregate import Band
from .layer_patching import GROUPS
from .logit_lens import RUNS
from .token_patching import ROLES, SITES

Aggregated = dict[str, dict[str, Band]]
DPI = 120  # tracing figures are saved finer than discovery heatmaps (token labels are small)
COLORS = {"image": "tab:orange", "text": "tab:blue", "clean": "tab:green", "edited": "tab:red"}


def _n_label(band: Band) -> str:
    n = band.n.flatten()
    return f"n={int(n.max())}" if n.numel() else "n=0"


def _line(ax, band: Band, idx, label: str, color: str) -> None:
    x = np.arange(band.mean.shape[-1])
    ax.plot(x, band.mean[idx].numpy(), marker="o", ms=3, label=label, color=color)
    ax.fill_between(x, band.lo[idx].numpy(), band.hi[idx].numpy(), alpha=0.2, color=color, linewidth=0)


LABELS = {
    "recovery": "normalised recovery",
    "delta_ld": "LD_patched - LD_edited (nats)",
    "p_clean": "p(clean answer)",
}


def _no_pairs_note(ax, band: Band) -> None:
    if int(band.n.max()) == 0:
        ax.text(
            0.5,
            0.5,
            "no pair separates the answers\n(LD_clean - LD_edited < min_gap)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
            color="grey",
        )


def layer_profile_figure(agg: Aggregated, title: str = "") -> Figure:
    """Recovery, LD change and p(clean answer) vs layer for image- and text-position patching, one column per level."""
    levels = list(agg)
    metrics = ("recovery", "delta_ld", "p_clean")
    fig = Figure(figsize=(3.2 * len(levels) + 0.5, 7.6), layout="constrained")
    axes = fig.subplots(len(metrics), len(levels), squeeze=False, sharex=True)
    for j, lv in enumerate(levels):
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            for g, group in enumerate(GROUPS):
                _line(ax, agg[lv][metric], g, f"{group} tokens", COLORS[group])
            ax.axhline(0, color="grey", lw=0.5)
            if metric == "recovery":
                ax.axhline(1, color="grey", lw=0.5, ls="--")
                ax.set_title(
                    f"{lv} (n={int(agg[lv]['p_clean'].n.max())}, separated {int(agg[lv]['recovery'].n.max())})",
                    fontsize=9,
                )
                _no_pairs_note(ax, agg[lv][metric])
            if i == len(metrics) - 1:
                ax.set_xlabel("layer patched")
    for i, metric in enumerate(metrics):
        axes[i, 0].set_ylabel(LABELS[metric], fontsize=8)
    axes[-1, 0].legend(fontsize=8)
    fig.suptitle(title or "Residual-stream patching by token group (mean, 95% band)")
    return fig


def token_heatmap_figure(agg: Aggregated, title: str = "") -> Figure:
    """Mean recovery per (role, layer) for attention and MLP output patching, one column per level; LD change in
    nats when no pair separates the answers enough for recovery."""
    levels = list(agg)
    metric = "recovery" if any(int(agg[lv]["recovery"].n.max()) for lv in levels) else "delta_ld"
    fig = Figure(figsize=(3.4 * len(levels) + 1, 4.2), layout="constrained")
    axes = fig.subplots(len(SITES), len(levels), squeeze=False)
    values = [agg[lv][metric].mean.numpy() for lv in levels]
    finite = [np.abs(v[np.isfinite(v)]) for v in values]
    vmax = max((float(f.max()) for f in finite if f.size), default=1.0) or 1.0
    for j, lv in enumerate(levels):
        for s, site in enumerate(SITES):
            ax = axes[s, j]
            im = ax.imshow(
                values[j][s].T, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower"
            )
            ax.set_yticks(range(len(ROLES)), ROLES)
            ax.set_xlabel("layer")
            ax.set_title(f"{lv}: {site} ({_n_label(agg[lv][metric])})", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label=LABELS[metric])
    fig.suptitle(title or f"Token-wise patching of attention / MLP outputs ({LABELS[metric]})")
    return fig


def lens_figure(agg: Aggregated, title: str = "") -> Figure:
    """Answer probabilities read from each layer's residual stream at the final position."""
    levels = list(agg)
    fig = Figure(figsize=(3.2 * len(levels) + 0.5, 3.2), layout="constrained")
    axes = fig.subplots(1, len(levels), squeeze=False, sharey=True)[0]
    for j, lv in enumerate(levels):
        ax = axes[j]
        for r, run in enumerate(RUNS):
            _line(ax, agg[lv]["p_clean"], r, f"p(clean ans.) | {run} image", COLORS[run])
        ax.plot(
            agg[lv]["p_edited"].mean[1].numpy(),
            ls="--",
            color=COLORS["edited"],
            label="p(edited ans.) | edited image",
        )
        ax.set_title(f"{lv} ({_n_label(agg[lv]['p_clean'])})")
        ax.set_xlabel("layer")
    axes[0].set_ylabel("probability (logit lens)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "Logit lens at the final position")
    return fig


def pair_token_figure(
    values: np.ndarray, tokens: list[str], roles: list[str], metric: str = "recovery", title: str = ""
) -> Figure:
    """One pair's token-wise `metric` [sites, layers, positions] as heatmaps, positions labelled by token."""
    fig = Figure(figsize=(8, 0.35 * len(tokens) + 1.5), layout="constrained")
    axes = fig.subplots(1, len(SITES), squeeze=False)[0]
    finite = values[np.isfinite(values)]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    labels = [f"{t} [{r[0]}]" for t, r in zip(tokens, roles, strict=True)]
    for s, site in enumerate(SITES):
        im = axes[s].imshow(values[s].T, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="upper")
        axes[s].set_yticks(range(len(labels)), labels, fontsize=7)
        axes[s].set_xlabel("layer")
        axes[s].set_title(site)
    fig.colorbar(im, ax=axes, shrink=0.8, label=LABELS[metric])
    fig.suptitle(title)
    fig.supxlabel(role_legend(roles), fontsize=7)  # constrained layout keeps it clear of the axes
    return fig


def role_legend(roles: list[str]) -> str:
    """What the `[q]`, `[c]`, `[f]` after each token label mean (only the roles present)."""
    meaning = {
        "question": "question token",
        "concept": "the edited concept's word",
        "final": "final position (where the answer is predicted)",
    }
    present = [r for r in meaning if r in roles]
    return "   ".join(f"[{r[0]}] {meaning[r]}" for r in present)
