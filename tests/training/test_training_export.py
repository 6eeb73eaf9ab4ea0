"""Export: scales folded into `o_proj` and saved as a plain Transformers folder that loads without vseam-pl and
gives the modulated model's logits; the CLI; mismatched scales are refused."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.helpers import make_images
from vseam_pl.export import EXPORT_INFO, export, main
from vseam_pl.interventions.modulation import HeadModulation, ScalesMismatchError
from vseam_pl.prompts import build_prompts
from vseam_pl.vlm import load_vlm

QUESTIONS = ["is there a dog?", "what color is the car?"]


def plain_logits(model, processor, prompts, images) -> torch.Tensor:
    batch = processor(images=images, text=prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_merged_model_loads_in_plain_transformers_with_modulated_logits(
    tiny_llava_dir, scales_file, tmp_path
):
    torch.set_num_threads(1)
    out = export(str(tiny_llava_dir), scales_file, tmp_path / "merged", base_model_id="a/tiny")
    assert not list(out.glob("*.py")) and "auto_map" not in json.loads((out / "config.json").read_text())
    info = json.loads((out / EXPORT_INFO).read_text())
    assert info["grid"] == [4, 4] and (out / "head_scales.safetensors").exists()

    vlm = load_vlm(str(tiny_llava_dir))
    prompts, images = build_prompts(vlm, QUESTIONS), make_images(2)
    base = plain_logits(vlm.model, vlm.processor, prompts, images)
    HeadModulation.load(scales_file, vlm).attach(vlm)
    modulated = plain_logits(vlm.model, vlm.processor, prompts, images)
    assert (modulated - base).abs().max() > 1e-3  # the scales matter

    merged = AutoModelForImageTextToText.from_pretrained(
        out
    ).eval()  # plain transformers: no hooks, no remote code
    processor = AutoProcessor.from_pretrained(out)
    torch.testing.assert_close(
        plain_logits(merged, processor, prompts, images), modulated, atol=1e-4, rtol=1e-4
    )


def test_cli_and_bf16_export(tiny_llava_dir, scales_file, tmp_path, capsys):
    main(
        [
            "--model",
            str(tiny_llava_dir),
            "--scales",
            str(scales_file),
            "--out",
            str(tmp_path / "bf16"),
            "--dtype",
            "bfloat16",
            "--base_model_id",
            "a/tiny",
        ]
    )
    assert "merged model:" in capsys.readouterr().out
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "bf16")
    assert merged.dtype == torch.bfloat16
    vlm = load_vlm(str(tiny_llava_dir))
    scales = HeadModulation.load(scales_file).scales
    w0, w = vlm.o_proj(1).weight, load_vlm(str(tmp_path / "bf16"), dtype="bfloat16").o_proj(1).weight
    expected = (w0 * scales[1].repeat_interleave(vlm.head_dim)[None, :]).to(torch.bfloat16)
    torch.testing.assert_close(w, expected, atol=1e-2, rtol=1e-2)


def test_scales_of_another_grid_are_refused(tiny_llava_dir, tmp_path):
    wrong = HeadModulation(3, 4, 16).save(tmp_path / "wrong.safetensors")
    with pytest.raises(ScalesMismatchError, match="head grid"):
        export(str(tiny_llava_dir), wrong, tmp_path / "merged", base_model_id="a/tiny")
    assert not (tmp_path / "merged").exists()
