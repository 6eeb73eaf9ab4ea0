"""Bad inputs and faults (issue 16): each is a clear error naming the input, or a counted skip, never a number."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import CLI
from reliability_ddp_support import ddp_report_worker
from safetensors.torch import save_file

import evaluate
import train
from tests.data.test_data_support import make_root
from vseam_pl.context import PromptTooLongError
from vseam_pl.data import Batch, GQADataModule
from vseam_pl.interventions.modulation import SCALES_FORMAT, HeadModulation, ScalesMismatchError
from vseam_pl.io import write_json
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.metrics import PairedOutcomes
from vseam_pl.records import QARecord
from vseam_pl.report import outcome_rows
from vseam_pl.resume import CheckpointMismatchError, read_checkpoint
from vseam_pl.vlm import load_vlm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gqa_root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("reliability") / "r", n_gqa=12, n_images=4)


def gqa_batch(root: Path, n: int = 4) -> Batch:
    dm = GQADataModule(root=str(root), splitting="all", categories=["Animal"], limit=n, batch_size=n)
    return next(iter(dm.test_dataloader()))


# ---- 3. prompts longer than the model's context -----------------------------------------------------------------
def test_prompt_longer_than_the_context_names_the_record(tiny_llava_dir, tmp_path, one_thread):
    root = make_root(tmp_path / "r", n_gqa=6, n_images=2)
    rows = json.loads((root / "GQA" / "Animal.json").read_text())
    rows[2]["question"] = "is there a " + "dog " * 700 + "?"  # ~700 tokens; the tiny model has 512 positions
    # (GQA list records are named by their index in the file: rows[2] is "Animal.json:2")
    (root / "GQA" / "Animal.json").write_text(json.dumps(rows))
    module = HeadModulationModule(model=str(tiny_llava_dir))
    batch = gqa_batch(root)
    with pytest.raises(
        PromptTooLongError,
        match=r"Animal\.json:2: prompt is \d+ tokens \(image tokens included\), "
        r"longer than the 512-token context of tiny-llava",
    ):
        module.answer(batch)
    with pytest.raises(PromptTooLongError, match=r"Animal\.json:2: prompt is"):
        module.training_step(batch, 0)


# ---- 4. negative limit ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-1", "0"])
def test_non_positive_limit_is_rejected_at_parse_time(value, capsys, gqa_root):
    with pytest.raises(SystemExit):
        CLI(evaluate.evaluate, as_positional=False, args=["--limit", value])
    assert "limit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--data.init_args.limit", value, "--synth_root", "null"])
    assert "limit" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"limit must be a positive number of records .*got {value}"):
        GQADataModule(root=str(gqa_root), limit=int(value))


# ---- 5. duplicate question ids ----------------------------------------------------------------------------------
def test_duplicate_question_ids_are_both_evaluated_and_reported():
    a = QARecord("gqa", "7", "is there a dog?", "yes", "img1", category="Animal", source="Animal.json:3")
    b = QARecord("gqa", "7", "is the car red?", "no", "img1", category="Color", source="Color.json:9")
    metric = PairedOutcomes()
    metric.update([a, b], ["yes", "yes"])
    metric.update([a, b], ["yes", "yes"])  # the same records seen twice (sampler padding) still count once
    kept = metric.compute()
    assert sorted(o.source for o in kept) == ["Animal.json:3", "Color.json:9"]
    with pytest.warns(UserWarning, match=r"question id '7' at Animal\.json:3 and Color\.json:9"):
        overall = outcome_rows(kept)[0]
    assert overall["n"] == 2 and overall["baseline"] == 0.5  # one right, one wrong: neither dropped


# ---- 6. skips are counted per record ----------------------------------------------------------------------------
def test_skipped_records_are_counted_once_however_many_passes(tmp_path):
    root = make_root(tmp_path / "r", n_gqa=10, n_images=5)
    (root / "images" / "img1.png").unlink()  # records 1 and 6 of each of the 2 GQA files
    dm = GQADataModule(root=str(root), splitting="all", on_bad_record="skip", batch_size=4)
    loader = dm.test_dataloader()
    for _ in range(3):
        with pytest.warns(UserWarning, match="skipped 4 bad record"):
            assert sum(len(b) for b in loader) == 16
    assert sorted(s.rsplit("/", 1)[1] for s, _ in dm.skipped) == [
        "Animal.json:1",
        "Animal.json:6",
        "Material.json:1",
        "Material.json:6",
    ]


# ---- 7. a local model path that does not exist ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/nonexistent/tiny-llava", "{tmp}/tiny-lava", "./no/such/model", "a/b/c"])
def test_missing_local_model_folder_says_so(name, tmp_path):
    name = name.format(tmp=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such folder .*\(offline mode: nothing was downloaded\)"):
        load_vlm(name)


# ---- 8. non-finite scales ---------------------------------------------------------------------------------------
def nan_scales_file(path: Path, model: str) -> Path:
    scales = torch.ones(4, 4)
    scales[2, 1] = float("nan")
    scales[3, 0] = float("inf")
    meta = {"format": SCALES_FORMAT, "model": model, "num_layers": "4", "num_heads": "4", "head_dim": "16"}
    save_file({"scales": scales}, str(path), metadata=meta)
    return path


def test_non_finite_scales_are_refused_on_load_init_and_save(tiny_llava_dir, tmp_path):
    path = nan_scales_file(tmp_path / "head_scales.safetensors", tiny_llava_dir.name)
    message = r"head_scales\.safetensors: 2 of 16 scales are NaN or inf \(first at \(layer, head\) = \(2, 1\)"
    with pytest.raises(ScalesMismatchError, match=message):
        HeadModulation.load(path)
    with pytest.raises(ScalesMismatchError, match=message):
        HeadModulationModule(model=str(tiny_llava_dir), init_scales=str(path))
    mod = HeadModulation(2, 2, 8)
    with torch.no_grad():
        mod.scales[0, 1] = float("inf")
    with pytest.raises(ValueError, match=r"not writing scales: 1 of 4 scales are NaN or inf"):
        mod.save(tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def fit_tiny(
    module: HeadModulationModule, root: Path, tmp: Path, ckpt_path: str | None = None, **trainer_kw
) -> pl.Trainer:
    dm = GQADataModule(root=str(root), batch_size=2, limit=4, shuffle_buffer=0)
    kw = dict(
        accelerator="cpu",
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp),
        enable_checkpointing=False,
    )
    trainer = pl.Trainer(**{**kw, **trainer_kw})
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def test_training_stops_when_scales_or_loss_become_non_finite(tiny_llava_dir, gqa_root, tmp_path, one_thread):
    module = HeadModulationModule(model=str(tiny_llava_dir), lr=float("inf"))
    with pytest.raises(
        FloatingPointError, match=r"after optimizer step 1 \(epoch 0\): \d+ of 16 scales are NaN or inf"
    ):
        fit_tiny(module, gqa_root, tmp_path)
    module = HeadModulationModule(model=str(tiny_llava_dir))
    with torch.no_grad():
        module.modulation.scales[1, 2] = float("nan")
    with pytest.raises(
        FloatingPointError, match=r"training loss is nan at step 0 \(epoch 0, first record .*\.json:"
    ):
        fit_tiny(module, gqa_root, tmp_path)


# ---- 9. another model's checkpoint ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blip_checkpoint(tiny_instructblip_dir, gqa_root, tmp_path_factory) -> Path:
    """A real last.ckpt written by a tiny-InstructBLIP run (same 4x4 grid as the tiny LLaVA)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("blip-runs")
    ckpt = pl.callbacks.ModelCheckpoint(
        dirpath=root / "lightning_logs" / "version_0" / "checkpoints", save_last=True
    )
    fit_tiny(
        HeadModulationModule(model=str(tiny_instructblip_dir)),
        gqa_root,
        root,
        max_steps=1,
        enable_checkpointing=True,
        callbacks=[ckpt],
    )
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_another_models_checkpoint_is_refused(
    tiny_llava_dir, tiny_instructblip_dir, blip_checkpoint, gqa_root, tmp_path, one_thread
):
    assert read_checkpoint(blip_checkpoint)["vseam_model"] == {
        "name": tiny_instructblip_dir.name,
        "grid": [4, 4, 16],
    }
    args = [
        "--model.model",
        str(tiny_llava_dir),
        "--synth_root",
        "null",
        "--data.init_args.root",
        str(gqa_root),
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    with pytest.raises(
        CheckpointMismatchError,
        match=r"last\.ckpt: cannot resume: it was written for model "
        r"'tiny-instructblip\d*', not 'tiny-llava\d*'",
    ):
        train.main([*args, "--ckpt_path", str(blip_checkpoint)])
    module = HeadModulationModule(model=str(tiny_llava_dir))  # the Lightning hook refuses it too
    with pytest.raises(CheckpointMismatchError, match="written for model 'tiny-instructblip"):
        fit_tiny(module, gqa_root, tmp_path, ckpt_path=str(blip_checkpoint))


def test_ckpt_path_last_only_considers_the_same_model(tiny_llava_dir, tiny_instructblip_dir, blip_checkpoint):
    from vseam_pl.cli import resolve_last_checkpoint

    runs = blip_checkpoint.parents[2]
    blip, llava = load_vlm(str(tiny_instructblip_dir)), load_vlm(str(tiny_llava_dir))
    grid = (4, 4, 16)
    assert resolve_last_checkpoint([runs], (blip.name, grid)) == str(blip_checkpoint)
    with pytest.warns(UserWarning, match="no last.*ckpt"):
        assert resolve_last_checkpoint([runs], (llava.name, grid)) is None  # a fresh start, not the BLIP run
    assert resolve_last_checkpoint([runs], (blip.name, (4, 8, 16))) is None or pytest.fail("grid not checked")


def test_checkpoints_are_read_with_weights_only(tmp_path):
    evil = tmp_path / "last.ckpt"
    torch.save(
        {"state_dict": {}, "payload": Path("/etc")}, evil
    )  # a pickled object, not tensors and primitives
    with pytest.raises(ValueError, match=r"last\.ckpt: not a readable checkpoint with weights_only=True"):
        read_checkpoint(evil)


# ---- 11/12. POPE n and skipped records under DDP (2 gloo processes) ---------------------------------------------
@pytest.mark.slow  # ~65 s on 2 shared cores: each spawned process imports Lightning and torchmetrics
def test_pope_n_and_skipped_records_under_two_process_ddp(tmp_path):
    torch.multiprocessing.spawn(ddp_report_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"{rank}.json").read_text())
        f1 = next(r for r in got["rows"] if r["split"] == "random" and r["metric"] == "f1")
        assert f1["n"] == 5 and f1["baseline"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp=2, fp=1, fn=1
        assert {r["n"] for r in got["rows"]} == {5}
        assert sorted(s for s, _ in got["skipped"]) == ["pope.json:1", "pope.json:2", "pope.json:9"]


# ---- leftover temporaries of a killed write ---------------------------------------------------------------------
def test_a_killed_write_leaves_no_temporary_behind_the_next_write(tmp_path):
    target = tmp_path / "metrics.json"
    code = (
        f"import os, signal; from vseam_pl.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        f"    tmp.write_text('half'); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    (left,) = tmp_path.glob(".metrics.json.*.tmp")
    write_json(target, {"rows": []})
    assert not left.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.slow
def test_evaluate_under_two_process_ddp_reports_pope_n_and_every_ranks_skips(tiny_llava_dir, tmp_path):
    """`evaluate.py --trainer.devices 2 --trainer.strategy ddp` with bad images on both ranks' shards: POPE rows have the
    one-process n, and `skipped_records` counts the bad records of both ranks."""
    root = make_root(tmp_path / "r", n_pope=10, n_images=5)
    for i in (1, 2):  # POPE questions i, i+5 of each split: rank 0 and rank 1 shards both meet one
        (root / "images" / f"COCO_val2014_{i:012d}.jpg").unlink()
    args = [
        *("--model.model", str(tiny_llava_dir), "--synth_root", "null"),
        *("--data", "vseam_pl.data.POPEDataModule", "--data.root", str(root), "--data.splitting", "all"),
        *("--data.on_bad_record", "skip", "--data.num_workers", "0", "--data.batch_size", "4"),
        *("--trainer.accelerator", "cpu"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    ddp = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            *args,
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--output",
            str(tmp_path / "ddp.json"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    report = json.loads((tmp_path / "ddp.json").read_text())
    assert report["skipped_records"] == 8  # 2 splits x 2 images x 2 questions each
    n = {(r["split"], r["metric"]): r["n"] for r in report["rows"]}
    assert n[("random", "f1")] == n[("random", "accuracy")] == 6 and n[("avg", "f1")] == 12
