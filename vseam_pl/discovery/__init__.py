"""Causal head discovery from clean/edited image pairs: ablation, activation patching and attribution patching
scores per (layer, head), per semantic level and category, and modulation scales initialised from them."""

from .data import PairError, PairItem, load_pairs, prepare_pairs
from .overlap import jaccard, overlap_analysis
from .runner import (
    METHODS,
    DiscoveryConfig,
    DiscoveryInterrupted,
    DiscoveryResult,
    run_discovery,
    write_outputs,
)
from .scores import HeadScores, apply_init_scales, init_scales_from_scores

__all__ = [
    "METHODS",
    "DiscoveryConfig",
    "DiscoveryInterrupted",
    "DiscoveryResult",
    "HeadScores",
    "PairError",
    "PairItem",
    "apply_init_scales",
    "init_scales_from_scores",
    "jaccard",
    "load_pairs",
    "overlap_analysis",
    "prepare_pairs",
    "run_discovery",
    "write_outputs",
]
