"""Alias of :mod:`vseam_pl.interventions.ablation`, the import path the README and earlier releases use."""

from .interventions.ablation import ABLATION_MODES, AblationMode, ablate_heads, head_output_means, replacement

__all__ = ["ABLATION_MODES", "AblationMode", "ablate_heads", "head_output_means", "replacement"]
