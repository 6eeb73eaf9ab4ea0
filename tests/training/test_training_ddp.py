"""`train.py -c configs/strategies/ddp.yaml` as 2 CPU processes (gloo) learns the scales of a 1-process run with the
same global batch (2 x B vs 2B): the DataModules shard by global index, file order, and DDP averages gradients. The
strategy file leaves find_unused_parameters at its default (False) and the run completes, test stage included."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from vseam_pl.data import GQADataModule
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.report import read_metrics_json
from vseam_pl.synth import generate_benchmarks

REPO = Path(__file__).resolve().parents[2]
B, LIMIT = 2, 8


def args_for(model: Path, synth: Path, root: Path, batch: int) -> list[str]:
    return [
        "--model.select_on_val",  # the last step's scales on both sides: the equivalence under test
        "false",
        "--model.model",
        str(model),
        "--synth_root",
        "null",
        "--data",
        "vseam_pl.data.GQADataModule",
        "--data.init_args.root",
        str(synth),
        "--data.init_args.batch_size",
        str(batch),
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.shuffle_buffer",
        "0",
        "--data.init_args.limit",
        str(LIMIT),
        "--trainer.max_epochs",
        "2",
        "--trainer.default_root_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.accelerator",
        "cpu",
    ]


@pytest.mark.slow  # two spawned processes that each import Lightning, then the same run in-process
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tiny_llava_dir, tmp_path):
    torch.set_num_threads(1)
    synth = generate_benchmarks(tmp_path / "synth", n_train=8, n_val=2, n_test=4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    ddp = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-c",
            "configs/strategies/ddp.yaml",
            *args_for(tiny_llava_dir, synth, tmp_path / "ddp", B),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    argv, sys.argv = sys.argv, ["train.py"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            train.main(args_for(tiny_llava_dir, synth, tmp_path / "single", 2 * B))
    finally:
        sys.argv = argv
    run = {name: tmp_path / name / "lightning_logs" / "version_0" for name in ("ddp", "single")}
    scales = {name: HeadModulation.load(d / "head_scales.safetensors").scales for name, d in run.items()}
    assert not torch.allclose(scales["single"], torch.ones_like(scales["single"]))
    torch.testing.assert_close(scales["ddp"], scales["single"], atol=1e-6, rtol=1e-5)
    ckpt = torch.load(run["ddp"] / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2 * LIMIT // (2 * B) and list(ckpt["state_dict"]) == ["modulation.scales"]
    rows = {name: read_metrics_json(d / "metrics.json")["rows"] for name, d in run.items()}
    test = GQADataModule(root=str(synth))
    test.setup("test")
    assert test.counts["test"] % 2 == 1  # uneven shards over the 2 ranks
    # the test stage gathered both ranks' examples: the same paired rows as one process
    assert [(r["split"], r["n"], r["baseline"]) for r in rows["ddp"]] == [
        (r["split"], r["n"], r["baseline"]) for r in rows["single"]
    ]
    assert rows["ddp"][0]["split"] == "test" and rows["ddp"][0]["n"] == test.counts["test"]


def test_release_process_group_destroys_the_group(tmp_path):
    """train.py / evaluate.py end with it: a gloo group left to interpreter exit can abort the process."""
    import torch.distributed as dist

    from vseam_pl.distributed import all_gather_object, all_reduce_sum, dist_info, release_process_group

    release_process_group()  # no group: nothing to do
    assert dist_info() == (0, 1) and all_gather_object({"a": 1}) == [{"a": 1}]
    assert torch.equal(all_reduce_sum(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized() and dist_info() == (0, 1)
    release_process_group()
    assert not dist.is_initialized()
