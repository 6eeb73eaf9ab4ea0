"""Layer patching by token group: where along the depth the image and the text positions carry the answer.

For each decoder layer `l` and group g in (image, text), the clean run's residual stream after layer `l` at g's
positions replaces the edited run's; the answer's recovery says how much of the clean/edited difference those
positions hold at that depth.
"""

from __future__ import annotations

import torch

from ..interventions import Site
from ..vlm import VLM
from .pair import TracedPair
from .patching import normalised_recovery, run_patches

GROUPS: tuple[str, ...] = ("image", "text")
SITES_NEEDED: tuple[str, ...] = ("resid",)


def layer_specs(num_layers: int, tp: TracedPair) -> list[Site]:
    """Row order: group-major, then layer (reshapes to [G, L])."""
    positions = {"image": tuple(tp.groups.image), "text": tuple(tp.groups.text)}
    return [Site("resid", layer, positions=positions[g]) for g in GROUPS for layer in range(num_layers)]


def layer_patching(vlm: VLM, tp: TracedPair, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """`ld`, `recovery`, `p_clean`: [groups=2 (image, text), layers]."""
    scores = run_patches(
        vlm,
        tp.run,
        tp.clean,
        layer_specs(vlm.num_layers, tp),
        tp.answers,
        batch_size,
        from_layer=tp.replay_from_layer,
    )
    shape = (len(GROUPS), vlm.num_layers)
    ld = scores.ld.view(shape)
    return {
        "ld": ld,
        "recovery": normalised_recovery(ld, tp.ld_clean, tp.ld_edited),
        "p_clean": scores.p_clean.view(shape),
    }
