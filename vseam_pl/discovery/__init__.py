"""Causal head discovery from clean/edited image pairs: ablation, activation patching and attribution patching
scores per (layer, head), per semantic level and category (vseam-pl's protocol, or the V-SEAM release's for
ablation), set ablation of the top heads against random sets, and modulation scales initialised from them.

The pair API (`load_pairs`, `prepare_pairs`, ...) lives in :mod:`vseam_pl.pairs` and the interventions in
:mod:`vseam_pl.interventions`."""

from .methods import METHODS, DiscoveryMethod, get_method
from .overlap import jaccard, overlap_analysis
from .release import PROTOCOLS
from .runner import (
    DiscoveryConfig,
    DiscoveryInterrupted,
    DiscoveryResult,
    run_discovery,
    write_outputs,
)
from .scores import CLOSED_FORM_DEFAULTS, HeadScores, apply_init_scales, init_scales_from_scores
from .set_ablation import SetAblationConfig, SetAblationResult, run_set_ablation, set_ablation_config

__all__ = [
    "CLOSED_FORM_DEFAULTS",
    "METHODS",
    "PROTOCOLS",
    "DiscoveryConfig",
    "DiscoveryInterrupted",
    "DiscoveryMethod",
    "DiscoveryResult",
    "HeadScores",
    "SetAblationConfig",
    "SetAblationResult",
    "apply_init_scales",
    "get_method",
    "init_scales_from_scores",
    "jaccard",
    "overlap_analysis",
    "run_discovery",
    "run_set_ablation",
    "set_ablation_config",
    "write_outputs",
]
