"""The intervention core that modulation, head discovery and causal tracing share.

- :mod:`.sites`: the named hook sites (`head`, `resid`, `attn`, `mlp`), one hook signature `fn(layer, x)`, one
  context manager (:func:`hooks`) and caching of any site (:func:`cache`);
- :mod:`.modulation`: the learnable per-head scales V-SEAM trains (:class:`HeadModulation`), and :mod:`.peft`
  the same scales as a peft IA3 adapter;
- :mod:`.ablation`: temporary head ablation (:func:`ablate_heads`);
- :mod:`.replay`: one forward of the model (:func:`forward_logits`), one full forward captured (:func:`capture`),
  then only the decoder re-run from any layer (:func:`run_rows`);
- :mod:`.batched`: the batched engine, one intervention per batch row (head :class:`Jobs` for discovery,
  :class:`PatchSpec` site patches for tracing).

The package depends on torch, safetensors and two leaf modules of vseam_pl only (`vlm`, `io`): nothing here
imports data, prompts, scoring or discovery (tests/test_layers.py checks it).
"""

from .ablation import ABLATION_MODES, AblationMode, ablate_heads, head_output_means, replacement
from .batched import (
    Jobs,
    PatchSpec,
    ValueFn,
    ablation_value,
    patch_value,
    patched_metrics,
    per_row_hook,
    rows_hook,
    run_jobs,
)
from .modulation import SCALES_FORMAT, HeadModulation, ScalesMismatchError, nonfinite_scales, unmodulated
from .replay import (
    DecoderRun,
    capture,
    check_replay,
    decoder_from,
    forward_logits,
    last_prompt_activations,
    run_rows,
)
from .sites import SITES, HookFn, add_hook, cache, hooks, stack_layers

__all__ = [
    "ABLATION_MODES",
    "SCALES_FORMAT",
    "SITES",
    "AblationMode",
    "DecoderRun",
    "HeadModulation",
    "HookFn",
    "Jobs",
    "PatchSpec",
    "ScalesMismatchError",
    "ValueFn",
    "ablate_heads",
    "ablation_value",
    "add_hook",
    "cache",
    "capture",
    "check_replay",
    "decoder_from",
    "forward_logits",
    "head_output_means",
    "hooks",
    "last_prompt_activations",
    "nonfinite_scales",
    "patch_value",
    "patched_metrics",
    "per_row_hook",
    "replacement",
    "rows_hook",
    "run_jobs",
    "run_rows",
    "stack_layers",
    "unmodulated",
]
