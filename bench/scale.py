"""Benchmark at the scale users run: the real LLaVA-1.5 / InstructBLIP architectures with random weights, every
cost a user weighs, side by side in one run.

    python -m bench.scale --preset tiny [--json FILE]                                  # CPU, ~2 minutes
    python -m bench.scale --preset llava-1.5-7b --json docs/results/scale-llava-1.5-7b.json   # one GPU

Presets: `tiny` (an 8x8-head LLaVA, 16 image tokens, CPU float32), `llava-1.5-7b`, `llava-1.5-13b` (CLIP ViT-L/14 at
336 px = 576 image tokens, Llama/Vicuna decoder 32x32 / 40x40 heads, vocabulary 32064) and `instructblip-vicuna-7b`
(EVA ViT-g/14 at 224 px, 12-layer Q-Former with 32 query tokens, Vicuna-7B decoder). The big presets are built
directly on the GPU in bf16 with random weights (no download: the architecture is what costs time and memory) and
prompts of the length the V-SEAM questions have (~20-30 text tokens after the image). Measured, on POPE-shaped yes/no
questions and synthetic-world clean/edited pairs:

- discovery: the per-head loop (one batch-1 full-model forward per head under `ablate_heads`, on a sample of heads,
  scaled to the grid) vs batched exact ablation at each `--batch-sizes` (rows/s, speed-up, max |score difference|
  on the sampled heads); exact patching vs attribution and AtP* (speed-up, Spearman rho of the signed scores and of
  AtP*'s GradDrop magnitude against |exact|);
- a training step (forward + backward + AdamW) of the V-SEAM scales vs `peft` IA3 vs LoRA r=8, time and peak memory
  as ratios to a frozen no-grad forward of the same batch;
- inference with scales attached as hooks and folded into `o_proj` vs unmodulated;
- evaluation throughput `questions_per_s`, closed-set scoring (one forward) and greedy generation, per batch size;
- `peak_memory` (MB) of each: `torch.cuda.max_memory_allocated` above the memory before the call on a GPU, the rise of
  the peak resident set on CPU (see bench/training.py).

The JSON (`--json`) holds every number, the command, the device and the targets of issue 20 (met or not).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr

from bench import _env
from bench import discovery as discovery_bench
from bench import training as training_bench
from vseam_pl.discovery import DiscoveryConfig, run_discovery
from vseam_pl.encoding import encode
from vseam_pl.pairs import images_of, load_pairs, prepare_pairs
from vseam_pl.tiny import TinySizes, build_tiny_instructblip, build_tiny_llava
from vseam_pl.vlm import VLM, resolve_dtype, wrap_vlm


# -- presets --------------------------------------------------------------------------------------------------------
@dataclass
class Preset:
    family: str  # llava | instructblip
    sizes: TinySizes  # the geometry vseam_pl.tiny builds (text_vocab None: the tokenizer's size)
    dtype: str = "bfloat16"
    attn: str = "sdpa"
    n_ref: int = 1  # pairs for the per-head loop and batched ablation
    ref_heads: int = 64  # heads the per-head loop runs (scaled to the grid)
    n_patch: int = 2  # pairs for exact patching vs attribution / AtP*
    batch_sizes: tuple[int, ...] = (16, 64, 256)  # discovery rows per forward
    eval_batch_sizes: tuple[int, ...] = (1, 8, 32)
    train_batch: int = 8
    gen_tokens: int = 4
    repeats: int = 5


LLAMA_7B = {
    "text_hidden": 4096,
    "text_layers": 32,
    "text_heads": 32,
    "text_kv_heads": 32,
    "text_intermediate": 11008,
    "text_max_positions": 4096,
}
LLAMA_13B = {
    **LLAMA_7B,
    "text_hidden": 5120,
    "text_layers": 40,
    "text_heads": 40,
    "text_kv_heads": 40,
    "text_intermediate": 13824,
}
CLIP_L336 = {  # MLP 4096 = 4 x hidden
    "vision_hidden": 1024,
    "vision_layers": 24,
    "vision_heads": 16,
    "image_size": 336,
    "patch_size": 14,
}
PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "llava",
        TinySizes(vision_layers=2, text_max_positions=4096),  # CLIP 64/2/4, Llama 128/8x8/384 at 64 px
        dtype="float32",
        attn="eager",
        n_ref=2,
        ref_heads=0,
        n_patch=4,
        batch_sizes=(16, 64),
        eval_batch_sizes=(1, 8),
        train_batch=4,
        gen_tokens=2,
        repeats=3,
    ),
    "llava-1.5-7b": Preset("llava", TinySizes(**CLIP_L336, **LLAMA_7B, text_vocab=32064)),
    "llava-1.5-13b": Preset(
        "llava",
        TinySizes(**CLIP_L336, **LLAMA_13B, text_vocab=32064),
        ref_heads=50,
    ),
    "instructblip-vicuna-7b": Preset(
        "instructblip",
        TinySizes(
            image_size=224,
            patch_size=14,
            vision_hidden=1408,
            vision_layers=39,
            vision_heads=16,
            vision_intermediate=6144,
            **LLAMA_7B,
            text_vocab=32001,
            num_query_tokens=32,
            qformer_layers=12,
            qformer_hidden=768,
            qformer_heads=12,
            qformer_intermediate=3072,
            qformer_vocab=30523,
        ),
    ),
}


def build_vlm(name: str, words: list[str], device: torch.device, dtype: str | None = None) -> VLM:
    """The preset's architecture with random weights (seed 0), created directly on `device` in its dtype, and a
    word-level processor producing the real number of image tokens."""
    p = PRESETS[name]
    builder = build_tiny_llava if p.family == "llava" else build_tiny_instructblip
    torch.manual_seed(0)
    model, processor = builder(
        words, p.sizes, device=device, dtype=resolve_dtype(dtype or p.dtype), attn_implementation=p.attn
    )
    return wrap_vlm(model, processor, name)


# -- measuring ------------------------------------------------------------------------------------------------------
def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float]:
    """(result, seconds, peak memory MB) of one call."""
    box: dict[str, Any] = {}

    def call() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        box["out"] = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        box["s"] = time.perf_counter() - start

    mb = training_bench.peak_memory_mb(call, device)
    return box["out"], box["s"], mb


def rho(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(spearmanr(a.flatten().double(), b.flatten().double()).statistic)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- the four parts -------------------------------------------------------------------------------------------------
def bench_discovery(
    vlm: VLM, pairs: list, p: Preset, device: torch.device, batch_sizes: list[int]
) -> dict[str, Any]:
    n_heads = vlm.num_layers * vlm.num_heads
    ref_pairs = pairs[: p.n_ref]
    run_discovery(vlm, ref_pairs[:1], DiscoveryConfig(method="attribution"))  # warm-up (allocator, kernels)
    heads = discovery_bench.sample_heads(vlm, p.ref_heads or None)
    ref, t_ref, m_ref = measure(
        lambda: discovery_bench.reference_ablation(vlm, ref_pairs, "mean_others", heads), device
    )
    idx = torch.tensor([layer * vlm.num_heads + head for layer, head in heads])
    loop_rows_per_s = len(ref_pairs) * len(heads) / t_ref
    out: dict[str, Any] = {
        "pairs": len(ref_pairs),
        "heads": n_heads,
        "per_head_loop": {
            "heads_run": len(heads),
            "seconds": t_ref,
            "seconds_full_grid": t_ref * n_heads / len(heads),
            "rows_per_s": loop_rows_per_s,
            "peak_memory": m_ref,
        },
        "batched_ablation": [],
    }
    for bs in batch_sizes:
        cfg = DiscoveryConfig(
            method="ablation", ablation_mode="mean_others", batch_size=bs, pair_batch=p.n_ref
        )
        scores, t, m = measure(lambda cfg=cfg: run_discovery(vlm, ref_pairs, cfg).scores.signed(), device)
        rows_per_s = len(ref_pairs) * n_heads / t
        out["batched_ablation"].append(
            {
                "batch_size": bs,
                "seconds": t,
                "rows_per_s": rows_per_s,
                "speedup_vs_loop": rows_per_s / loop_rows_per_s,
                "max_abs_diff_vs_loop": float((ref.flatten()[idx] - scores.flatten()[idx]).abs().max()),
                "max_abs_score": float(ref.flatten()[idx].abs().max()),
                "peak_memory": m,
            }
        )
        free(device)
    best = max(out["batched_ablation"], key=lambda r: r["rows_per_s"])
    patch_pairs = pairs[: p.n_patch]
    exact, t_exact, m_exact = measure(
        lambda: run_discovery(
            vlm,
            patch_pairs,
            DiscoveryConfig(method="patching", batch_size=best["batch_size"], pair_batch=p.n_patch),
        ).scores.signed(),
        device,
    )
    free(device)
    attr, t_attr, m_attr = measure(
        lambda: run_discovery(
            vlm, patch_pairs, DiscoveryConfig(method="attribution", pair_batch=p.n_patch)
        ).scores.signed(),
        device,
    )
    free(device)
    star, t_star, m_star = measure(
        lambda: (
            run_discovery(vlm, patch_pairs, DiscoveryConfig(method="atp_star", pair_batch=p.n_patch)).scores
        ),
        device,
    )
    free(device)
    out["patching"] = {
        "pairs": len(patch_pairs),
        "exact": {"batch_size": best["batch_size"], "seconds": t_exact, "peak_memory": m_exact},
        "attribution": {
            "seconds": t_attr,
            "speedup_vs_exact": t_exact / t_attr,
            "spearman_rho": rho(exact, attr),
            "peak_memory": m_attr,
        },
        "atp_star": {
            "seconds": t_star,
            "speedup_vs_exact": t_exact / t_star,
            "spearman_rho": rho(exact, star.signed()),
            "magnitude_spearman_rho_vs_abs_exact": rho(exact.abs(), star.get("all", "magnitude")),
            "peak_memory": m_star,
        },
    }
    return out


def bench_training(
    name: str, vlm: VLM, words: list[str], p: Preset, device: torch.device, dtype: str | None = None
) -> dict[str, Any]:
    batch = training_bench.load_batch(vlm, p.train_batch)
    forward = training_bench.frozen_forward(vlm, batch)
    m_fwd = training_bench.peak_memory_mb(forward, device)
    mod = training_bench.random_scales(vlm).to(device).attach(vlm)
    step = training_bench.training_step(vlm, [mod.scales], batch)
    m_step = training_bench.peak_memory_mb(step, device)
    # the forward and the scales step in turns (the hooks are a no-op on a no-grad forward's cost: scales attached)
    timed = training_bench.alternated_ms({"frozen_forward": forward, "scales": step}, p.repeats, device)
    t_fwd = timed["frozen_forward"]["median_ms"]
    rows = {
        "frozen_forward": {
            "trainable": 0,
            "ms": t_fwd,
            "peak_memory": m_fwd,
            "times": timed["frozen_forward"],
        },
        "scales": {
            "trainable": mod.scales.numel(),
            "ms": timed["scales"]["median_ms"],
            "peak_memory": m_step,
            "times": timed["scales"],
        },
    }
    mod.detach()
    del step
    free(device)
    spread = training_bench.inference_spread(vlm, mod, batch, p.repeats, device)
    t_none, t_att, t_fold = (spread[k]["median_ms"] for k in ("none", "attached", "folded"))
    inference = {
        "unmodulated_ms": t_none,
        "attached_ms": t_att,
        "folded_ms": t_fold,
        "attached_vs_unmodulated": t_att / t_none,
        "folded_vs_unmodulated": t_fold / t_none,
        "attached_loss": spread["attached_loss"],
        "folded_loss": spread["folded_loss"],
        "alternated": spread,
    }
    for kind in ("ia3", "lora"):
        fresh = build_vlm(name, words, device, dtype)
        params = training_bench.inject_peft(fresh, kind, device)
        step = training_bench.training_step(fresh, params, batch)
        rows[kind] = {
            "trainable": sum(q.numel() for q in params),
            "ms": training_bench.median_ms(step, p.repeats, device),
            "peak_memory": training_bench.peak_memory_mb(step, device),
        }
        del fresh, params, step
        free(device)
    for r in rows.values():
        r["time_vs_forward"] = r["ms"] / t_fwd
        r["memory_vs_forward"] = r["peak_memory"] / m_fwd if m_fwd > 0 else None
    return {"batch": p.train_batch, "steps": rows, "inference": inference}


def pope_questions(n: int) -> tuple[list[str], list]:
    """`n` POPE-shaped yes/no questions and images from a synthetic-world POPE test split."""
    from vseam_pl.data import build_datamodule
    from vseam_pl.synth import generate_benchmarks

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_benchmarks(Path(tmp) / "synth", n_train=2, n_val=2, n_test=max(8, n))
        dm = build_datamodule("pope", root=str(root), batch_size=n, num_workers=0, limit=n)
        dm.setup("test")
        examples = [ex for b in dm.test_dataloader() for ex in b.examples]
    while len(examples) < n:
        examples += examples[: n - len(examples)]
    return [ex.record.question for ex in examples[:n]], [ex.image.copy() for ex in examples[:n]]


@torch.no_grad()
def bench_evaluation(
    vlm: VLM, p: Preset, device: torch.device, batch_sizes: list[int]
) -> list[dict[str, Any]]:
    from vseam_pl.prompts import build_prompts
    from vseam_pl.scoring import generate_answers, score_candidates

    questions, images = pope_questions(max(batch_sizes))
    prompts = build_prompts(vlm, questions)
    out = []
    for b in batch_sizes:
        for mode in ("closed_set", "generation"):
            if mode == "closed_set":
                fn = lambda b=b: score_candidates(vlm, prompts[:b], images[:b], [("yes", "no")] * b)  # noqa: E731
            else:
                fn = lambda b=b: generate_answers(vlm, prompts[:b], images[:b], p.gen_tokens)  # noqa: E731
            fn()  # warm-up
            times = []
            for _ in range(p.repeats):
                _, t, m = measure(fn, device)
                times.append(t)
            t = sorted(times)[len(times) // 2]
            out.append(
                {
                    "mode": mode,
                    "batch_size": b,
                    "seconds_per_batch": t,
                    "questions_per_s": b / t,
                    "peak_memory": m,
                    **({"max_new_tokens": p.gen_tokens} if mode == "generation" else {}),
                }
            )
            free(device)
    return out


def targets(r: dict[str, Any]) -> dict[str, Any]:
    """Issue 20's targets, met or not, from the measured numbers."""
    d, steps, inf = r["discovery"], r["training"]["steps"], r["training"]["inference"]
    best = max(row["speedup_vs_loop"] for row in d["batched_ablation"])
    attr = d["patching"]["attribution"]
    return {
        "batched_ablation_10x_loop": {"value": best, "met": best >= 10},
        "attribution_100x_exact_at_rho_0.8": {
            "value": attr["speedup_vs_exact"],
            "rho": attr["spearman_rho"],
            "met": attr["speedup_vs_exact"] >= 100 and attr["spearman_rho"] >= 0.8,
        },
        "scales_step_3x_forward_less_memory_than_peft": {
            "value": steps["scales"]["time_vs_forward"],
            "met": steps["scales"]["time_vs_forward"] <= 3
            and steps["scales"]["peak_memory"]
            < min(steps["ia3"]["peak_memory"], steps["lora"]["peak_memory"]),
        },
        "folded_1.01x_unmodulated": {
            "value": inf["folded_vs_unmodulated"],
            "met": inf["folded_vs_unmodulated"] <= 1.01,
        },
    }


