"""`train.py` end to end on CPU with a tiny random LLaVA and a small synthetic world (in-process, so the heavy
imports are paid once): outputs and their schema, checkpoint size and keys, TensorBoard content read back from
the event files, the low-data recipe, and resuming after a crash ending with the scales of an uninterrupted run."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import train
from vseam_pl.data import GQADataModule, POPEDataModule
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.report import ROW_KEYS, read_metrics_json
from vseam_pl.synth import generate_benchmarks

BATCH, LIMIT, EPOCHS = 4, 8, 2


class CrashAtStep(Callback):
    """Dies like a killed job at the start of optimizer step `step` (no graceful checkpoint is written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_llava_dir) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("training-world")
    synth = generate_benchmarks(root / "synth", n_train=40, n_val=4, n_test=8)
    overlay = (
        root / "tiny.yaml"
    )  # the default recipe's callbacks + head discovery (its heatmaps go to TensorBoard)
    overlay.write_text(f"""
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{save_last: true, save_top_k: 1}}
    - class_path: callbacks.ScaleMonitor
    - class_path: callbacks.HeadDiscovery
      init_args: {{pairs: {synth / "train" / "pairs"}, discovery: {{method: attribution, pair_batch: 2}}, limit: 4}}
""")
    return {"model": tiny_llava_dir, "synth": synth, "overlay": overlay}


