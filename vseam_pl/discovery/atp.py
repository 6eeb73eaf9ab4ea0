"""AtP* (Kramár et al. 2024, "AtP*: An efficient and scalable method for localizing LLM behaviour to components"):
attribution patching with the two fixes for its false negatives, at the granularity discovery scores (one node per
(layer, head): the head's output at every position), plus exact verification of the top-K heads.

Plain attribution (:mod:`.attribution`) estimates the effect of patching head output `z` as `g . (z_src - z_tgt)`
with `g = dLD/dz` on the run being patched. AtP* changes two things:

1. **QK fix (attention saturation).** The gradient through an attention softmax vanishes when the pattern is
   saturated, so the paper does not linearise through it: for query and key nodes it recomputes the attention
   probabilities exactly with the patched query (one row) or key (one column, each key position on its own) and
   linearises only on the probabilities, `sum (A_patched - A) * dLD/dA`; values stay linear; a coarse node's
   estimate is the sum of its parts. Two node sets (`nodes`):

   - `head` (default): the node is the head's output itself, whose patched value `z_src` the source run gives
     exactly, so the head's own softmax is evaluated exactly in both runs and the fix holds by construction (the
     linear estimate starts after the softmax, at `o_proj`);
   - `qkv`: the paper's nodes, each head's queries, keys and values at every position, summed per head. Because
     `dLD/dA[t, s] = g[t] . v[s]`, each part is `g . dz` for an effective output change computed from the q/k/v
     of both runs: `dz_Q = (softmax(q_src k_tgt) - A) v`, `dz_K[t] = sum_s (p'_ts - p_ts) (v[s] - mean_{s' != s}
     v[s'])` with `p'_ts` the probability of key s when only that key is patched (its odds scale by
     `exp(dlogit)`), and `dz_V = A (v_src - v_tgt)`. The sum drops the interactions between positions that the
     `head` node keeps, which matters when an image edit moves hundreds of image-token keys at once (see
     docs/benchmarks.md for the measured rank correlations). Queries and keys are taken after the rotary
     embedding, and the q/k/v path is checked against the model's own head outputs (refused where it differs).
2. **GradDrop (cancellation).** For each decoder layer l, the estimate is recomputed with the gradient through layer
   l's residual contributions (its attention and MLP outputs) set to zero, and the score is the mean of the absolute
   values, `1/(L-1) sum_l |c_l|` (the node's own layer always gives 0, hence L-1). Direct and indirect paths that
   cancel in plain AtP no longer hide a head. The result is a *magnitude* (statistic `magnitude`); the signed estimate
   without GradDrop stays in `signed`.

Cost per chunk: two forwards of each image (one captures q/k/v), one forward with grad and 1 + L backwards (L with
GradDrop), still independent of the number of heads per layer.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..interventions import DecoderRun, run_rows
from ..logit_diff import logit_diff, over_candidates
from ..pairs import PairItem, prepare_pairs
from ..prompts import DEFAULT_INSTRUCTION
from ..ranking import rank_heads
from ..records import ImagePair
from ..vlm import VLM, UnsupportedModelError
from .attribution import pair_runs
from .items import vseam_filter
from .patching import patching_stats

# scores.py imports the method registry (methods.py), which imports this module: types only
if TYPE_CHECKING:
    from .scores import ChunkStats, HeadScores

#: `head`: one node per head output (its own softmax is evaluated exactly in both runs, so the QK fix holds by
#: construction); `qkv`: the paper's per-position query/key/value nodes with the QK fix, summed per head.
NODES: tuple[str, ...] = ("head", "qkv")


# -- q/k/v of every layer ---------------------------------------------------------------------------------------
@dataclass
class QKV:
    """Per layer: queries, keys, values `[E, H, T, D]` (rotary applied, kv heads repeated) and head outputs."""

    q: dict[int, torch.Tensor]
    k: dict[int, torch.Tensor]
    v: dict[int, torch.Tensor]
    z: dict[int, torch.Tensor]  # [E, T, H, D], the o_proj input


def _rotary(attn: nn.Module):
    fn = getattr(sys.modules[type(attn).__module__], "apply_rotary_pos_emb", None)
    if fn is None:
        raise UnsupportedModelError(
            f"{type(attn).__name__}: no apply_rotary_pos_emb beside it; AtP*'s QK fix needs "
            "the attention's queries and keys"
        )
    return fn


@torch.no_grad()
def capture_qkv(vlm: VLM, run: DecoderRun) -> QKV:
    """Replay the decoder on `run` and record each layer's post-rotary q/k/v (float32) and head outputs."""
    heads, kv, d = vlm.num_heads, vlm.num_kv_heads, vlm.head_dim
    raw: dict[tuple[str, int], torch.Tensor] = {}
    pos: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    z: dict[int, torch.Tensor] = {}
    with ExitStack() as stack:
        for i, layer in enumerate(vlm.layers):
            attn = layer.self_attn
            for name in ("q_proj", "k_proj", "v_proj"):
                if not hasattr(attn, name):
                    raise UnsupportedModelError(
                        f"{vlm.name}: layer {i} attention has no {name}; AtP*'s QK fix needs "
                        "separate q/k/v projections"
                    )

                def grab(_m, _a, out, key=(name, i)):
                    raw[key] = out.detach()

                stack.callback(getattr(attn, name).register_forward_hook(grab).remove)

            def grab_pos(_m, args, kwargs, i=i):
                pe = kwargs.get("position_embeddings")
                if pe is None:
                    raise UnsupportedModelError(
                        f"{vlm.name}: layer {i} attention was not given position_embeddings; "
                        "AtP*'s QK fix supports rotary (Llama-style) attention only"
                    )
                pos[i] = pe

            stack.callback(attn.register_forward_pre_hook(grab_pos, with_kwargs=True).remove)

            def grab_z(_m, args, i=i):
                z[i] = args[0].detach().view(*args[0].shape[:-1], heads, d)

            stack.callback(vlm.o_proj(i).register_forward_pre_hook(grab_z).remove)
        run_rows(vlm, run, torch.arange(run.embeds.shape[0]))
    q, k, v = {}, {}, {}
    for i, layer in enumerate(vlm.layers):
        e, t = raw[("q_proj", i)].shape[:2]
        qi = raw[("q_proj", i)].view(e, t, heads, d).transpose(1, 2)
        ki = raw[("k_proj", i)].view(e, t, kv, d).transpose(1, 2)
        vi = raw[("v_proj", i)].view(e, t, kv, d).transpose(1, 2)
        cos, sin = pos[i]
        qi, ki = _rotary(layer.self_attn)(qi, ki, cos, sin)
        rep = heads // kv
        q[i], k[i] = qi.float(), ki.repeat_interleave(rep, dim=1).float()
        v[i] = vi.repeat_interleave(rep, dim=1).float()
    return QKV(q, k, v, z)


