"""The activation-patching engine shared by layer patching, token patching and the logit lens.

A *site* is where an activation is read or overwritten in decoder layer `l`:

- `resid`: the decoder layer's output (the residual stream after layer `l`);
- `attn`: the attention output. It is patched at the per-head site of :mod:`vseam_pl.hooks` (the input of `o_proj`,
  all heads at once): `o_proj` is a fixed linear map of it, so replacing it at a position is replacing the
  `self_attn` (o_proj) output there;
- `mlp`: the MLP's output.

Many patches run in one forward: the edited input is repeated along the batch and each row gets its own
(site, layer, positions) patch, copied from the clean run's cached activations. Patched runs replay only the language
decoder: its inputs (the merged text + image embeddings, mask, positions) are captured once from the full model's
forward, so the vision tower / Q-Former never run again, and the answer is read through the model's own LM head.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..encoding import Encoded
from ..hooks import head_hooks
from ..scoring import _variant_token_ids, case_variants
from ..vlm import VLM

SITES: tuple[str, ...] = ("resid", "attn", "mlp")

#: f(layer, x) -> new x or None, with x of shape [batch, seq, ...] (z [B, T, H, D] for `attn`).
SiteFn = Callable[[int, torch.Tensor], "torch.Tensor | None"]


def _module(vlm: VLM, site: str, layer: int) -> nn.Module:
    if site == "resid":
        return vlm.layers[layer]
    if site == "mlp":
        return vlm.layers[layer].mlp
    raise ValueError(f"unknown site {site!r}; expected one of {SITES}")


@contextmanager
def site_hooks(vlm: VLM, site: str, fn: SiteFn, layers: Sequence[int] | None = None) -> Iterator[None]:
    """Apply `fn` to the activation at `site` of `layers` (default all) during forwards inside the block."""
    layers = range(vlm.num_layers) if layers is None else layers
    if site == "attn":
        with head_hooks(vlm, fn, layers):
            yield
        return

    def make(layer: int):
        def hook(module: nn.Module, args: tuple, output):
            x = output[0] if isinstance(output, tuple) else output
            new = fn(layer, x)
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    handles = [_module(vlm, site, layer).register_forward_hook(make(layer)) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def cache_sites(vlm: VLM, sites: Sequence[str]) -> Iterator[dict[str, dict[int, torch.Tensor]]]:
    """Record every layer's activation at each of `sites` during the forward inside the block."""
    cache: dict[str, dict[int, torch.Tensor]] = {s: {} for s in sites}
    with ExitStack() as stack:
        for site in sites:
            store = cache[site]
            stack.enter_context(site_hooks(vlm, site, lambda layer, x, store=store: store.__setitem__(layer, x.detach())))
        yield cache


def stack_layers(cache: dict[int, torch.Tensor], row: int) -> torch.Tensor:
    """`{layer: [B, T, ...]}` -> `[L, T, ...]` for one batch row."""
    return torch.stack([cache[layer][row] for layer in sorted(cache)])


@dataclass(frozen=True)
class PatchSpec:
    """Copy the clean activation at (`site`, `layer`, `positions`) into the edited run."""

    site: str
    layer: int
    positions: tuple[int, ...]


@dataclass
class AnswerTokens:
    """First-token ids of the case variants of the clean and the edited answer (pooled with logsumexp)."""

    clean: list[int]
    edited: list[int]

    def logps(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(clean answer), log p(edited answer)) from next-token logits [..., V]."""
        logp = F.log_softmax(logits.float(), dim=-1)
        return logp[..., self.clean].logsumexp(-1), logp[..., self.edited].logsumexp(-1)


def answer_tokens(vlm: VLM, prompt: str, clean: str, edited: str) -> AnswerTokens:
    """Token ids the answers start with after `prompt` (as scoring tokenizes them); they must differ."""

    def ids(answer: str) -> list[int]:
        first = [_variant_token_ids(vlm, prompt, v)[:1] for v in case_variants(answer)]
        return list(dict.fromkeys(t[0] for t in first if t))

    a, b = ids(clean), ids(edited)
    if not a or not b:
        raise ValueError(f"answer {clean!r} or {edited!r} tokenizes to nothing after the prompt")
    if set(a) & set(b):
        raise ValueError(f"answers {clean!r} and {edited!r} start with the same token; their logit difference is undefined")
    return AnswerTokens(a, b)


@dataclass
class Scores:
    """Per-row answer log-probabilities of a batch of runs."""

    lp_clean: torch.Tensor
    lp_edited: torch.Tensor

    @property
    def ld(self) -> torch.Tensor:
        """Logit difference LD = log p(clean answer) - log p(edited answer)."""
        return self.lp_clean - self.lp_edited

    @property
    def p_clean(self) -> torch.Tensor:
        return self.lp_clean.exp()


#: Decoder keyword inputs replayed for patched runs (everything else is left at its default; no KV cache).
DECODER_INPUTS: tuple[str, ...] = ("inputs_embeds", "attention_mask", "position_ids")


def last_logits(vlm: VLM, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The full model's next-token logits [B, V] at the last position (all rows share one unpadded length)."""
    return vlm.model(**inputs, logits_to_keep=1).logits[:, -1]


