"""`vseam export --out`: nothing a user owns is deleted (a file, a folder of other files, the training run that holds
the scales), a previous export is replaced only with `--overwrite`, two exports to one folder never mix, and the
export gets the user's usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import vseam_pl.export as export_module
from vseam_pl.export import EXPORT_INFO, ExportOutError, export, main

BASE = "test-org/tiny-llava"  # the Hub id a card must record (a local folder names none)


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before --out was checked")


def test_out_that_is_a_file_is_refused_before_any_work(scales_file, tmp_path, monkeypatch):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    monkeypatch.setattr(export_module, "load_vlm", _no_model)
    with pytest.raises(ExportOutError, match="is a file"):
        export("any/model", scales_file, target)
    assert target.read_text() == "mine"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_other_files_is_never_deleted(scales_file, tmp_path, monkeypatch, overwrite):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    monkeypatch.setattr(export_module, "load_vlm", _no_model)
    with pytest.raises(ExportOutError, match="not a vseam export"):
        export("any/model", scales_file, mine, overwrite=overwrite)
    assert (mine / "thesis.tex").read_text() == "years of work" and (mine / "sub").is_dir()


def test_the_run_folder_holding_the_scales_is_kept(scales_file, monkeypatch):
    run = scales_file.parent
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    (run / "events.out.tfevents.1").write_bytes(b"tb")
    monkeypatch.setattr(export_module, "load_vlm", _no_model)
    with pytest.raises(ExportOutError):
        main(["--model", "any/model", "--scales", str(scales_file), "--out", str(run)])
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"ckpt"
    assert (run / "events.out.tfevents.1").exists() and scales_file.exists()


def test_a_previous_export_is_replaced_only_with_overwrite(tiny_llava_dir, scales_file, tmp_path):
    out = tmp_path / "adapter"
    export(str(tiny_llava_dir), scales_file, out, format="peft", base_model_id=BASE)
    (out / "README.md").write_text("old card")
    with pytest.raises(ExportOutError, match="--overwrite"):
        export(str(tiny_llava_dir), scales_file, out, format="peft", base_model_id=BASE)
    assert (out / "README.md").read_text() == "old card"
    with pytest.raises(ExportOutError, match="peft export, not merged"):
        export(str(tiny_llava_dir), scales_file, out, format="merged", overwrite=True, base_model_id=BASE)
    main(["--model", str(tiny_llava_dir), "--base_model_id", BASE, "--scales", str(scales_file), "--out", str(out)]
         + ["--format", "peft", "--overwrite", "true"])  # fmt: skip
    assert (out / "README.md").read_text() != "old card" and (out / "adapter_model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left
    (out / "my_notes.txt").write_text(
        "mine"
    )  # a file the export did not write: not deleted even with overwrite
    with pytest.raises(ExportOutError, match="my_notes.txt"):
        export(str(tiny_llava_dir), scales_file, out, format="peft", overwrite=True, base_model_id=BASE)
    assert (out / "my_notes.txt").read_text() == "mine"


def test_two_exports_to_one_folder_never_mix(tiny_llava_dir, scales_file, tmp_path, monkeypatch):
    """A peft export runs to completion while a merged export to the same `--out` is half-way (as two processes
    started together do): the second one to finish fails, and the folder holds the first one's complete files."""
    out = tmp_path / "shared"
    heatmap, calls = export_module.save_heatmap, []

    def interleaved(scales, path):
        heatmap(scales, path)
        if not calls:
            calls.append(path)
            export(str(tiny_llava_dir), scales_file, out, format="peft", base_model_id=BASE)

    monkeypatch.setattr(export_module, "save_heatmap", interleaved)
    with pytest.raises(ExportOutError, match="another process"):
        export(str(tiny_llava_dir), scales_file, out, format="merged", base_model_id=BASE)
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    assert export_module.previous_export(out)["format"] == "peft"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_files_get_the_users_umask(tiny_llava_dir, scales_file, tmp_path):
    old = os.umask(0o022)
    try:
        out = export(str(tiny_llava_dir), scales_file, tmp_path / "merged", base_model_id=BASE)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.iterdir()]}
    assert modes[out.name] == 0o755, modes
    assert {name: oct(m) for name, m in modes.items() if name != out.name and m != 0o644} == {}
    assert (out / EXPORT_INFO).exists() and Path(out).is_dir()


def test_out_given_as_dot_is_checked_as_the_folder_itself(tiny_llava_dir, scales_file, tmp_path, monkeypatch):
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    export(str(tiny_llava_dir), scales_file, ".", format="peft", base_model_id=BASE)
    assert (here / "adapter_model.safetensors").exists() and export_module.previous_export(here)[
        "format"
    ] == "peft"
    assert not [p for p in here.iterdir() if p.name.startswith(".")]
