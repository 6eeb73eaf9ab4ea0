"""Output destinations are checked before any work, never collide, and a default never replaces a file
(issue 25.6, 30.5): `vseam_pl.outputs`, `vseam evaluate --output`, `vseam train --output_dir`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from vseam_pl import outputs
from vseam_pl.evaluate import main as evaluate_main
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.outputs import check_writable, derive, free_name, resolve_metrics_path
from vseam_pl.train import main as train_main


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=8, n_val=4, n_test=8
    )


@pytest.fixture()
def no_model(monkeypatch):
    """Loading the model is the first real work: a check that runs after it fails this fixture."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr("vseam_pl.lit_module.load_vlm", refuse)


def test_two_outputs_never_share_a_path(tmp_path):
    with pytest.raises(ValueError, match="the table and the metrics would both be written to"):
        derive(tmp_path / "results.txt")
    with pytest.raises(ValueError, match="metrics and the scales"):
        derive(tmp_path / "head_scales.safetensors", with_scales=True)
    paths = derive(tmp_path / "results.json", with_scales=True)
    assert [p.name for p in paths.all()] == [
        "head_scales.safetensors",
        "results.json",
        "results.txt",
        "results.samples.jsonl",
    ]


def test_a_default_name_never_replaces_a_file(tmp_path):
    assert free_name(tmp_path).metrics == tmp_path / "metrics.json"
    (tmp_path / "metrics.json").write_text("{}")
    assert free_name(tmp_path).metrics == tmp_path / "metrics-2.json"
    (tmp_path / "metrics-2.samples.jsonl").write_text("")  # any of the three outputs taken: next name
    assert free_name(tmp_path).metrics == tmp_path / "metrics-3.json"


def test_output_folder_file_in_the_way_and_read_only(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    assert resolve_metrics_path(str(folder), "unused").metrics == folder / "metrics.json"
    assert (
        resolve_metrics_path(str(tmp_path / "new") + "/", "unused").metrics == tmp_path / "new/metrics.json"
    )
    (tmp_path / "clash.txt").mkdir()
    with pytest.raises(IsADirectoryError, match="clash.txt is a folder"):
        check_writable(derive(tmp_path / "clash.json"))
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="file is a file"):
        resolve_metrics_path(str(tmp_path / "file" / "sub" / "m.json"), "unused")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if not os.access(read_only, os.W_OK):  # not root: the real thing
            with pytest.raises(PermissionError, match="cannot write in"):
                resolve_metrics_path(str(read_only / "m.json"), "unused")
    finally:
        read_only.chmod(0o755)

    def read_only_fs(*args, **kwargs):  # what a read-only mount answers, for root too
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", read_only_fs)
    with pytest.raises(PermissionError, match=r"--output: cannot write in .*ro \(Read-only file system\)"):
        resolve_metrics_path(str(read_only / "sub" / "m.json"), "unused")


@pytest.mark.parametrize(
    "output, message",
    [
        ("results.txt", "the table and the metrics would both be written"),
        ("afile/m.json", "afile is a file"),
        ("adir.json", "adir.txt is a folder"),
    ],
)
def test_evaluate_checks_the_output_before_loading_the_model(
    output, message, tiny_llava_dir, tmp_path, no_model, capsys
):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir.txt").mkdir()
    with pytest.raises(SystemExit):
        evaluate_main(["--model.model", str(tiny_llava_dir), "--output", str(tmp_path / output)])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "main, flag",
    [
        (evaluate_main, "--scales"),
        (evaluate_main, "--ckpt_path"),
        (evaluate_main, "--model.init_scales"),
        (train_main, "--ckpt_path"),
        (train_main, "--model.init_scales"),
    ],
)
def test_missing_scales_and_checkpoints_fail_before_loading_the_model(main, flag, tmp_path, no_model, capsys):
    with pytest.raises(SystemExit):
        main([flag, str(tmp_path / "missing.file")])
    err = capsys.readouterr().err
    assert f"error: {flag} {tmp_path / 'missing.file'}: no such file" in err and "Traceback" not in err


def test_train_checks_output_dir_before_loading_the_model(tiny_llava_dir, tmp_path, no_model, capsys):
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit):
        train_main(["--model.model", str(tiny_llava_dir), "--output_dir", str(tmp_path / "taken")])
    assert "--output_dir: " in capsys.readouterr().err
    (tmp_path / "run" / "metrics.json").mkdir(parents=True)
    with pytest.raises(SystemExit):
        train_main(["--model.model", str(tiny_llava_dir), "--output_dir", str(tmp_path / "run")])
    assert "metrics.json is a folder" in capsys.readouterr().err


def test_evaluating_a_runs_scales_keeps_the_runs_metrics(tiny_llava_dir, tiny_world, tmp_path, one_thread):
    """`vseam evaluate --scales <run>/head_scales.safetensors` writes beside them under a new name."""
    run = tmp_path / "run"
    run.mkdir()
    scales = HeadModulation(4, 4, 16, model_name=tiny_llava_dir.name)
    with torch.no_grad():
        scales.scales.mul_(0.5)
    scales.save(run / "head_scales.safetensors")
    owned = {name: f"the run's own {name}\n" for name in ("metrics.json", "metrics.txt")}
    for name, text in owned.items():
        (run / name).write_text(text)
    args = [
        *("--model.model", str(tiny_llava_dir), "--scales", str(run / "head_scales.safetensors")),
        *("--data.root", str(tiny_world), "--synth_root", "null", "--data.limit", "4"),
        *("--data.num_workers", "0", "--benchmarks", "pope", "--trainer.enable_progress_bar", "false"),
    ]
    evaluate_main(args)
    evaluate_main(args)
    assert {name: (run / name).read_text() for name in owned} == owned
    for stem in ("metrics-2", "metrics-3"):
        report = json.loads((run / f"{stem}.json").read_text())
        assert report["samples"] == f"{stem}.samples.jsonl" and (run / report["samples"]).is_file()
        assert (run / f"{stem}.txt").is_file()