def _mask(run: DecoderRun) -> torch.Tensor:
    """Additive attention mask `[E, 1, T, T]`: causal and padding."""
    keep = run.attention_mask.bool()
    t = keep.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=keep.device).tril()
    allowed = causal[None, None] & keep[:, None, None, :]
    return torch.zeros(allowed.shape, dtype=torch.float64, device=keep.device).masked_fill(
        ~allowed, float("-inf")
    )


def _scaling(vlm: VLM, layer: int) -> float:
    return float(getattr(vlm.layers[layer].self_attn, "scaling", vlm.head_dim**-0.5))


def effective_deltas(
    vlm: VLM, tgt: QKV, src: QKV, run: DecoderRun, qk_fix: bool = True, atol: float | None = None
) -> dict[int, torch.Tensor]:
    """Per layer `[E, T, H, D]`: the output change whose dot product with `dLD/dz` is the estimate.

    Without `qk_fix` this is `z_src - z_tgt` (plain AtP); with it, the sum of the query, key and value parts (module
    docstring). Raises when recomputing attention from the captured q/k/v does not give the model's head outputs
    (within `atol` x max(1, max|z|); default 2e-3 for float32 outputs, 4e-2 for half precision).
    """
    mask = _mask(run)
    valid = run.attention_mask.bool()[:, :, None, None]  # query rows that are not padding
    out: dict[int, torch.Tensor] = {}
    for layer in range(vlm.num_layers):
        z_dtype = tgt.z[layer].dtype
        z_t, z_s = tgt.z[layer].float(), src.z[layer].float()
        if not qk_fix:
            out[layer] = z_s - z_t
            continue
        s = _scaling(vlm, layer)
        q_t, k_t, v_t = (x[layer].double() for x in (tgt.q, tgt.k, tgt.v))
        q_s, k_s, v_s = (x[layer].double() for x in (src.q, src.k, src.v))
        logits = q_t @ k_t.transpose(-1, -2) * s + mask  # [E, H, T, T]
        logp = torch.log_softmax(logits, dim=-1)
        p = logp.exp()
        z_rec = (p @ v_t).transpose(1, 2)  # [E, T, H, D]
        # fp32 head outputs must be reproduced closely; bf16/fp16 ones were rounded (and computed) at ~4e-3
        rel = atol if atol is not None else (2e-3 if z_dtype == torch.float32 else 4e-2)
        tol = rel * max(1.0, float(z_t.abs().max()))
        err = float(torch.where(valid, z_rec.float() - z_t, 0.0).abs().max())
        if not err <= tol:
            raise UnsupportedModelError(
                f"{vlm.name}: layer {layer}: softmax(q k^T) v from the captured queries, keys "
                f"and values differs from the head outputs by {err:.2e}; AtP*'s QK fix "
                "does not support this attention"
            )
        # query part: each query row recomputed exactly with the source query
        p_q = torch.softmax(q_s @ k_t.transpose(-1, -2) * s + mask, dim=-1)
        dz_q = (p_q - p) @ v_t
        # key part: key s alone patched in row t moves its logit by dl; its odds scale by exp(dl)
        dl = q_t @ (k_s - k_t).transpose(-1, -2) * s  # [E, H, T(query), T(key)]
        one_minus = (-torch.expm1(logp)).clamp_min(1e-300)  # 1 - p_ts, accurate near saturation
        p_new = torch.sigmoid(logp - torch.log(one_minus) + dl)
        dp = torch.where(torch.isfinite(logits), p_new - p, torch.zeros_like(p))
        w = dp / one_minus
        # sum_s dp_ts (v[s] - (z[t] - p_ts v[s]) / (1 - p_ts)), without materialising [T, T, D]
        dz_k = dp @ v_t - (p @ v_t) * w.sum(dim=-1, keepdim=True) + (w * p) @ v_t
        dz_v = p @ (v_s - v_t)
        out[layer] = torch.where(valid, (dz_q + dz_k + dz_v).transpose(1, 2), 0.0).float()
    return out


