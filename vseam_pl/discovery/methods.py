"""The registry of discovery methods: each method is an object that says what it computes and what it needs, so the
runner, the CLI and the callback ask it instead of comparing method names.

The registry keys are the public names (`--method`, `DiscoveryConfig.method`, configs): `ablation`, `patching`,
`attribution`, `atp_star`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..pairs import PairItem
from ..vlm import VLM
from .ablation import ablation_stats
from .atp import atp_star_stats
from .attribution import attribution_stats
from .patching import patching_stats

if TYPE_CHECKING:
    from .runner import DiscoveryConfig
    from .scores import ChunkStats

#: score(vlm, chunk, config, dataset means or None, replay from a middle layer) -> the chunk's statistics.
ScoreFn = Callable[[VLM, Sequence[PairItem], "DiscoveryConfig", "torch.Tensor | None", bool], "ChunkStats"]


@dataclass(frozen=True)
class DiscoveryMethod:
    """A discovery method: its statistics, how they are normalised, and what running it needs."""

    name: str
    #: the statistics it accumulates per group (`signed` first)
    stats: tuple[str, ...]
    score: ScoreFn
    #: `signed` is a patching effect divided by the edit effect as `patching_norm` says (:func:`.patching.normalise`)
    normalised: bool = False
    #: warn when that normaliser misleads (:func:`.patching.edit_effect_warnings`)
    warns_edit_effect: bool = False
    #: one exact intervened forward per head, batched: batches replay from a middle layer where the decoder allows
    exact: bool = False
    #: a gradient estimate of patching (one backward per chunk), which exact patching can verify (`--verify-top`)
    gradient: bool = False
    #: replaces head outputs (reads `ablation_mode`, `ablation_image`, dataset means; what set ablation builds on)
    ablates: bool = False
    #: also runs under `protocol='release'`, where its `negative` statistic is the release's non-negative gain
    release: bool = False
    #: config fields only this method reads (other methods leave them out of their resume fingerprint)
    settings: tuple[str, ...] = ()


def _ablation(vlm, chunk, cfg, means, prefix):
    return ablation_stats(vlm, chunk, cfg.ablation_mode, means, cfg.batch_size, cfg.ablation_image, prefix)


def _patching(vlm, chunk, cfg, means, prefix):
    return patching_stats(vlm, chunk, cfg.batch_size, cfg.direction, prefix)


def _attribution(vlm, chunk, cfg, means, prefix):
    return attribution_stats(vlm, chunk, cfg.direction)


def _atp_star(vlm, chunk, cfg, means, prefix):
    return atp_star_stats(vlm, chunk, cfg.direction, cfg.atp_nodes)


METHODS: dict[str, DiscoveryMethod] = {
    m.name: m
    for m in (
        DiscoveryMethod(
            "ablation", ("signed", "positive", "negative"), _ablation, exact=True, ablates=True, release=True
        ),
        DiscoveryMethod(
            "patching", ("signed",), _patching, normalised=True, warns_edit_effect=True, exact=True
        ),
        DiscoveryMethod(
            "attribution", ("signed",), _attribution, normalised=True, warns_edit_effect=True, gradient=True
        ),
        # AtP*'s `magnitude` stays in LD units; only `signed` is normalised
        DiscoveryMethod(
            "atp_star",
            ("signed", "magnitude"),
            _atp_star,
            normalised=True,
            gradient=True,
            settings=("atp_nodes",),
        ),
    )
}


def get_method(name: str) -> DiscoveryMethod:
    """The registered method called `name`."""
    if name not in METHODS:
        raise ValueError(f"unknown discovery method {name!r}; expected one of {tuple(METHODS)}")
    return METHODS[name]


def foreign_settings(name: str) -> set[str]:
    """Config fields other methods read and `name` does not (left out of its resume fingerprint)."""
    own = set(get_method(name).settings)
    return {s for m in METHODS.values() for s in m.settings} - own
