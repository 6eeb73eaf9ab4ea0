"""Alias of :mod:`vseam_pl.interventions.modulation`, the import path the README and earlier releases use."""

from .interventions.modulation import (
    SCALES_FORMAT,
    HeadModulation,
    ScalesMismatchError,
    nonfinite_scales,
    unmodulated,
)

__all__ = ["SCALES_FORMAT", "HeadModulation", "ScalesMismatchError", "nonfinite_scales", "unmodulated"]