@contextmanager
def capture_decoder_inputs(vlm: VLM) -> Iterator[dict[str, torch.Tensor]]:
    """Record the keyword inputs the model passes to its language decoder during the forward inside the block."""
    captured: dict[str, torch.Tensor] = {}

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if args or kwargs.get("inputs_embeds") is None:
            raise RuntimeError(f"{vlm.name}: the language decoder was not called with `inputs_embeds=` keywords")
        captured.update({k: v.detach() for k, v in kwargs.items() if k in DECODER_INPUTS and isinstance(v, torch.Tensor)})

    handle = vlm.decoder.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()


def decoder_logits(vlm: VLM, decoder_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token logits [B, V] at the last position from a decoder replay (final norm inside, then the LM head)."""
    out = vlm.decoder(**decoder_inputs, use_cache=False)
    return vlm.lm_head()(out.last_hidden_state[:, -1])


def select_rows(inputs: dict[str, torch.Tensor], rows: slice, batch: int) -> dict[str, torch.Tensor]:
    """Rows of every batch-shaped tensor (position ids may be shared, batch 1, and are kept as they are)."""
    return {k: v[rows] if v.shape[0] == batch else v for k, v in inputs.items()}


def model_inputs(enc: Encoded, vlm: VLM, rows: Sequence[int] | None = None, repeat: int = 1) -> dict[str, torch.Tensor]:
    """Selected rows of `enc` (each repeated `repeat` times) on the model's device and dtype."""
    moved = enc.to(vlm.device, vlm.model.dtype)
    out = {}
    for k, v in moved.inputs.items():
        v = v if rows is None else v[list(rows)]
        out[k] = v.repeat_interleave(repeat, dim=0) if repeat > 1 else v
    return out


def _patch_fn(plan: dict[int, tuple[torch.Tensor, torch.Tensor]], source: torch.Tensor) -> SiteFn:
    """Rows `plan[layer][0]` take `source[layer]` where their mask `plan[layer][1]` [n, T] is set."""

    def fn(layer: int, x: torch.Tensor) -> torch.Tensor | None:
        if layer not in plan:
            return None
        rows, mask = plan[layer]
        rows, mask = rows.to(x.device), mask.to(x.device)
        x = x.clone()
        m = mask.view(*mask.shape, *([1] * (x.dim() - 2)))
        x[rows] = torch.where(m, source[layer].to(x).unsqueeze(0), x[rows])
        return x

    return fn


@torch.no_grad()
def run_patches(
    vlm: VLM,
    edited_inputs: dict[str, torch.Tensor],
    clean: dict[str, torch.Tensor],
    specs: Sequence[PatchSpec],
    answers: AnswerTokens,
    batch_size: int = 32,
) -> Scores:
    """Score every patch: one batch row per spec, `batch_size` rows per forward.

    `edited_inputs` are the decoder inputs of the edited run (one row, see :func:`capture_decoder_inputs`);
    `clean[site]` the clean run's activations `[L, T, ...]` at that site.
    """
    if not specs:
        empty = torch.zeros(0)
        return Scores(empty, empty)
    seq = int(edited_inputs["inputs_embeds"].shape[1])
    lp_c, lp_e = [], []
    for start in range(0, len(specs), batch_size):
        chunk = specs[start : start + batch_size]
        plans: dict[str, dict[int, list[tuple[int, tuple[int, ...]]]]] = defaultdict(lambda: defaultdict(list))
        for row, spec in enumerate(chunk):
            if spec.site not in clean:
                raise ValueError(f"no clean activations cached for site {spec.site!r}")
            if not all(0 <= p < seq for p in spec.positions):
                raise IndexError(f"patch positions {spec.positions} outside a {seq}-token sequence")
            plans[spec.site][spec.layer].append((row, spec.positions))
        inputs = {k: v.expand(len(chunk), *v.shape[1:]) if k != "position_ids" else v for k, v in edited_inputs.items()}
        with ExitStack() as stack:
            for site, by_layer in plans.items():
                plan = {}
                for layer, items in by_layer.items():
                    mask = torch.zeros(len(items), seq, dtype=torch.bool)
                    for i, (_, positions) in enumerate(items):
                        mask[i, list(positions)] = True
                    plan[layer] = (torch.tensor([r for r, _ in items]), mask)
                stack.enter_context(site_hooks(vlm, site, _patch_fn(plan, clean[site]), layers=sorted(plan)))
            a, b = answers.logps(decoder_logits(vlm, inputs))
        lp_c.append(a.cpu())
        lp_e.append(b.cpu())
    return Scores(torch.cat(lp_c), torch.cat(lp_e))


def normalised_recovery(ld: torch.Tensor, ld_clean: float, ld_edited: float) -> torch.Tensor:
    """(LD_patched - LD_edited) / (LD_clean - LD_edited): 0 = no recovery, 1 = the clean run's preference."""
    gap = ld_clean - ld_edited
    if gap == 0:
        return torch.full_like(ld, float("nan"))
    return (ld - ld_edited) / gap