# -- gradients, with GradDrop ----------------------------------------------------------------------------------
def _drop_hooks(vlm: VLM, state: dict[str, int | None], stack: ExitStack) -> None:
    """Tensor hooks zeroing the gradient of layer `state['drop']`'s attention and MLP outputs."""
    for i, layer in enumerate(vlm.layers):
        mlp = getattr(layer, "mlp", None)
        if mlp is None:
            raise UnsupportedModelError(
                f"{vlm.name}: decoder layer {i} has no .mlp; GradDrop drops a layer's "
                "attention and MLP contributions"
            )

        def fwd(_m, _a, out, i=i):
            t = out[0] if isinstance(out, tuple) else out
            if t.requires_grad:
                t.register_hook(lambda g, i=i: torch.zeros_like(g) if state["drop"] == i else None)

        stack.callback(vlm.o_proj(i).register_forward_hook(fwd).remove)
        stack.callback(mlp.register_forward_hook(fwd).remove)


def atp_star_stats(
    vlm: VLM,
    items: Sequence[PairItem],
    direction: str = "clean_to_edited",
    nodes: str = "head",
    graddrop: bool = True,
) -> ChunkStats:
    """Per-example AtP* estimates `[E, L, H]`: `signed` (the linear estimate on `nodes`, normalised by the edit
    effect like patching) and, with `graddrop`, `magnitude` (the GradDrop mean absolute estimate, averaged over
    pairs in logit-difference units)."""
    if nodes not in NODES:
        raise ValueError(f"unknown AtP* node set {nodes!r}; expected one of {NODES}")
    pr = pair_runs(vlm, items, direction)
    cands, clean, edited, run_c, run_e, ld_c, ld_e = (
        pr.cands,
        pr.clean,
        pr.edited,
        pr.run_c,
        pr.run_e,
        pr.ld_c,
        pr.ld_e,
    )
    target, source = (run_e, run_c) if direction == "clean_to_edited" else (run_c, run_e)
    if nodes == "qkv":
        deltas = effective_deltas(
            vlm, capture_qkv(vlm, target), capture_qkv(vlm, source), target, qk_fix=True
        )
    else:
        deltas = {
            layer: (source.heads[layer] - target.heads[layer]).float() for layer in range(vlm.num_layers)
        }
    sign = 1.0 if direction == "clean_to_edited" else -1.0  # edited_to_clean: effect = LD_c - LD_patched
    leaves = {layer: torch.zeros_like(z, requires_grad=True) for layer, z in target.heads.items()}
    rows = torch.arange(len(items))
    state: dict[str, int | None] = {"drop": None}

    def estimate(grads: Sequence[torch.Tensor]) -> torch.Tensor:
        return (
            torch.stack(
                [(deltas[layer].to(g.device) * g.float()).sum(dim=(1, 3)) for layer, g in enumerate(grads)],
                dim=1,
            )
            .double()
            .cpu()
            * sign
        )

    with ExitStack() as stack, torch.enable_grad():
        if graddrop:
            _drop_hooks(vlm, state, stack)
        logits = run_rows(vlm, target, rows, 0, lambda layer, z: z + leaves[layer])
        lp = cands.logprobs(logits)
        ld = logit_diff(over_candidates(lp, clean.to(lp.device), edited.to(lp.device))).sum()
        params = [leaves[layer] for layer in range(vlm.num_layers)]
        signed = estimate(torch.autograd.grad(ld, params, retain_graph=graddrop))
        stats: ChunkStats = {"signed": (signed, ld_c - ld_e, torch.ones(len(items), dtype=torch.bool))}
        if graddrop:
            total = torch.zeros_like(signed)
            for drop in range(vlm.num_layers):
                state["drop"] = drop
                grads = torch.autograd.grad(
                    ld, params, retain_graph=drop + 1 < vlm.num_layers, allow_unused=True
                )
                grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
                total += estimate(grads).abs()
            state["drop"] = None
            # a mean over pairs in LD units: dividing by the summed edit effect would flip every magnitude's sign
            # when that sum is negative
            stats["magnitude"] = (
                total / max(1, vlm.num_layers - 1),
                torch.ones(len(items), dtype=torch.float64),
                torch.ones(len(items), dtype=torch.bool),
            )
    return stats