def summary(r: dict[str, Any]) -> str:
    """A short markdown report of the JSON."""
    d, tr = r["discovery"], r["training"]
    m = r["model"]
    lines = [
        f"## {r['preset']} ({m['layers']}x{m['heads']} heads, hidden {m['hidden']}, {m['prompt_tokens']} prompt "
        f"tokens incl. {m['image_tokens']} image tokens) on {r['device']}, {r['dtype']}",
        "",
        "| discovery | seconds | rows/s | speed-up | agreement | peak memory (MB) |",
        "|---|---:|---:|---:|---|---:|",
        f"| per-head loop ({d['per_head_loop']['heads_run']} heads, scaled to {d['heads']}) | "
        f"{d['per_head_loop']['seconds_full_grid']:.1f} | {d['per_head_loop']['rows_per_s']:.1f} | 1.0x | | "
        f"{d['per_head_loop']['peak_memory']:.0f} |",
    ]
    for row in d["batched_ablation"]:
        lines.append(
            f"| batched exact ablation, batch {row['batch_size']} | {row['seconds']:.1f} | "
            f"{row['rows_per_s']:.1f} | **{row['speedup_vs_loop']:.1f}x** | max abs diff "
            f"{row['max_abs_diff_vs_loop']:.1e} (max score {row['max_abs_score']:.1e}) | {row['peak_memory']:.0f} |"
        )
    pt = d["patching"]
    lines.append(
        f"| exact patching ({pt['pairs']} pairs, batch {pt['exact']['batch_size']}) | {pt['exact']['seconds']:.1f} "
        f"| | 1.0x | | {pt['exact']['peak_memory']:.0f} |"
    )
    for key, label in (("attribution", "attribution"), ("atp_star", "AtP* (GradDrop)")):
        a = pt[key]
        extra = (
            f", magnitude vs abs exact {a['magnitude_spearman_rho_vs_abs_exact']:.3f}"
            if key == "atp_star"
            else ""
        )
        lines.append(
            f"| {label} | {a['seconds']:.2f} | | **{a['speedup_vs_exact']:.1f}x** | Spearman rho "
            f"{a['spearman_rho']:.3f}{extra} | {a['peak_memory']:.0f} |"
        )
    lines += [
        "",
        f"| training step (batch {tr['batch']}) | trainable | ms | x forward | peak memory (MB) | x forward |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("frozen_forward", "frozen forward"),
        ("scales", "V-SEAM scales"),
        ("ia3", "peft IA3"),
        ("lora", "peft LoRA r=8"),
    ):
        s = tr["steps"][key]
        mem = f"{s['memory_vs_forward']:.2f}" if s["memory_vs_forward"] is not None else "n/a"
        lines.append(
            f"| {label} | {s['trainable']:,} | {s['ms']:.1f} | {s['time_vs_forward']:.2f} | "
            f"{s['peak_memory']:.0f} | {mem} |"
        )
    inf = tr["inference"]
    alt = inf.get("alternated")
    per_round = (
        f" (per-round ranges {alt['attached']['vs_none_per_round'][0]:.2f}-{alt['attached']['vs_none_per_round'][1]:.2f}"
        f" and {alt['folded']['vs_none_per_round'][0]:.2f}-{alt['folded']['vs_none_per_round'][1]:.2f},"
        f" {alt['repeats']} alternated rounds)"
        if alt
        else ""
    )
    env = r.get("environment") or {}
    lines += [
        "",
        f"inference: attached {inf['attached_vs_unmodulated']:.3f}x, folded {inf['folded_vs_unmodulated']:.3f}x "
        f"unmodulated ({inf['unmodulated_ms']:.1f} ms){per_round}; folded vs attached loss "
        f"{inf['folded_loss']:.5f} vs {inf['attached_loss']:.5f}",
        "",
        f"torch threads {env.get('torch_threads')}, load average at start {env.get('load_average')}, at end "
        f"{r.get('load_average_at_end')}",
        "",
        "| evaluation | batch | questions/s | peak memory (MB) |",
        "|---|---:|---:|---:|",
    ]
    for e in r["evaluation"]:
        lines.append(
            f"| {e['mode']} | {e['batch_size']} | {e['questions_per_s']:.1f} | {e['peak_memory']:.0f} |"
        )
    lines += [
        "",
        "targets: "
        + ", ".join(
            f"{k} {'met' if v['met'] else 'MISSED'} ({v['value']:.2f})" for k, v in r["targets"].items()
        ),
    ]
    return "\n".join(lines)