def run_train(
    world: dict[str, Path],
    root: Path,
    *extra: str,
    recipe: str = "configs/default.yaml",
    limit: int | None = LIMIT,
    data_class: str | None = "vseam_pl.data.GQADataModule",
) -> str:
    """train.main with the tiny model/data overrides; returns what it printed. File order (no shuffle buffer) unless
    the caller overrides it. GQA-style questions (the default recipe's own are POPE's) unless `data_class` is None:
    then the recipe's."""
    args = [
        "-c",
        recipe,
        "-c",
        str(world["overlay"]),
        *(["--data", data_class] if data_class else []),
        "--model.model",
        str(world["model"]),
        "--synth_root",
        "null",
        "--data.init_args.root",
        str(world["synth"]),
        "--data.init_args.batch_size",
        str(BATCH),
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.shuffle_buffer",
        "0",
        "--trainer.max_epochs",
        str(EPOCHS),
        "--trainer.default_root_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.val_check_interval",
        str(LIMIT // BATCH),  # once an epoch
        # plumbing tests follow the last step's scales; selection and the do-no-harm check: test_selection.py
        "--model.select_on_val",
        "false",
    ]
    if limit is not None:
        args += ["--data.init_args.limit", str(limit)]
    out = io.StringIO()
    argv, sys.argv = sys.argv, ["train.py"]
    try:
        with contextlib.redirect_stdout(out):
            train.main(args + list(extra))
    finally:
        sys.argv = argv
    return out.getvalue()


def test_learning_that_does_not_beat_the_identity_reports_the_identity(world, tmp_path):
    """lr 0: every validation candidate is the frozen model, so nothing beats it; the run says so, writes the
    identity as its scales, keeps the learned ones under another name and records why in metrics.json."""
    printed = run_train(world, tmp_path, "--model.select_on_val", "true", "--model.lr", "0")
    out = version_dir(tmp_path)
    report = read_metrics_json(out / "metrics.json")
    assert (
        report["scales_used"] == "identity" and "does not beat the identity" in report["selection"]["reason"]
    )
    assert report["selection"]["delta"] == 0.0
    assert torch.equal(HeadModulation.load(out / "head_scales.safetensors").scales, torch.ones(4, 4))
    assert (out / "learned_head_scales.safetensors").exists() and "rejected:" in printed


def version_dir(root: Path, version: int = 0) -> Path:
    return root / "lightning_logs" / f"version_{version}"


@pytest.fixture(scope="module")
def default_run(world, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("default-run")
    printed = run_train(world, root)
    assert "metrics:" in printed and "scales:" in printed
    return version_dir(root)


def test_outputs_and_metrics_schema(default_run, world):
    report = read_metrics_json(default_run / "metrics.json")  # validates the schema
    assert report["model"] == Path(world["model"]).name and report["scales"].endswith(
        "head_scales.safetensors"
    )
    overall = [r for r in report["rows"] if r["split"] == "test"]
    assert [r["benchmark"] for r in overall] == ["gqa"] and set(ROW_KEYS) <= set(overall[0])
    assert overall[0]["n"] == LIMIT and overall[0]["modulated"] is not None
    assert report["trainable_parameters"] == 16 and report["skipped_records"] == 0  # 4 layers x 4 heads
    scales = HeadModulation.load(default_run / "head_scales.safetensors")
    assert scales.scales.shape == (4, 4) and not torch.allclose(scales.scales, torch.ones(4, 4))  # it trained
    assert (default_run / "metrics.txt").read_text().strip()


def test_checkpoint_holds_only_scales_optimizer_and_loop_state(default_run):
    path = default_run / "checkpoints" / "last.ckpt"
    assert path.stat().st_size < 64 * 1024, f"{path}: {path.stat().st_size} bytes"  # kilobytes, not the model
    ckpt = torch.load(path, weights_only=False)
    assert list(ckpt["state_dict"]) == ["modulation.scales"]
    (state,) = ckpt["optimizer_states"][0]["state"].values()
    assert state["exp_avg"].shape == (4, 4)
    assert ckpt["global_step"] == EPOCHS * LIMIT // BATCH
    assert {"loops", "optimizer_states", "state_dict", "callbacks"} <= set(ckpt)


def test_tensorboard_events(default_run):
    ea = EventAccumulator(
        str(default_run), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
    )
    ea.Reload()
    tags = ea.Tags()
    scalars = set(tags["scalars"])
    assert {
        "train/loss",
        "train/answer_ce",
        "train/answer_ce_ema",
        "val/accuracy",
        "val/gqa/accuracy",
        "val/gqa/baseline_accuracy",
        "scales/mean",
        "scales/moved",
        "scales/min",
        "scales/max",
    } <= scalars
    assert len(ea.Scalars("train/loss")) == EPOCHS * LIMIT // BATCH
    baseline = ea.Scalars("val/gqa/baseline_accuracy")
    # a flat line, one point per validation pass: the full sanity pass before training (step 0) and each epoch
    assert len(baseline) == EPOCHS + 1 and len({e.value for e in baseline}) == 1
    assert [e.step for e in ea.Scalars("val/accuracy")][0] == 0 and len(
        ea.Scalars("val/accuracy")
    ) == EPOCHS + 1
    # every test row's headline numbers, GQA's groups included
    assert {"test/gqa/accuracy/modulated", "test/gqa/level=object/accuracy/delta"} <= scalars
    assert (
        "scales/heatmap" in tags["images"] and len(ea.Images("scales/heatmap")) == EPOCHS + 1
    )  # + fit start
    assert any(t.startswith("head_discovery/") for t in tags["images"]), tags["images"]
    assert "scales/histogram" in tags["histograms"]
    # hparams: the module's hyperparameters and, as metrics, the test rows' headline numbers
    content = ea.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"test/gqa/accuracy/baseline", "test/gqa/accuracy/modulated", "test/gqa/accuracy/delta"} <= metrics
    assert {"lr", "model", "dtype"} <= {h.name for h in experiment.hparam_infos}
    assert "test/gqa/accuracy/modulated" in scalars and "hp_metric" not in scalars


@pytest.mark.slow  # its config and subsample: test_training_config.py::test_low_data_recipe_subsamples_training_only; the 10 s run is CI's slow step
def test_low_data_recipe_end_to_end(world, tmp_path):
    """The recipe's own benchmark (POPE-style, as the default's), a stratified tenth of its training split."""
    full = POPEDataModule(root=str(world["synth"]))
    full.setup("fit")
    low = POPEDataModule(root=str(world["synth"]), fraction=0.1)
    low.setup("fit")
    assert 0 < low.counts["train"] < full.counts["train"] // 5
    run_train(
        world,
        tmp_path,
        "--trainer.max_epochs",
        "1",
        "--trainer.val_check_interval",
        "1",  # validation (and so last.ckpt) at every step, the last one included
        recipe="configs/low_data.yaml",
        limit=None,
        data_class=None,
    )
    run = version_dir(tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == -(-low.counts["train"] // BATCH)  # the 10% subsample, not the full split
    report = read_metrics_json(run / "metrics.json")
    pooled = [r["n"] for r in report["rows"] if r["benchmark"] == "pope" and r["split"] == "all"]
    assert pooled == [_count(world, "test", POPEDataModule)]


def _count(world, split: str, data_class: type = GQADataModule) -> int:
    dm = data_class(root=str(world["synth"]))
    dm.setup("test")
    return dm.counts[split]


def test_resume_after_crash_ends_with_the_uninterrupted_scales(world, default_run, tmp_path):
    """Crash at the first step of epoch 2 (last.ckpt is from the end of epoch 1), then `--ckpt_path last` in the
    same run root finds that checkpoint and finishes: the scales equal those of the uninterrupted default run."""
    crash_at = LIMIT // BATCH
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_train(
            world,
            tmp_path,
            "--trainer.callbacks+=" + f"{__name__}.CrashAtStep",
            "--trainer.callbacks.step",
            str(crash_at),
        )
    assert not (version_dir(tmp_path) / "head_scales.safetensors").exists()
    interrupted = torch.load(version_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=False)
    assert interrupted["global_step"] == crash_at
    printed = run_train(world, tmp_path, "--ckpt_path", "last")
    assert "metrics:" in printed
    resumed = HeadModulation.load(version_dir(tmp_path, 1) / "head_scales.safetensors").scales
    uninterrupted = HeadModulation.load(default_run / "head_scales.safetensors").scales
    torch.testing.assert_close(resumed, uninterrupted, atol=1e-6, rtol=1e-6)
    final = torch.load(version_dir(tmp_path, 1) / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == EPOCHS * LIMIT // BATCH
    # it resumed rather than restarted: the new run trained only the steps the crashed one had not done
    ea = EventAccumulator(str(version_dir(tmp_path, 1)), size_guidance={"scalars": 0})
    ea.Reload()
    assert [e.step for e in ea.Scalars("train/loss")] == list(range(crash_at, EPOCHS * LIMIT // BATCH))


@pytest.fixture(scope="module")
def every_step(tmp_path_factory) -> Path:
    """Callbacks that checkpoint after every optimizer step (so a crash can land in the middle of an epoch)."""
    overlay = tmp_path_factory.mktemp("every-step") / "every_step.yaml"
    overlay.write_text("""
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {every_n_train_steps: 1, save_last: true, save_top_k: 1}
""")
    return overlay


@pytest.mark.parametrize(
    "crash_at", [LIMIT // BATCH + 1, LIMIT // BATCH], ids=["mid-epoch", "epoch-boundary"]
)
def test_resume_with_a_shuffle_buffer_replays_the_uninterrupted_batches(
    world, every_step, tmp_path, crash_at
):
    """With shuffling, the resumed run must see the same batches as the uninterrupted one: the pass in progress is
    replayed with its own shuffle seed, minus the batches already trained on (StreamLoader state in the checkpoint).
    """
    shuffled = ["-c", str(every_step), "--data.init_args.shuffle_buffer", "4"]
    run_train(world, tmp_path / "reference", *shuffled)
    uninterrupted = HeadModulation.load(
        version_dir(tmp_path / "reference") / "head_scales.safetensors"
    ).scales
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_train(
            world,
            crashed,
            *shuffled,
            "--trainer.callbacks+=" + f"{__name__}.CrashAtStep",
            "--trainer.callbacks.step",
            str(crash_at),
        )
    state = torch.load(version_dir(crashed) / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == crash_at
    (loader_state,) = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == {"epoch": 1, "batches": crash_at - LIMIT // BATCH, "ended": False} or (
        crash_at == LIMIT // BATCH and loader_state == {"epoch": 0, "batches": LIMIT // BATCH, "ended": True}
    )
    run_train(world, crashed, *shuffled, "--ckpt_path", "last")
    resumed = HeadModulation.load(version_dir(crashed, 1) / "head_scales.safetensors").scales
    torch.testing.assert_close(resumed, uninterrupted, atol=1e-6, rtol=1e-6)
    ea = EventAccumulator(str(version_dir(crashed, 1)), size_guidance={"scalars": 0})
    ea.Reload()
    assert [e.step for e in ea.Scalars("train/loss")] == list(range(crash_at, EPOCHS * LIMIT // BATCH))


def test_ckpt_path_last_without_a_checkpoint_starts_fresh(tmp_path):
    from vseam_pl.cli import resolve_last_checkpoint

    assert resolve_last_checkpoint([tmp_path]) is None
    old = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    new = tmp_path / "lightning_logs" / "version_1" / "checkpoints" / "last.ckpt"
    for p in (old, new):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
    os.utime(old, (1, 1))
    assert resolve_last_checkpoint([tmp_path / "missing", tmp_path]) == str(new)


@pytest.mark.slow  # the default suite replays the batches at both boundaries (test_resume_with_a_shuffle_buffer_replays_the_uninterrupted_batches); the 13 s end-to-end run is CI's slow step
def test_resume_after_an_epoch_end_checkpoint_with_a_shuffle_buffer_is_exact(world, tmp_path):
    """The 7B/13B recipes' pattern: a shuffle buffer, several epochs, a checkpoint written only at epoch end, a kill
    early in the next epoch. Lightning skips `StreamLoader.load_state_dict` when the saved epoch had finished, so the
    loader must take the epoch (shuffle seed) from the trainer, not replay epoch 0's order."""
    shuffled = ["--data.init_args.shuffle_buffer", "4", "--trainer.max_epochs", "3"]
    run_train(world, tmp_path / "reference", *shuffled)
    uninterrupted = HeadModulation.load(
        version_dir(tmp_path / "reference") / "head_scales.safetensors"
    ).scales
    crashed = tmp_path / "crashed"
    crash_at = LIMIT // BATCH + 1  # second step of epoch 1; last.ckpt is epoch 0's end-of-epoch checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_train(
            world,
            crashed,
            *shuffled,
            "--trainer.callbacks+=" + f"{__name__}.CrashAtStep",
            "--trainer.callbacks.step",
            str(crash_at),
        )
    state = torch.load(version_dir(crashed) / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == LIMIT // BATCH and state["epoch"] == 0
    run_train(world, crashed, *shuffled, "--ckpt_path", "last")
    resumed = HeadModulation.load(version_dir(crashed, 1) / "head_scales.safetensors").scales
    torch.testing.assert_close(resumed, uninterrupted, atol=1e-6, rtol=1e-6)
