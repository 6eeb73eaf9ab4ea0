"""Two trainings under one `trainer.default_root_dir` never share a `version_N` run folder: the folder is claimed
with an exclusive `os.mkdir`, the next free number on a clash."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from vseam_pl.train import build_cli
from vseam_pl.versions import ExclusiveTensorBoardLogger, claim_version, exclusive_versions


def test_two_loggers_listing_the_same_root_get_their_own_folders(tmp_path):
    """Both were created before either wrote anything, as two runs started together are."""
    loggers = [TensorBoardLogger(tmp_path), TensorBoardLogger(tmp_path), CSVLogger(tmp_path)]
    exclusive_versions(loggers)
    dirs = [Path(logger.log_dir) for logger in loggers]
    assert len(set(dirs)) == 3 and all(d.is_dir() for d in dirs), dirs
    assert TensorBoardLogger(tmp_path, version=0).version == 0  # a fixed version is the user's choice


def test_a_folder_claimed_after_the_listing_is_skipped(tmp_path, monkeypatch):
    """The race itself: another process creates version_0 between this one's listing and its mkdir."""
    monkeypatch.setattr(TensorBoardLogger, "_get_next_version", lambda self: 0)
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    assert ExclusiveTensorBoardLogger(tmp_path).version == 1
    assert claim_version(tmp_path / "lightning_logs", 0) == 2


def test_two_training_clis_under_one_root_get_two_run_folders(tiny_llava_dir, tmp_path):
    args = [
        *("--model.model", str(tiny_llava_dir), "--data", "vseam_pl.data.GQADataModule"),
        *("--data.root", str(tmp_path / "data"), "--synth_root", "null"),
        *("--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.callbacks", "[]"),
    ]
    first, second = build_cli(args + ["--model.lr", "0.02"]), build_cli(args + ["--model.lr", "0.05"])
    assert first.trainer.log_dir != second.trainer.log_dir
    assert {Path(first.trainer.log_dir).name, Path(second.trainer.log_dir).name} == {"version_0", "version_1"}


def test_the_default_recipes_model_is_found_from_another_folder(tmp_path, monkeypatch):
    """`checkpoints/tiny-instructblip` is relative to the package; from another folder it reached the hub."""
    from vseam_pl.cli import REPO_ROOT, package_path

    monkeypatch.chdir(tmp_path)
    assert package_path("checkpoints/tiny-instructblip") == str(
        REPO_ROOT / "checkpoints" / "tiny-instructblip"
    )
    (tmp_path / "checkpoints" / "tiny-instructblip").mkdir(parents=True)  # the working directory's one wins
    assert package_path("checkpoints/tiny-instructblip") == "checkpoints/tiny-instructblip"
    assert package_path("llava-hf/llava-1.5-7b-hf") == "llava-hf/llava-1.5-7b-hf"
    (tmp_path / "checkpoints" / "tiny-instructblip").rmdir()
    cli = build_cli(["--synth_root", "null", "--trainer.callbacks", "[]", "--trainer.logger", "false"])
    assert cli.model.vlm.name == "tiny-instructblip" and Path(cli.config["model"]["model"]).is_absolute()
