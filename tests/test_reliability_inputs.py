"""Bad files that gave bare errors naming no file (scales metadata, peft adapter folders), and outputs created with
permissions the user's umask does not give (synthetic split folders)."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from vseam_pl.export import export
from vseam_pl.interventions.modulation import HeadModulation, ScalesMismatchError
from vseam_pl.interventions.peft import PeftAdapterError
from vseam_pl.vlm import load_vlm


def test_scales_with_malformed_metadata_name_the_file(tmp_path):
    path = tmp_path / "head_scales.safetensors"
    meta = {**HeadModulation(2, 2, 16).metadata(), "head_dim": "sixteen"}
    save_file({"scales": torch.ones(2, 2)}, str(path), metadata=meta)
    with pytest.raises(ScalesMismatchError, match=rf"{path}: metadata head_dim 'sixteen' is not an integer"):
        HeadModulation.load(path)


def test_incomplete_or_invalid_peft_folders_name_the_file(tiny_llava_dir, tmp_path):
    vlm = load_vlm(str(tiny_llava_dir))
    scales = HeadModulation.for_vlm(vlm).save(tmp_path / "run" / "head_scales.safetensors")
    out = export(
        str(tiny_llava_dir), scales, tmp_path / "adapter", format="peft", base_model_id="test-org/tiny"
    )
    config = (out / "adapter_config.json").read_text()
    (out / "adapter_config.json").write_text("{not json")
    with pytest.raises(PeftAdapterError, match=r"adapter_config\.json: not a valid peft adapter config"):
        HeadModulation.from_peft(out, vlm)
    (out / "adapter_config.json").write_text(json.dumps({**json.loads(config), "peft_type": 7}))
    with pytest.raises(PeftAdapterError, match=r"adapter_config\.json"):
        HeadModulation.from_peft(out, vlm)
    (out / "adapter_config.json").write_text(config)
    weights = (out / "adapter_model.safetensors").read_bytes()
    (out / "adapter_model.safetensors").write_bytes(weights[:50])
    with pytest.raises(PeftAdapterError, match=rf"{out}: unreadable adapter weights"):
        HeadModulation.from_peft(out, vlm)
    (out / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{out}: no adapter_model\.safetensors"):
        HeadModulation.from_peft(out, vlm)


def test_synthetic_split_folders_get_the_users_umask(tmp_path):
    from vseam_pl.synth import generate_benchmarks

    old = os.umask(0o022)
    try:
        root = generate_benchmarks(tmp_path / "synth", seed=1, n_train=2, n_val=2, n_test=2)
    finally:
        os.umask(old)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in root.iterdir() if p.is_dir()}
    assert modes and set(modes.values()) == {"0o755"}, modes
