"""`vseam train` (= `python train.py`): learn per-head modulation scales of a frozen VLM, then evaluate baseline vs
modulated on the held-out test split.

    python train.py                                   # embedded tiny InstructBLIP, synthetic POPE (configs/default.yaml)
    python train.py -c configs/<recipe>.yaml --trainer.max_epochs 2 --data.fraction 0.1
    python train.py --print_config                    # the resolved configuration

Outputs (in the run dir, `--output_dir` or the TensorBoard logger's version folder under `--trainer.default_root_dir`):
TensorBoard events, `checkpoints/last.ckpt` (scales + optimizer + loop state only), `head_scales.safetensors` and
`metrics.json` (baseline vs modulated with paired p-values).
"""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_info

from vseam_pl.cli import (
    DEFAULT_CONFIG,
    VSeamCLI,
    ensure_synthetic,
    gather_skipped,
    run_dir,
    write_outputs,
)
from vseam_pl.distributed import release_process_group
from vseam_pl.interventions import HeadModulation
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.signals import stop_on_sigterm


def build_cli(args: list[str] | None = None) -> VSeamCLI:
    """Parse and instantiate (model, data, trainer); nothing is run. `vseam evaluate` reads the same keys."""
    return VSeamCLI(
        HeadModulationModule,
        datamodule_class=None,
        subclass_mode_data=True,
        run=False,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_config_files": [str(DEFAULT_CONFIG)]},
    )


def main(args: list[str] | None = None) -> None:
    cli = build_cli(args)
    cfg = cli.config
    ensure_synthetic(cfg.get("synth_root"), cfg.get("synth_seed", 0))
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"))
    rank_zero_info("evaluating baseline vs modulated on the test split ...")
    trainer.test(module, datamodule=data, verbose=False)
    skipped = gather_skipped(getattr(data, "skipped", []))
    extra = {
        "trainable_parameters": module.modulation.scales.numel(),
        "skipped_records": len(skipped),
        **module.answer_settings(),
        **selection_report(module),
    }
    out = run_dir(trainer, cfg.get("output_dir"))
    write_outputs(
        out, module.vlm.name, module.test_rows, module.modulation, extra, outcomes=module.test_outcomes
    )
    if module.rejected_state is not None and trainer.is_global_zero:
        rejected = HeadModulation.for_vlm(module.vlm)
        rejected.scales.data.copy_(module.rejected_state[0])
        print(f"rejected: {rejected.save(out / REJECTED_SCALES)} (learned, not used: see metrics.json)")
    release_process_group()


# SIGTERM: exit 143 naming the last checkpoint, never 0 (`python train.py` and `vseam train` wrap it too; harmless)
main = stop_on_sigterm(main, "vseam train")

#: Where a run keeps learned scales that the do-no-harm check rejected (the run's result is then the identity).
REJECTED_SCALES = "learned_head_scales.safetensors"


def selection_report(module: HeadModulationModule) -> dict:
    """metrics.json's `scales_used` (`selected`, `identity` or `last`) and why, with the validation numbers."""
    decision = module.decision
    if decision is None:
        return {
            "scales_used": "last",
            "selection": {"reason": "select_on_val is off: the last step's scales"},
        }
    return {"scales_used": decision.used, "selection": decision.to_dict()}


if __name__ == "__main__":
    main()
