"""Benchmark: what training only the head scales costs, next to PEFT adapters, and what the scales cost at inference.

    python -m bench.training [--model checkpoints/tiny-llava] [--batch 8] [--repeats 5] [--threads 1] [--out FILE]

One batch of synthetic-world GQA questions (teacher-forced answers, as in training), one model, in one run:

1. time and peak memory of a training step (forward + backward + AdamW step) relative to a plain frozen forward
   (no grad) for: V-SEAM scales (layers x heads parameters), `peft` IA3 (k/v/down_proj of the language model) and
   `peft` LoRA r=8 (q/v_proj of the language model). The floor for scales-only training is about one forward plus an
   activation-only backward (no weight gradients), i.e. ~2-3x a forward;
2. inference (no-grad forward) with no modulation, scales attached as hooks, and scales folded into `o_proj`, timed
   in alternation (folded should be ~1.00x: it is the same computation with different weights).

Peak memory: on CUDA `torch.cuda.max_memory_allocated` over the call; on CPU the rise of the process's peak resident
set (Linux `VmHWM`, reset through `/proc/self/clear_refs` after `malloc_trim`) above the resident set before the call:
it counts everything the call makes resident (autograd saved tensors, gradients, optimizer state, allocator slack).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import _env
from vseam_pl.data import GQADataModule
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.prompts import build_prompts
from vseam_pl.scoring import answer_loss
from vseam_pl.vlm import VLM, load_vlm

LANGUAGE = r".*language_model.*\."


# -- measuring ----------------------------------------------------------------------------------------------------
def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Extra peak memory of one call of `fn` (see the module docstring for what is measured where)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - before) / 1024


def elapsed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """One call of `fn` in milliseconds (a CUDA device is synchronised on both sides)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t) * 1000


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    return statistics.median(elapsed_ms(fn, device) for _ in range(repeats))


