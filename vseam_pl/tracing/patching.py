"""The activation-patching engine shared by layer patching, token patching and the logit lens.

A *site* is where an activation is read or overwritten in decoder layer `l`:

- `resid`: the decoder layer's output (the residual stream after layer `l`);
- `attn`: the attention output. It is patched at the per-head site of :mod:`vseam_pl.hooks` (the input of `o_proj`,
  all heads at once): `o_proj` is a fixed linear map of it, so replacing it at a position is replacing the
  `self_attn` (o_proj) output there;
- `mlp`: the MLP's output.

Many patches run in one forward: the edited run is repeated along the batch and each row gets its own
(site, layer, positions) patch, copied from the clean run's cached activations. Patched runs replay only the language
decoder (:mod:`vseam_pl.discovery.replay`) from the first layer a batch patches, so the vision tower / Q-Former and
the unchanged early layers never run again; the answer is read through the model's own final norm and LM head.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..discovery.replay import DecoderRun, run_rows
from ..hooks import head_hooks
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
            stack.enter_context(
                site_hooks(vlm, site, lambda layer, x, store=store: store.__setitem__(layer, x.detach()))
            )
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
        """(log p(clean answer), log p(edited answer)) under the full next-token distribution of `logits` [..., V]."""
        logp = F.log_softmax(logits.float(), dim=-1)
        return logp[..., self.clean].logsumexp(-1), logp[..., self.edited].logsumexp(-1)


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
    run: DecoderRun,
    clean: dict[str, torch.Tensor],
    specs: Sequence[PatchSpec],
    answers: AnswerTokens,
    batch_size: int = 32,
    row: int = 1,
    from_layer: bool = True,
) -> Scores:
    """Score every patch applied to row `row` of `run` (the edited run): one batch row per spec.

    `clean[site]` holds the clean run's activations `[L, T, ...]` at that site. Specs are run in layer order so each
    batch replays the decoder from its first patched layer (`from_layer`; nothing before it can change).
    """
    if not specs:
        empty = torch.zeros(0)
        return Scores(empty, empty)
    seq = int(run.embeds.shape[1])
    order = sorted(range(len(specs)), key=lambda i: specs[i].layer)
    lp_c, lp_e = torch.empty(len(specs)), torch.empty(len(specs))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chunk = [specs[i] for i in idx]
        plans: dict[str, dict[int, list[tuple[int, tuple[int, ...]]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for r, spec in enumerate(chunk):
            if spec.site not in clean:
                raise ValueError(f"no clean activations cached for site {spec.site!r}")
            if not all(0 <= p < seq for p in spec.positions):
                raise IndexError(f"patch positions {spec.positions} outside a {seq}-token sequence")
            plans[spec.site][spec.layer].append((r, spec.positions))
        with ExitStack() as stack:  # hooks are registered before run_rows cuts the layer list
            for site, by_layer in plans.items():
                plan = {}
                for layer, items in by_layer.items():
                    mask = torch.zeros(len(items), seq, dtype=torch.bool)
                    for i, (_, positions) in enumerate(items):
                        mask[i, list(positions)] = True
                    plan[layer] = (torch.tensor([r for r, _ in items]), mask)
                stack.enter_context(site_hooks(vlm, site, _patch_fn(plan, clean[site]), layers=sorted(plan)))
            first = min(s.layer for s in chunk) if from_layer else 0
            logits = run_rows(vlm, run, torch.full((len(chunk),), row, dtype=torch.long), start=first)
        a, b = answers.logps(logits)
        lp_c[idx], lp_e[idx] = a.cpu(), b.cpu()
    return Scores(lp_c, lp_e)


def normalised_recovery(ld: torch.Tensor, ld_clean: float, ld_edited: float) -> torch.Tensor:
    """(LD_patched - LD_edited) / (LD_clean - LD_edited): 0 = no recovery, 1 = the clean run's preference."""
    gap = ld_clean - ld_edited
    if gap == 0:
        return torch.full_like(ld, float("nan"))
    return (ld - ld_edited) / gap
