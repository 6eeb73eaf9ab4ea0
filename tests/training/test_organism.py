"""The planted-defect organism (`checkpoints/tiny-instructblip-planted`, docs/organism.md): a known answer that
discovery and learning must find. The ground truth is read from the organism's own `planted_defect.json`; the
source weights are the embedded model's, so the defect is exactly one head's `o_proj` columns times its factor."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.helpers import fit
from vseam_pl.discovery.runner import DiscoveryConfig, run_discovery
from vseam_pl.interventions import HeadModulation
from vseam_pl.lit_module import HeadModulationModule
from vseam_pl.organism import plant, read_defect, weights_digest
from vseam_pl.pairs import load_pairs
from vseam_pl.vlm import load_vlm

ORGANISM = REPO / "checkpoints" / "tiny-instructblip-planted"
SOURCE = REPO / "checkpoints" / "tiny-instructblip"


@pytest.fixture(scope="module")
def defect() -> dict:
    return read_defect(ORGANISM)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=5, n_train=48, n_val=4, n_test=4
    )


def test_the_organism_is_its_source_with_one_head_amplified(defect):
    """Hand-written reference: every tensor equal to the embedded model's but the planted head's o_proj columns,
    which are exactly `factor` times the source's."""
    assert defect["source_weights_sha256"] == weights_digest(SOURCE)  # built from the shipped weights
    src, org = load_file(SOURCE / "model.safetensors"), load_file(ORGANISM / "model.safetensors")
    assert src.keys() == org.keys()
    changed = [k for k in src if not torch.equal(src[k], org[k])]
    layer, head, factor = defect["layer"], defect["head"], defect["factor"]
    assert len(changed) == 1 and f"layers.{layer}.self_attn.o_proj.weight" in changed[0]
    d = src[changed[0]].shape[1] // 8
    cols = slice(head * d, (head + 1) * d)
    torch.testing.assert_close(org[changed[0]][:, cols], src[changed[0]][:, cols] * factor, rtol=0, atol=0)
    rest = torch.ones(src[changed[0]].shape[1], dtype=torch.bool)
    rest[cols] = False
    assert torch.equal(org[changed[0]][:, rest], src[changed[0]][:, rest])


def test_the_script_rebuilds_it_bit_for_bit_and_refuses_other_folders(defect, tmp_path):
    out = plant(str(SOURCE), str(tmp_path / "org"), defect["layer"], defect["head"], defect["factor"])
    assert (out / "model.safetensors").read_bytes() == (ORGANISM / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        plant(str(SOURCE), str(out), defect["layer"], defect["head"], defect["factor"])
    (tmp_path / "mine").mkdir()
    with pytest.raises(FileExistsError, match="not a planted-defect organism"):
        plant(str(SOURCE), str(tmp_path / "mine"), 0, 0, overwrite=True)


@pytest.mark.parametrize("method", ["ablation", "patching", "attribution"])
def test_discovery_finds_the_planted_head(method, defect, world, one_thread):
    """Ablation and attribution rank it the most negative head (removing it helps the answer). Activation patching
    measures something else — how much of the clean/edited difference flows through a head — and the amplified
    head carries the most of it: it is patching's most *positive* head (docs/organism.md)."""
    vlm = load_vlm(str(ORGANISM))
    pairs = load_pairs(world / "train" / "pairs", limit=16)
    scores = run_discovery(vlm, pairs, DiscoveryConfig(method=method, top_k=3)).scores
    planted = (defect["layer"], defect["head"])
    if method == "patching":
        assert scores.positive_heads("all", 1)[0][:2] == planted
    else:
        assert scores.negative_heads("all", 1)[0][:2] == planted


def test_learning_damps_the_planted_head_most(defect, world, one_thread):
    module = HeadModulationModule(model=str(ORGANISM), lr=0.05, select_on_val=False)
    fit(module, world, steps=12)
    s = module.modulation.scales.detach()
    planted = float(s[defect["layer"], defect["head"]])
    assert planted == float(s.min()) and planted < 0.8  # toward the fix (1 / factor), the lowest of all heads


@pytest.mark.slow
def test_the_default_recipe_recovers_the_planted_defect(defect, tmp_path):
    """The full organism through `train.py`'s default recipe (discovery, closed-form start, selection, the
    do-no-harm check) on the synthetic world, with a smaller run: 20 steps, 512 validation and 1,024 test questions."""
    import train
    from vseam_pl.report import read_metrics_json

    train.main(
        [
            "--model.model",
            str(ORGANISM),
            "--synth_root",
            str(REPO / "data" / "synth"),
            "--data.init_args.root",
            str(REPO / "data" / "synth"),
            "--data.init_args.limit",
            "{train: 640, val: 512, test: 1024}",
            "--trainer.val_check_interval",
            "10",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    run = next(tmp_path.rglob("metrics.json")).parent
    report = read_metrics_json(run / "metrics.json")
    assert report["scales_used"] == "selected", report["selection"]
    pooled = next(r for r in report["rows"] if r["split"] == "all" and r["metric"] == "accuracy")
    assert pooled["delta"] >= 0.05 and pooled["p_value"] < 0.001, pooled
    scales = HeadModulation.load(run / "head_scales.safetensors").scales.detach()
    planted = float(scales[defect["layer"], defect["head"]])
    assert planted == float(scales.min()) and planted <= 0.5
