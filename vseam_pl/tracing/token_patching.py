"""Token-wise patching of the attention and MLP outputs: which layer writes the answer-relevant information at
which text position (question tokens, the concept word, the final position).

One patch per (site, layer, position): the clean run's attention (o_proj) output or MLP output at that single
position replaces the edited run's.
"""

from __future__ import annotations

import torch

from ..interventions import Site
from ..vlm import VLM
from .pair import TracedPair
from .patching import normalised_recovery, run_patches

SITES: tuple[str, ...] = ("attn", "mlp")
ROLES: tuple[str, ...] = ("question", "concept", "final")
SITES_NEEDED = SITES


def token_specs(num_layers: int, positions: list[int]) -> list[Site]:
    """Row order: site, layer, position (reshapes to [S, L, P])."""
    return [
        Site(site, layer, positions=(p,)) for site in SITES for layer in range(num_layers) for p in positions
    ]


def token_patching(vlm: VLM, tp: TracedPair, batch_size: int = 32) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors `ld`, `recovery`, `p_clean` [sites=2 (attn, mlp), layers, positions] and the positions' labels."""
    positions = tp.groups.token_positions()
    scores = run_patches(
        vlm,
        tp.run,
        tp.clean,
        token_specs(vlm.num_layers, positions),
        tp.answers,
        batch_size,
        from_layer=tp.replay_from_layer,
    )
    shape = (len(SITES), vlm.num_layers, len(positions))
    ld = scores.ld.view(shape)
    tensors = {
        "ld": ld,
        "recovery": normalised_recovery(ld, tp.ld_clean, tp.ld_edited),
        "p_clean": scores.p_clean.view(shape),
        "positions": torch.tensor(positions),
    }
    labels = {
        "positions": positions,
        "tokens": [tp.groups.tokens[p] for p in positions],
        "roles": [tp.groups.role(p) for p in positions],
    }
    return tensors, labels


def by_role(values: torch.Tensor, roles: list[str]) -> torch.Tensor:
    """[..., P] -> [..., 3]: mean over each role's positions (question, concept, final); NaN where a role is absent."""
    out = []
    for role in ROLES:
        idx = [i for i, r in enumerate(roles) if r == role]
        out.append(values[..., idx].mean(-1) if idx else torch.full(values.shape[:-1], float("nan")))
    return torch.stack(out, dim=-1)
