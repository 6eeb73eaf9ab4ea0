"""The intervention core that modulation, head discovery and causal tracing share.

- :mod:`.sites`: the named hook sites (`head`, `resid`, `attn`, `mlp`), one hook signature `fn(layer, x)`, one
  context manager (:func:`hooks`) and caching of any site (:func:`cache`);
- :mod:`.modulation`: the learnable per-head scales V-SEAM trains (:class:`HeadModulation`), and :mod:`.peft`
  the same scales as a peft IA3 adapter;
- :mod:`.ablation`: temporary head ablation (:func:`ablate_heads`);
- :mod:`.replay`: one forward of the model (:func:`forward_logits`), one full forward captured (:func:`capture`),
  then only the decoder re-run from any layer (:func:`run_rows`);
- :mod:`.batched`: the one patching engine, one :class:`Patch` per batch row: a :class:`Site` (hook point, layer,
  head / positions) and a :data:`Setter` that writes its new value (discovery's head ablation and patching,
  tracing's clean-activation copies).

The package depends on torch, safetensors and two leaf modules of vseam_pl only (`vlm`, `io`): nothing here
imports data, prompts, scoring or discovery (tests/test_layers.py checks it).
"""

from .ablation import ABLATION_MODES, AblationMode, ablate_heads, head_output_means, replacement
from .batched import (
    Patch,
    Setter,
    Site,
    ablation_setter,
    copy_setter,
    head_coords,
    head_grid,
    head_patches,
    head_source_setter,
    patched_logits,
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
    "Patch",
    "ScalesMismatchError",
    "Setter",
    "Site",
    "ablate_heads",
    "ablation_setter",
    "add_hook",
    "cache",
    "capture",
    "check_replay",
    "copy_setter",
    "decoder_from",
    "forward_logits",
    "head_coords",
    "head_grid",
    "head_output_means",
    "head_patches",
    "head_source_setter",
    "hooks",
    "last_prompt_activations",
    "nonfinite_scales",
    "patched_logits",
    "replacement",
    "run_rows",
    "stack_layers",
    "unmodulated",
]
