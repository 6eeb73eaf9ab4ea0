"""Strategies for real: a few training steps of `HeadModulationModule` under single-device, FSDP and DeepSpeed
ZeRO-2, checking what the strategy files promise.

    python -m bench.strategies --model checkpoints/tiny-llava --steps 3 [--strategies auto fsdp deepspeed_stage_2]
                               [--accelerator cpu] [--precision 32-true] [--json FILE]

For each strategy, on the same synthetic-world GQA batches (no shuffling):

1. only the scales get gradients: after every backward, the parameters with a gradient are exactly the scales;
2. the per-step training losses match the single-device (`auto`) run (same batches, same scales updates);
3. the checkpoint (`trainer.save_checkpoint`) holds only `modulation.scales`, and the learned scales match.

FSDP is `vseam_pl.distributed.FrozenFSDPStrategy` (configs/strategies/fsdp.yaml): each decoder/vision layer its
own FSDP1 unit, every other frozen module too, the scales alone in the root unit, so bf16/fp16 weights and fp32
scales wrap. On one device it exercises the wrapping, forward/backward and the full-state-dict checkpoint; it also
runs on CPU (gloo), where Lightning's own FSDPStrategy is refused. DeepSpeed needs CUDA and `pip install deepspeed`:
it is reported `skipped` where it does not import or there is no GPU.

The JSON (`--json`) is rewritten after every leg: `environment` (torch threads, load average), `args`, `rows` (one
per leg run so far: its checks, `skipped` with the reason, or `error` with the exception) and `finished` (false
until every leg ran). Exit status 1 when any check fails or a leg raised.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from bench import _env
from vseam_pl.data import GQADataModule
from vseam_pl.distributed import release_process_group
from vseam_pl.lit_module import HeadModulationModule


class Probe(Callback):
    """Records the loss of each step and which parameters got a gradient."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.with_grad: set[str] = set()

    def on_after_backward(self, trainer: Trainer, pl_module: Any) -> None:
        for name, p in pl_module.named_parameters():
            if p.grad is not None:
                self.with_grad.add(name.replace("_fsdp_wrapped_module.", "").replace("_forward_module.", ""))

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def strategy_for(name: str) -> Any:
    """`auto`, `fsdp` (`vseam_pl.distributed.FrozenFSDPStrategy`, as configs/strategies/fsdp.yaml: each Llama/CLIP
    layer its own unit, every other frozen module too, the scales alone in the root unit; full state dict) or a
    Lightning strategy name."""
    if name != "fsdp":
        return name
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from vseam_pl.distributed import FrozenFSDPStrategy

    return FrozenFSDPStrategy(
        auto_wrap_policy={LlamaDecoderLayer, CLIPEncoderLayer},
        state_dict_type="full",
        sharding_strategy="FULL_SHARD",
    )


def unavailable(name: str, accelerator: str) -> str | None:
    """Why a strategy cannot run here (None when it can)."""
    if name.startswith("deepspeed"):
        if accelerator == "cpu" or not torch.cuda.is_available():
            return "DeepSpeed needs CUDA"
        try:
            import deepspeed  # noqa: F401
        except Exception as e:  # ImportError, or a CUDA toolkit mismatch raised at import
            return f"deepspeed does not import ({type(e).__name__}: {e})"
    return None


def run_one(
    name: str,
    model: str,
    data_root: Path,
    out: Path,
    steps: int,
    batch: int,
    accelerator: str,
    precision: str,
    dtype: str,
) -> dict[str, Any]:
    seed_everything(0, verbose=False)
    module = HeadModulationModule(model=model, dtype=dtype, attn_implementation="eager", lr=0.05)
    data = GQADataModule(
        root=str(data_root), batch_size=batch, num_workers=0, shuffle_buffer=0, limit=steps * batch
    )
    probe = Probe()
    trainer = Trainer(
        accelerator=accelerator,
        devices=1,
        strategy=strategy_for(name),
        precision=precision,
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out),
        callbacks=[probe],
    )
    trainer.fit(module, datamodule=data)
    ckpt_path = out / f"{name}.ckpt"
    trainer.save_checkpoint(ckpt_path)
    ckpt = ckpt_path if ckpt_path.is_file() else ckpt_path / "checkpoint" / "mp_rank_00_model_states.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # written by this process just above
    keys = sorted(state.get("state_dict", state.get("module", {})))
    scales = module.modulation.scales.detach().float().cpu().clone()
    return {
        "strategy": name,
        "losses": probe.losses,
        "params_with_grad": sorted(probe.with_grad),
        "checkpoint_keys": keys,
        "checkpoint_bytes": _size(ckpt_path),
        "scales": scales,
    }