# -- what is measured ---------------------------------------------------------------------------------------------
def training_step(vlm: VLM, params: list[torch.nn.Parameter], batch: tuple) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(params, lr=1e-3)

    def step() -> None:
        loss = answer_loss(vlm, *batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def frozen_forward(vlm: VLM, batch: tuple) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            answer_loss(vlm, *batch)

    return forward


def with_peft(model_dir: str, kind: str, device: torch.device) -> tuple[VLM, list[torch.nn.Parameter]]:
    """A fresh copy of the model with a PEFT adapter injected in place (the VLM wrapper keeps working)."""
    vlm = load_vlm(model_dir, device=device)
    return vlm, inject_peft(vlm, kind, device)


def inject_peft(vlm: VLM, kind: str, device: torch.device) -> list[torch.nn.Parameter]:
    """Inject `peft` IA3 (k/v/down_proj) or LoRA r=8 (q/v_proj) into the language model; its trainable weights."""
    from peft import IA3Config, LoraConfig, inject_adapter_in_model

    if kind == "ia3":
        config = IA3Config(
            target_modules=LANGUAGE + r"(k_proj|v_proj|down_proj)",
            feedforward_modules=LANGUAGE + r"down_proj",
        )
    else:
        config = LoraConfig(r=8, lora_alpha=16, target_modules=LANGUAGE + r"(q_proj|v_proj)")
    inject_adapter_in_model(config, vlm.model)
    vlm.model.to(device)
    params = [p for n, p in vlm.model.named_parameters() if ("lora_" in n or "ia3_" in n)]
    for p in params:
        p.requires_grad_(True)
    return params


def load_batch(vlm: VLM, n: int) -> tuple[list[str], list, list[str]]:
    """`n` GQA questions of a small synthetic-world test split (prompts, images, answers)."""
    from vseam_pl.synth import generate_benchmarks

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_benchmarks(Path(tmp) / "synth", n_train=2, n_val=2, n_test=max(4, n))
        dm = GQADataModule(root=str(root), batch_size=n, limit=n, num_workers=0)
        dm.setup("test")
        (batch,) = list(dm.test_dataloader())
    records = [ex.record for ex in batch.examples]
    prompts = build_prompts(vlm, [r.question for r in records])
    return prompts, [ex.image.copy() for ex in batch.examples], [r.answer for r in records]


def random_scales(vlm: VLM) -> HeadModulation:
    mod = HeadModulation.for_vlm(vlm)
    with torch.no_grad():
        mod.scales.copy_(0.5 + torch.rand(mod.scales.shape, generator=torch.Generator().manual_seed(0)))
    return mod


def inference_times(
    vlm: VLM, mod: HeadModulation, batch: tuple, repeats: int, device: torch.device
) -> tuple[float, float, float, float, float]:
    """Median no-grad forward ms with no modulation, scales attached as hooks and scales folded into `o_proj`, and
    the attached and folded losses: `inference_spread` without the spread."""
    r = inference_spread(vlm, mod, batch, repeats, device)
    return (
        r["none"]["median_ms"],
        r["attached"]["median_ms"],
        r["folded"]["median_ms"],
        r["attached_loss"],
        r["folded_loss"],
    )


def inference_spread(
    vlm: VLM, mod: HeadModulation, batch: tuple, repeats: int, device: torch.device
) -> dict[str, Any]:
    """No-grad forward times with no modulation, scales attached as hooks and scales folded into `o_proj`, timed in
    alternation (none, attached, folded, none, ...) after one untimed round, so load drift on shared machines hits
    all three alike. Per variant: every time, the median, min and max; per modulated variant, the ratio of medians
    to `none` and the range of the per-round ratios; and the attached and folded losses (checked equal: folding is
    the same computation)."""
    forward = frozen_forward(vlm, batch)
    times: dict[str, list[float]] = {"none": [], "attached": [], "folded": []}
    losses: dict[str, float] = {}
    setups = {"none": lambda: None, "attached": lambda: mod.attach(vlm), "folded": lambda: mod.fold(vlm)}
    teardowns = {"none": lambda: None, "attached": mod.detach, "folded": mod.unfold}
    for _ in range(repeats + 1):
        for name in times:
            setups[name]()
            times[name].append(median_ms(forward, 1, device))
            with torch.no_grad():
                losses[name] = float(answer_loss(vlm, *batch))
            teardowns[name]()
    attached_loss, folded_loss = losses["attached"], losses["folded"]
    tol = 1e-3 if vlm.dtype == torch.float32 else 2e-2  # bf16 weights: folding rounds the scaled columns
    if abs(attached_loss - folded_loss) > tol * max(1.0, abs(attached_loss)):
        raise AssertionError(f"folded loss {folded_loss} != attached loss {attached_loss}")
    out: dict[str, Any] = {"repeats": repeats, "attached_loss": attached_loss, "folded_loss": folded_loss}
    kept = {name: ts[1:] for name, ts in times.items()}  # the first round warms up
    for name, ts in kept.items():
        out[name] = spread(ts)
    for name in ("attached", "folded"):
        rounds = [t / b for t, b in zip(kept[name], kept["none"], strict=True)]
        out[name]["vs_none"] = statistics.median(kept[name]) / statistics.median(kept["none"])
        out[name]["vs_none_per_round"] = [min(rounds), max(rounds)]
    return out


def spread(ms: list[float]) -> dict[str, Any]:
    """Every time (ms), its median, min and max."""
    return {
        "ms": [round(t, 3) for t in ms],
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def alternated_ms(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, dict]:
    """`spread` of each callable's times, timed in turns (a, b, a, b, ...) after one untimed call of each, so load
    drift on a shared machine hits every variant alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(elapsed_ms(fn, device))
    return {name: spread(ts) for name, ts in times.items()}


# -- the report ---------------------------------------------------------------------------------------------------
def run(model_dir: str, batch_size: int, repeats: int, device: torch.device) -> str:
    vlm = load_vlm(model_dir, device=device)
    batch = load_batch(vlm, batch_size)
    load_start = _env.environment()["load_average"]
    forward = frozen_forward(vlm, batch)
    mod = random_scales(vlm).to(device).attach(vlm)
    step = training_step(vlm, [mod.scales], batch)
    timed = alternated_ms({"forward": forward, "step": step}, repeats, device)  # in turns: same load for both
    mod.detach()
    rows = [
        ("frozen forward (no grad)", 0, timed["forward"]["median_ms"], peak_memory_mb(forward, device)),
    ]
    mod.attach(vlm)
    rows.append(
        ("V-SEAM scales step", mod.scales.numel(), timed["step"]["median_ms"], peak_memory_mb(step, device))
    )
    mod.detach()

    for kind, label in (("ia3", "peft IA3 step"), ("lora", "peft LoRA r=8 step")):
        peft_vlm, params = with_peft(model_dir, kind, device)
        step = training_step(peft_vlm, params, batch)
        n = sum(p.numel() for p in params)
        rows.append((label, n, median_ms(step, repeats, device), peak_memory_mb(step, device)))
        del peft_vlm, params, step

    inf = inference_spread(vlm, mod, batch, repeats, device)
    t_none, t_attached, t_folded = (inf[k]["median_ms"] for k in ("none", "attached", "folded"))
    attached_loss, folded_loss = inf["attached_loss"], inf["folded_loss"]

    base_t, base_m = rows[0][2], rows[0][3]
    mem_kind = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS rise (VmHWM)"
    lines = [
        f"model `{vlm.name}` ({vlm.num_layers} layers x {vlm.num_heads} heads, hidden {vlm.hidden_size}), "
        f"batch {batch_size}, device {device.type}, {torch.get_num_threads()} thread(s), median of {repeats}; "
        f"memory: {mem_kind}",
        "",
        "| mode | trainable params | time (ms) | x forward | peak memory (MB) | x forward |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, n, t, m in rows:
        ratio_m = f"{m / base_m:.2f}" if base_m > 0 else "n/a"
        lines.append(f"| {name} | {n:,} | {t:.1f} | {t / base_t:.2f} | {m:.1f} | {ratio_m} |")
    lines += [
        "",
        "| inference | time (ms) | x none |",
        "|---|---:|---:|",
        f"| no modulation | {t_none:.1f} | 1.00 |",
        f"| scales attached (hooks) | {t_attached:.1f} | {t_attached / t_none:.2f} |",
        f"| scales folded into o_proj | {t_folded:.1f} | {t_folded / t_none:.2f} |",
        "",
        f"inference timed in {repeats} alternated rounds; per-round ratio to none: attached "
        f"{inf['attached']['vs_none_per_round'][0]:.2f}-{inf['attached']['vs_none_per_round'][1]:.2f}, folded "
        f"{inf['folded']['vs_none_per_round'][0]:.2f}-{inf['folded']['vs_none_per_round'][1]:.2f}; frozen forward "
        f"{timed['forward']['min_ms']:.1f}-{timed['forward']['max_ms']:.1f} ms and scales step "
        f"{timed['step']['min_ms']:.1f}-{timed['step']['max_ms']:.1f} ms over {repeats} alternated rounds",
        f"folded vs attached loss: {folded_loss:.6f} vs {attached_loss:.6f}",
        f"load average at start {load_start}, at end {_env.environment()['load_average']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="checkpoints/tiny-llava", help="model folder or hub id")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads on CPU (1 is steadiest on shared cores)"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = run(args.model, args.batch, args.repeats, torch.device(args.device))
    print(table)
    if args.out:
        from vseam_pl.io import write_text

        write_text(args.out, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
