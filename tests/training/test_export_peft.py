"""PEFT export: the scales as an IA3 adapter that plain `peft.PeftModel.from_pretrained` loads with the modulated
logits (before and after `merge_and_unload`), read back by `HeadModulation.from_peft`; the model card; the Hub
upload call (recorded offline, nothing is sent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText

from tests.helpers import make_images
from vseam_pl.export import export, main
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.interventions.peft import PeftAdapterError
from vseam_pl.io import write_json
from vseam_pl.model_card import BaseModelError, provenance_of, resolve_base_model
from vseam_pl.prompts import build_prompts
from vseam_pl.report import compare_rows, write_metrics_json
from vseam_pl.vlm import load_vlm

QUESTIONS = ["is there a dog?", "what color is the car?"]


def logits(model, processor, prompts, images) -> torch.Tensor:
    batch = processor(images=images, text=prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_peft_adapter_loads_in_plain_peft_with_modulated_logits(
    tiny_llava_dir, scales_file, tmp_path, one_thread
):
    out = export(
        str(tiny_llava_dir),
        scales_file,
        tmp_path / "adapter",
        format="peft",
        base_model_id="someone/tiny-llava",
    )
    config = json.loads((out / "adapter_config.json").read_text())
    # The Hub id, not the local folder: AutoPeftModel resolves it from any directory.
    assert config["peft_type"] == "IA3" and config["base_model_name_or_path"] == "someone/tiny-llava"
    assert sorted(config["target_modules"]) == sorted(config["feedforward_modules"])
    assert len(config["target_modules"]) == 4 and all(
        t.endswith("self_attn.o_proj") for t in config["target_modules"]
    )

    # Reference by hand: each head's output (o_proj input columns h*D:(h+1)*D) times its scale.
    vlm = load_vlm(str(tiny_llava_dir))
    prompts, images = build_prompts(vlm, QUESTIONS), make_images(2)
    scales = load_file(scales_file)["scales"]
    handles = [
        vlm.o_proj(layer).register_forward_pre_hook(
            lambda m, args, s=scales[layer]: (args[0] * s.repeat_interleave(vlm.head_dim),)
        )
        for layer in range(vlm.num_layers)
    ]
    modulated = logits(vlm.model, vlm.processor, prompts, images)
    for h in handles:
        h.remove()
    assert (
        modulated - logits(vlm.model, vlm.processor, prompts, images)
    ).abs().max() > 1e-3  # the scales matter

    base = AutoModelForImageTextToText.from_pretrained(tiny_llava_dir).eval()
    peft_model = PeftModel.from_pretrained(base, out).eval()
    torch.testing.assert_close(
        logits(peft_model, vlm.processor, prompts, images), modulated, atol=1e-5, rtol=1e-5
    )
    merged = peft_model.merge_and_unload()
    torch.testing.assert_close(
        logits(merged, vlm.processor, prompts, images), modulated, atol=1e-5, rtol=1e-5
    )

    back = HeadModulation.from_peft(out, load_vlm(str(tiny_llava_dir)))
    torch.testing.assert_close(back.scales.detach(), scales)


def test_from_peft_refuses_untied_and_foreign_adapters(tiny_llava_dir, scales_file, tmp_path):
    out = export(str(tiny_llava_dir), scales_file, tmp_path / "adapter", format="peft", base_model_id="a/b")
    vlm = load_vlm(str(tiny_llava_dir))
    weights_path = out / "adapter_model.safetensors"
    weights = load_file(weights_path)
    key = next(k for k in weights if ".layers.2." in k)
    weights[key] = weights[key].clone()
    weights[key][0, 17] += 0.5  # head 1 (head_dim 16) no longer has one value
    save_file(weights, weights_path)
    with pytest.raises(PeftAdapterError, match=r"head 1's 16 IA3 values differ"):
        HeadModulation.from_peft(out, vlm)

    weights[key][0, :] = float("nan")
    save_file(weights, weights_path)
    with pytest.raises(PeftAdapterError, match="NaN or infinity"):
        HeadModulation.from_peft(out, vlm)

    config = json.loads((out / "adapter_config.json").read_text())
    write_json(out / "adapter_config.json", {**config, "feedforward_modules": []})
    with pytest.raises(PeftAdapterError, match="not in feedforward_modules"):
        HeadModulation.from_peft(out, vlm)
    write_json(out / "adapter_config.json", {**config, "peft_type": "LORA", "r": 2})
    with pytest.raises(PeftAdapterError, match="expected 'IA3'"):
        HeadModulation.from_peft(out, vlm)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        HeadModulation.from_peft(tmp_path, vlm)


def test_model_card_and_push_to_hub_upload_call(tiny_llava_dir, scales_file, tmp_path, monkeypatch, capsys):
    run = scales_file.parent
    rows = compare_rows("gqa", "test", [1, 0, 1, 0, 1, 1], [1, 1, 1, 1, 0, 1], n_resamples=200)
    write_metrics_json(run / "metrics.json", "tiny-llava", str(scales_file), rows)
    (run / "config.yaml").write_text(
        "data:\n  class_path: vseam_pl.data.GQADataModule\n  init_args:\n    fraction: 0.25\n"
    )
    calls = []

    def record(name):
        def fn(self, *args, **kwargs):
            folder = kwargs.get("folder_path")
            calls.append(
                (name, args, kwargs, sorted(p.name for p in Path(folder).iterdir()) if folder else None)
            )

        return fn

    monkeypatch.setattr(HfApi, "create_repo", record("create_repo"))
    monkeypatch.setattr(HfApi, "upload_folder", record("upload_folder"))
    main(
        [
            "--model",
            str(tiny_llava_dir),
            "--scales",
            str(scales_file),
            "--out",
            str(tmp_path / "exp"),
            "--format",
            "peft",
            "--push-to-hub",
            "someone/tiny-vseam",
            "--base_model_id",
            "someone/tiny-llava",
            "--private",
            "true",
        ]
    )
    assert "peft adapter:" in capsys.readouterr().out
    out = tmp_path / "exp"
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][1] == ("someone/tiny-vseam",) and calls[0][2]["private"] is True
    upload = calls[1][2]
    assert upload["repo_id"] == "someone/tiny-vseam" and upload["folder_path"] == str(out)
    files = set(calls[1][3])
    assert {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "head_scales.safetensors",
        "metrics.json",
        "scales_heatmap.png",
        "vseam_export.json",
    } <= files
    assert (out / "scales_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "someone/tiny-llava" and card.data.library_name == "peft"
    text = card.text
    # No local path anywhere in what is uploaded: not the model folder, not the scales file, not the output.
    for name in ("README.md", "vseam_export.json", "adapter_config.json"):
        assert str(tmp_path) not in (out / name).read_text(), name
    assert "--model someone/tiny-llava --scales head_scales.safetensors --out exp" in text
    assert "learned by `vseam train`" in text  # config.yaml beside the scales: a training run
    assert 'PeftModel.from_pretrained(base, "someone/tiny-vseam")' in text and "merge_and_unload" in text
    assert "(scales_heatmap.png)" in text and "fraction: 0.25" in text and "--format peft" in text
    # The metrics table with p-value and CI of the one row: 66.67 -> 83.33, +16.67 points.
    row = next(line for line in text.splitlines() if line.startswith("| gqa | test | accuracy"))
    assert "66.67" in row and "83.33" in row and "+16.67" in row and row.count("[") == 1


def test_merged_export_gets_a_card_too(tiny_llava_dir, scales_file, tmp_path):
    out = export(str(tiny_llava_dir), scales_file, tmp_path / "merged", base_model_id="someone/tiny-llava")
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "No metrics.json" in card.text
    assert card.data.base_model == "someone/tiny-llava"
    assert (
        "AutoModelForImageTextToText.from_pretrained" in card.text and (out / "scales_heatmap.png").exists()
    )
    # No config.yaml beside the scales: the card does not claim they were learned.
    assert "not recorded" in card.text and "learned by" not in card.text and "One learned" not in card.text
    info = json.loads((out / "vseam_export.json").read_text())
    assert info["scales"] == "head_scales.safetensors" and info["base_model"] == "someone/tiny-llava"


def test_base_model_resolves_to_a_hub_id_or_is_refused(tiny_llava_dir, tmp_path, monkeypatch):
    assert resolve_base_model("llava-hf/llava-1.5-7b-hf") == "llava-hf/llava-1.5-7b-hf"
    snapshot = tmp_path / "hub" / "models--llava-hf--llava-1.5-7b-hf" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    assert resolve_base_model(snapshot) == "llava-hf/llava-1.5-7b-hf"  # a Hugging Face cache folder
    named = tmp_path / "named"
    named.mkdir()
    (named / "config.json").write_text(json.dumps({"_name_or_path": "Salesforce/instructblip-vicuna-7b"}))
    assert resolve_base_model(named) == "Salesforce/instructblip-vicuna-7b"
    # A relative local folder (the reported case: `checkpoints/tiny-llava`) has no id: refused, naming the fix.
    monkeypatch.chdir(tiny_llava_dir.parent)
    with pytest.raises(BaseModelError, match="local folder and names no Hub id.*--base_model_id"):
        resolve_base_model(tiny_llava_dir.name)
    with pytest.raises(BaseModelError, match="not a local path"):
        resolve_base_model(tiny_llava_dir.name, base_model_id=tiny_llava_dir.name)
    with pytest.raises(BaseModelError, match="expected a Hub model id"):
        resolve_base_model(tiny_llava_dir.name, base_model_id="/abs/path")
    assert resolve_base_model(tiny_llava_dir.name, base_model_id="me/tiny") == "me/tiny"
    with pytest.raises(BaseModelError, match="local folder"):
        export(tiny_llava_dir.name, tmp_path / "none.safetensors", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_scales_provenance_is_what_the_files_say():
    assert "learned" in provenance_of("run/head_scales.safetensors", config_found=True)
    assert "discover --init-scales" in provenance_of("d/init_scales.safetensors", config_found=False)
    assert provenance_of("x.safetensors", config_found=False).startswith("not recorded")
    assert provenance_of("x.safetensors", True, "hand-set: head 3.1 x 2") == "hand-set: head 3.1 x 2"