def run(
    preset: str,
    device: torch.device,
    batch_sizes: list[int] | None,
    eval_batch_sizes: list[int] | None,
    command: str,
    save: Callable[[dict[str, Any]], None] = lambda _r: None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Every part in turn; `save(result)` after each, so a run cut short by a timeout keeps what it measured."""
    p = PRESETS[preset]
    with tempfile.TemporaryDirectory() as tmp:
        pairs_path = discovery_bench.synthetic_pairs(Path(tmp) / "synth")
        pairs = load_pairs(pairs_path)
        words = sorted(
            set(synthetic_words())
            | {w.strip("?.,").lower() for q in pairs for w in q.question.split()}
            | {"yes", "no"}
        )
        vlm = build_vlm(preset, words, device, dtype)
        item = prepare_pairs(vlm, pairs[:1])[0]
        enc = encode(vlm, [item.prompt], images_of([item], "clean"))
        n_image = (
            p.sizes.num_query_tokens
            if p.family == "instructblip"
            else (p.sizes.image_size // p.sizes.patch_size) ** 2
        )
        result: dict[str, Any] = {
            "preset": preset,
            "command": command,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} thread(s))",
            "dtype": str(vlm.dtype).replace("torch.", ""),
            "torch": torch.__version__,
            "model": {
                "layers": vlm.num_layers,
                "heads": vlm.num_heads,
                "hidden": vlm.hidden_size,
                "parameters": sum(q.numel() for q in vlm.model.parameters()),
                "image_tokens": n_image,
                "prompt_tokens": int(enc.input_ids.shape[1]),
            },
        }
        result["environment"] = _env.environment()
        bs = batch_sizes or list(p.batch_sizes)
        save(result)
        start = time.perf_counter()

        def say(part: str) -> None:
            print(f"[scale] {part} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

        result["discovery"] = bench_discovery(vlm, pairs, p, device, bs)
        save(result)
        say("discovery")
        result["evaluation"] = bench_evaluation(vlm, p, device, eval_batch_sizes or list(p.eval_batch_sizes))
        save(result)
        say("evaluation")
        result["training"] = bench_training(preset, vlm, words, p, device, dtype)
        say("training")
    result["targets"] = targets(result)
    result["load_average_at_end"] = _env.environment()["load_average"]
    return result


def synthetic_words() -> list[str]:
    """Words of the synthetic world's GQA and POPE questions (so the word-level tokenizer knows them)."""
    from vseam_pl.synth import generate_benchmarks

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_benchmarks(Path(tmp) / "synth", n_train=2, n_val=2, n_test=16)
        words = set()
        for f in Path(root).rglob("*.json*"):
            words |= {w.strip("?.,\"':").lower() for w in f.read_text().split() if w.isascii()}
    return sorted(w for w in words if w.isalpha())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), default="tiny")
    p.add_argument(
        "--device", default=None, help="default: cuda when available (big presets need it), else cpu"
    )
    p.add_argument(
        "--batch-sizes", type=int, nargs="+", help="discovery rows per forward (default: the preset's)"
    )
    p.add_argument("--eval-batch-sizes", type=int, nargs="+", help="evaluation questions per batch")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    p.add_argument(
        "--dtype", help="override the preset's weight dtype (e.g. bfloat16 to try the GPU path on CPU)"
    )
    p.add_argument("--json", help="write every number here")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.preset != "tiny" and device.type != "cuda":
        print(
            f"error: preset {args.preset} needs a GPU (its weights alone take 14-26 GB in bf16)",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    command = "python -m bench.scale " + " ".join(argv if argv is not None else sys.argv[1:])
    from vseam_pl.io import write_json

    def save(result: dict[str, Any]) -> None:
        if args.json:
            write_json(args.json, result)

    result = run(args.preset, device, args.batch_sizes, args.eval_batch_sizes, command, save, args.dtype)
    save(result)
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