def _size(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def check(results: list[dict[str, Any]], atol: float) -> list[dict[str, Any]]:
    """The three checks of the module docstring, per strategy, against the `auto` run."""
    ref = next((r for r in results if r["strategy"] == "auto" and "losses" in r), None)
    rows = []
    for r in results:
        if "skipped" in r or "error" in r:
            rows.append({k: r[k] for k in ("strategy", "skipped", "error") if k in r})
            continue
        if ref is None:
            rows.append({"strategy": r["strategy"], "error": "no single-device run to compare with"})
            continue
        diff = (
            max(abs(a - b) for a, b in zip(r["losses"], ref["losses"], strict=True))
            if r["losses"]
            else float("nan")
        )
        scale_diff = float((r["scales"] - ref["scales"]).abs().max())
        only = [k.removeprefix("_forward_module.") for k in r["checkpoint_keys"]]
        rows.append(
            {
                "strategy": r["strategy"],
                "steps": len(r["losses"]),
                "losses": [round(x, 6) for x in r["losses"]],
                "only_scales_get_grad": r["params_with_grad"] == ["modulation.scales"],
                "params_with_grad": r["params_with_grad"],
                "max_loss_diff_vs_single": diff,
                "loss_matches_single": diff <= atol * max(1.0, max(abs(x) for x in ref["losses"])),
                "max_scale_diff_vs_single": scale_diff,
                "checkpoint_only_scales": only == ["modulation.scales"],
                "checkpoint_keys": r["checkpoint_keys"][:5],
                "checkpoint_bytes": r["checkpoint_bytes"],
            }
        )
    return rows


def save_preset(preset: str, dtype: str, folder: Path) -> str:
    """A bench/scale.py preset with random weights, saved as an ordinary model folder."""
    from bench.scale import build_vlm, synthetic_words

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vlm = build_vlm(preset, synthetic_words() + ["yes", "no"], device, dtype)
    vlm.model.save_pretrained(folder)
    vlm.processor.save_pretrained(folder)
    del vlm
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="checkpoints/tiny-llava", help="model folder")
    p.add_argument(
        "--preset",
        help="instead of --model: a bench/scale.py preset with random weights (e.g. "
        "llava-1.5-7b), built on the GPU and saved to a temporary folder",
    )
    p.add_argument("--strategies", nargs="+", default=["auto", "fsdp", "deepspeed_stage_2"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="32-true", help="e.g. bf16-mixed on a GPU")
    p.add_argument("--dtype", default="float32", help="frozen weights' dtype (bfloat16 for 7B on a GPU)")
    p.add_argument("--atol", type=float, default=1e-4, help="loss tolerance, relative to max(1, |loss|)")
    p.add_argument("--json", help="write the checks here")
    args = p.parse_args(argv)
    if "auto" not in args.strategies:
        args.strategies = ["auto", *args.strategies]
    from vseam_pl.synth import generate_benchmarks

    env = _env.environment()
    results: list[dict[str, Any]] = []

    def report(finished: bool) -> list[dict[str, Any]]:
        """The checks of the legs run so far, written to --json after every leg (a later leg that crashes the
        process cannot lose them)."""
        rows = check(results, args.atol)
        if args.json:
            from vseam_pl.io import write_json

            write_json(
                args.json,
                {"environment": env, "args": vars(args), "finished": finished, "rows": rows},
            )
        return rows

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_benchmarks(Path(tmp) / "synth", n_train=args.steps * args.batch, n_val=2, n_test=2)
        if args.preset:
            args.model = save_preset(args.preset, args.dtype, Path(tmp) / "model")
        for name in args.strategies:
            why = unavailable(name, args.accelerator)
            if why:
                results.append({"strategy": name, "skipped": why})
            else:
                try:
                    results.append(
                        run_one(
                            name,
                            args.model,
                            root,
                            Path(tmp) / name,
                            args.steps,
                            args.batch,
                            args.accelerator,
                            args.precision,
                            args.dtype,
                        )
                    )
                except Exception as e:  # reported as a failed leg; the next legs still run
                    traceback.print_exc()
                    results.append({"strategy": name, "error": f"{type(e).__name__}: {e}"[:2000]})
                finally:  # Lightning leaves FSDP's process group behind: the next leg (or caller) starts clean
                    release_process_group()
            report(finished=False)
    rows = report(finished=True)
    print(json.dumps(rows, indent=2))
    ok = all(
        "skipped" in r
        or (
            "error" not in r
            and r["only_scales_get_grad"]
            and r["loss_matches_single"]
            and r["checkpoint_only_scales"]
        )
        for r in rows
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
