"""Benchmark: batched exact head discovery vs the straightforward loop, and attribution vs exact patching.

    python -m bench.discovery [--embedded checkpoints/tiny-llava] [--n-ref 4] [--n-patch 16] [--threads 1]

Two models, side by side: a random-weight LLaVA with LLaVA-1.5's decoder head grid (32 layers x 32 heads, hidden
512, head_dim 16) and the embedded trained model. For each:

1. the reference loop (one full-model forward per (example, layer, head) at batch size 1 under `ablate_heads`)
   vs batched exact ablation (`run_discovery(method="ablation")`): max |score difference| and speed ratio;
2. exact activation patching vs attribution patching: Spearman rank correlation of the signed scores, speed ratio.

Pairs come from the synthetic world (`--pairs`, default: a small `vseam_pl.synth` test split generated in a temp
folder). Prints a markdown table (also written to `--out` when given).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from vseam_pl.discovery import DiscoveryConfig, run_discovery
from vseam_pl.discovery.data import CandidateIndex
from vseam_pl.encoding import encode
from vseam_pl.interventions.ablation import ablate_heads
from vseam_pl.pairs import images_of, load_pairs, prepare_pairs
from vseam_pl.scoring import forward_logits
from vseam_pl.tiny import TinySizes, build_tiny_llava
from vseam_pl.vlm import VLM, load_vlm

LLAVA15_GRID = TinySizes(
    image_size=32,
    patch_size=8,
    text_hidden=512,
    text_layers=32,
    text_heads=32,
    text_kv_heads=32,
    text_intermediate=1024,
)


def synthetic_pairs(root: Path) -> Path:
    from vseam_pl.synth.writers import generate_benchmarks

    generate_benchmarks(root, seed=0, n_train=4, n_val=4, n_test=24)
    return root / "test" / "pairs" / "pairs.jsonl"


def grid_model(pairs_path: Path, folder: Path) -> VLM:
    """Random-weight LLaVA with a 32x32 head grid whose word-level vocabulary covers the pairs' questions."""
    words = {w.strip("?.,").lower() for p in load_pairs(pairs_path) for w in p.question.split()} | {
        "yes",
        "no",
    }
    torch.manual_seed(0)
    model, processor = build_tiny_llava(sorted(words), LLAVA15_GRID)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return load_vlm(str(folder))


@torch.no_grad()
def reference_ablation(vlm: VLM, pairs, mode: str, heads: list[tuple[int, int]]) -> torch.Tensor:
    """The straightforward loop: for each example and head, one batch-1 forward of the whole model."""
    items = prepare_pairs(vlm, pairs)
    d = torch.zeros(vlm.num_layers, vlm.num_heads, dtype=torch.float64)
    for it in items:
        enc = encode(vlm, [it.prompt], images_of([it], "clean"))
        cands = CandidateIndex.of([it])

        def p(enc=enc, cands=cands, it=it) -> float:
            return float(cands.logprobs(forward_logits(vlm, enc)[:, -1])[0, it.correct].exp())

        base = p()
        for layer, head in heads:
            with ablate_heads(vlm, [(layer, head)], mode):
                d[layer, head] += base - p()
    return (d / len(items)).float()


def sample_heads(vlm: VLM, n: int | None) -> list[tuple[int, int]]:
    """All heads, or a fixed random sample of `n` of them for a shorter reference run."""
    grid = [(layer, head) for layer in range(vlm.num_layers) for head in range(vlm.num_heads)]
    if n is None or n >= len(grid):
        return grid
    pick = torch.randperm(len(grid), generator=torch.Generator().manual_seed(0))[:n].sort().values
    return [grid[i] for i in pick.tolist()]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_model(
    name: str,
    vlm: VLM,
    pairs,
    n_ref: int,
    ref_heads: int | None,
    n_patch: int,
    batch_size: int,
    ablation: bool = True,
) -> list[str]:
    rows = []
    if ablation:
        rows += bench_ablation(name, vlm, pairs, n_ref, ref_heads, batch_size)
    rows += bench_patching(name, vlm, pairs, n_patch, batch_size)
    return rows


def bench_ablation(
    name: str, vlm: VLM, pairs, n_ref: int, ref_heads: int | None, batch_size: int
) -> list[str]:
    rows = []
    grid = f"{vlm.num_layers}x{vlm.num_heads}"
    n_heads = vlm.num_layers * vlm.num_heads
    ref_pairs = pairs[:n_ref]
    cfg = DiscoveryConfig(
        method="ablation", ablation_mode="mean_others", batch_size=batch_size, pair_batch=n_ref
    )
    run_discovery(
        vlm, ref_pairs[:1], DiscoveryConfig(method="attribution")
    )  # warm-up (allocator, lazy imports)
    heads = sample_heads(vlm, ref_heads)
    ref, t_ref = timed(lambda: reference_ablation(vlm, ref_pairs, "mean_others", heads))
    batched, t_bat = timed(lambda: run_discovery(vlm, ref_pairs, cfg).scores.signed())
    idx = torch.tensor([layer * vlm.num_heads + head for layer, head in heads])
    diff = float((ref.flatten()[idx] - batched.flatten()[idx]).abs().max())
    t_ref_full = t_ref * n_heads / len(heads)
    note = (
        ""
        if len(heads) == n_heads
        else f" (measured {t_ref:.1f} s on {len(heads)} heads, scaled to {n_heads})"
    )
    rows.append(
        f"| {name} | {grid} | ablation: reference loop vs batched exact | {n_ref} | {t_ref_full:.1f} s{note} | "
        f"{t_bat:.1f} s | **{t_ref_full / t_bat:.1f}x** | max abs diff {diff:.1e} on {len(heads)} heads "
        f"(max abs score {float(ref.flatten()[idx].abs().max()):.1e}) |"
    )
    print(rows[-1], flush=True)
    return rows


