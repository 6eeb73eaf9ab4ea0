"""Causal tracing: where the edited concept's information flows from the image to the answer.

- :mod:`.layer_patching`: residual-stream patching per layer at the image vs the text positions;
- :mod:`.token_patching`: attention / MLP output patching per (layer, text position);
- :mod:`.logit_lens`: the answer read from every layer's residual stream;
- :mod:`.runner`: the batched, resumable driver (results as safetensors + JSON, aggregated bands, figures).

Patches run on the hook sites and batched engine of :mod:`vseam_pl.interventions`; pairs are selected with
:func:`vseam_pl.pairs.select_pairs`.
"""

from .aggregate import Band, aggregate, mean_band
from .layer_patching import layer_patching
from .logit_lens import logit_lens
from .pair import TracedPair, UntraceablePairError, trace_pair
from .patching import Scores, normalised_recovery, run_patches
from .positions import TokenGroups, concept_words, image_positions, token_groups
from .runner import ANALYSES, ResultStore, TraceConfig, TraceResult, parse_analyses, run_tracing
from .token_patching import token_patching

__all__ = [
    "ANALYSES",
    "Band",
    "ResultStore",
    "Scores",
    "TokenGroups",
    "TraceConfig",
    "TraceResult",
    "TracedPair",
    "UntraceablePairError",
    "aggregate",
    "concept_words",
    "image_positions",
    "layer_patching",
    "logit_lens",
    "mean_band",
    "normalised_recovery",
    "parse_analyses",
    "run_patches",
    "run_tracing",
    "token_groups",
    "token_patching",
    "trace_pair",
]