# -- verifying the top-K heads with exact patching -----------------------------------------------------------
def verify_top(
    vlm: VLM,
    pairs: Sequence[ImagePair],
    scores: HeadScores,
    k: int,
    direction: str = "clean_to_edited",
    batch_size: int = 64,
    pair_batch: int = 4,
    filter_: bool = False,
    instruction: str | None = None,
    stat: str | None = None,
) -> list[dict]:
    """Exact activation patching of the top-K attribution heads (by |`stat`|: AtP*'s `magnitude` when the scores
    have it, else the signed score), side by side with their estimates: rows `{rank, layer, head, attribution, exact}` (plus `magnitude` for AtP*), normalised like the
    scores (summed effects over the summed edit effect). `pairs` and `filter_` must be those the scores used.
    """
    stat = stat or ("magnitude" if "magnitude" in scores.scores.get("all", {}) else "signed")
    heads = [(layer, head) for layer, head, _ in rank_heads(scores.get("all", stat), k, "abs")]
    items = prepare_pairs(vlm, pairs, instruction if instruction is not None else DEFAULT_INSTRUCTION)
    if filter_:
        items, _ = vseam_filter(vlm, items, pair_batch)
    if not items:
        raise ValueError("verify_top: no pairs to patch (the filter kept none)")
    num = torch.zeros(len(heads), dtype=torch.float64)
    den = 0.0
    for s in range(0, len(items), pair_batch):
        chunk = items[s : s + pair_batch]
        effect, edit, _ = patching_stats(vlm, chunk, batch_size, direction, heads=heads)["signed"]
        num += torch.stack([effect[:, layer, head] for layer, head in heads], dim=1).sum(dim=0)
        den += float(edit.sum())
    exact = num / den if den != 0 else torch.full_like(num, math.nan)
    rows = []
    for r, (layer, head) in enumerate(heads):
        row = {
            "rank": r + 1,
            "layer": layer,
            "head": head,
            "attribution": float(scores.signed()[layer, head]),
            "exact": float(exact[r]),
        }
        if "magnitude" in scores.scores.get("all", {}):
            row["magnitude"] = float(scores.get("all", "magnitude")[layer, head])
        rows.append(row)
    return rows


def format_verify(rows: Sequence[dict]) -> str:
    """A markdown table of :func:`verify_top` rows."""
    extra = "magnitude" in rows[0] if rows else False
    head = "| rank | head | attribution | exact patching |" + (" AtP* magnitude |" if extra else "")
    lines = [head, "|" + "---:|" * (5 if extra else 4)]
    for r in rows:
        lines.append(
            f"| {r['rank']} | L{r['layer']}H{r['head']} | {r['attribution']:+.4f} | {r['exact']:+.4f} |"
            + (f" {r['magnitude']:.4f} |" if extra else "")
        )
    return "\n".join(lines)


__all__ = ["atp_star_stats", "capture_qkv", "effective_deltas", "format_verify", "verify_top"]