def recall(exact: torch.Tensor, estimate: torch.Tensor, k: int) -> float:
    """Share of the k heads with the largest |exact| effect that are among the k largest |estimate| (the paper's
    concern: false negatives)."""
    top = set(exact.abs().flatten().topk(k).indices.tolist())
    return len(top & set(estimate.abs().flatten().topk(k).indices.tolist())) / k


def bench_patching(name: str, vlm: VLM, pairs, n_patch: int, batch_size: int) -> list[str]:
    """Exact patching vs attribution, and vs AtP* (head nodes: GradDrop magnitude against |exact|; q/k/v nodes:
    the paper's QK fix, signed)."""
    rows = []
    grid = f"{vlm.num_layers}x{vlm.num_heads}"
    patch_pairs = pairs[:n_patch]

    def scores(**config):
        """Discovery's scores on the patching pairs (4 pairs per forward), and the seconds it took."""
        return timed(lambda: run_discovery(vlm, patch_pairs, DiscoveryConfig(pair_batch=4, **config)).scores)

    exact, t_exact = scores(method="patching", batch_size=batch_size)
    approx, t_attr = scores(method="attribution")
    exact, approx = exact.signed(), approx.signed()
    rho = float(spearmanr(exact.flatten(), approx.flatten()).statistic)
    rows.append(
        f"| {name} | {grid} | patching: exact (batched) vs attribution | {n_patch} | {t_exact:.1f} s | "
        f"{t_attr:.2f} s | **{t_exact / t_attr:.1f}x** | Spearman rho {rho:.3f} |"
    )
    print(rows[-1], flush=True)
    star, t_star = scores(method="atp_star")
    mag = star.get("all", "magnitude")
    rho_mag = float(spearmanr(exact.abs().flatten(), mag.flatten()).statistic)
    rho_abs = float(spearmanr(exact.abs().flatten(), approx.abs().flatten()).statistic)
    k = max(1, exact.numel() // 64) * 5  # 5 heads of 64, 80 of 1024
    rows.append(
        f"| {name} | {grid} | patching: exact vs AtP* (head nodes + GradDrop) | {n_patch} | {t_exact:.1f} s | "
        f"{t_star:.2f} s | **{t_exact / t_star:.1f}x** | vs abs(exact): Spearman rho GradDrop {rho_mag:.3f}, "
        f"abs(AtP) {rho_abs:.3f}; top-{k} recall GradDrop {recall(exact, mag, k):.2f}, abs(AtP) "
        f"{recall(exact, approx, k):.2f} |"
    )
    print(rows[-1], flush=True)
    qkv, t_qkv = scores(method="atp_star", atp_nodes="qkv")
    qkv = qkv.signed()
    rho_qkv = float(spearmanr(exact.flatten(), qkv.flatten()).statistic)
    rows.append(
        f"| {name} | {grid} | patching: exact vs AtP* (q/k/v nodes, QK fix, + GradDrop) | {n_patch} | "
        f"{t_exact:.1f} s | {t_qkv:.2f} s | **{t_exact / t_qkv:.1f}x** | Spearman rho {rho_qkv:.3f} (signed) |"
    )
    print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embedded", default="checkpoints/tiny-llava", help="trained model folder ('' to skip)")
    p.add_argument("--pairs", help="pairs.jsonl (default: generate a small synthetic test split)")
    p.add_argument("--n-ref", type=int, default=4, help="examples for the reference loop (embedded model)")
    p.add_argument(
        "--n-patch", type=int, default=16, help="examples for patching vs attribution (embedded model)"
    )
    p.add_argument("--grid-n-ref", type=int, default=2, help="examples for the reference loop (32x32 model)")
    p.add_argument(
        "--grid-ref-heads",
        type=int,
        default=64,
        help="heads the 32x32 reference loop runs (its time is scaled to all 1024); 0 = all",
    )
    p.add_argument(
        "--grid-n-patch", type=int, default=1, help="examples for patching vs attribution (32x32 model)"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on shared, busy cores)"
    )
    p.add_argument("--skip-grid", action="store_true", help="only the embedded model")
    p.add_argument("--only-patching", action="store_true", help="skip the ablation comparison")
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        pairs_path = Path(args.pairs) if args.pairs else synthetic_pairs(Path(tmp) / "synth")
        pairs = load_pairs(pairs_path)
        header = [
            "| model | head grid | comparison | N | slow | fast | speed-up | agreement |",
            "|---|---|---|---|---|---|---|---|",
        ]
        print("\n".join(header), flush=True)
        rows = []
        if not args.skip_grid:
            rows += bench_model(
                "random LLaVA-1.5 grid (hidden 512)",
                grid_model(pairs_path, Path(tmp) / "grid"),
                pairs,
                args.grid_n_ref,
                args.grid_ref_heads or None,
                args.grid_n_patch,
                args.batch_size,
                not args.only_patching,
            )
        if args.embedded:
            if not Path(args.embedded).exists():
                print(f"embedded model {args.embedded} not found; skipped", file=sys.stderr)
            else:
                rows += bench_model(
                    Path(args.embedded).name,
                    load_vlm(args.embedded),
                    pairs,
                    args.n_ref,
                    None,
                    args.n_patch,
                    args.batch_size,
                    not args.only_patching,
                )
    table = "\n".join(header + rows)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
