"""`protocol="release"`: vseam-pl's batched discovery against a hand-written per-head loop with the V-SEAM release's
own semantics (its prompts, batch of 1, a plain o_proj pre-hook, full-vocabulary first-sub-token probabilities,
ReLU'd aggregation) on both embedded models; the release's closed-form constants; set ablation against
`ablate_heads` loops; the patching-normalisation warning on pairs whose edits are reversed."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from scipy.stats import binomtest

from callbacks.head_discovery import HeadDiscovery
from vseam_pl.discovery import DiscoveryConfig, HeadScores, init_scales_from_scores, run_discovery
from vseam_pl.discovery.patching import EditEffectWarning
from vseam_pl.discovery.set_ablation import SetAblationConfig, head_sets, run_set_ablation
from vseam_pl.interventions.ablation import ablate_heads
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.pairs import load_pairs, write_pairs
from vseam_pl.prompts import release_prompt
from vseam_pl.vlm import load_vlm

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
#: The release's prompts, copied from the issue (not from the package).
PROMPTS = {
    "llava": "USER: <image>\n{q} Please answer with a single word.\nASSISTANT:",
    "instructblip": "Question: {q} Answer using a single word.",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def synth_pairs(tmp_path_factory):
    """Synthetic-world pairs: the embedded models' own distribution."""
    from vseam_pl.synth.writers import generate_benchmarks

    root = generate_benchmarks(tmp_path_factory.mktemp("synth"), seed=123, n_train=1, n_val=1, n_test=4)
    return load_pairs(root / "test" / "pairs" / "pairs.jsonl")


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    return {name: load_vlm(str(CHECKPOINTS / name)) for name in ("tiny-llava", "tiny-instructblip")}


# -- the release, written out by hand -------------------------------------------------------------------------------
@torch.no_grad()
def release_probs(
    vlm, pair, ablate: tuple[int, int] | None = None, mode: str = "mean_others"
) -> tuple[float, bool]:
    """One example at batch size 1: the full-vocabulary probability of the answer's first sub-token, and whether the
    argmax is one of the answer's tokens, with head `ablate` replaced by a pre-hook on its layer's o_proj."""
    image = Image.open(pair.clean_image).convert("RGB")
    inputs = vlm.processor(
        images=[image], text=[PROMPTS[vlm.family].format(q=pair.question)], return_tensors="pt"
    )
    handle = None
    if ablate is not None:
        layer, head = ablate
        heads, dim = vlm.num_heads, vlm.head_dim

        def pre_hook(_module, args):
            x = args[0]
            z = x.view(*x.shape[:-1], heads, dim).clone()
            others = (z.sum(dim=-2) - z[..., head, :]) / (heads - 1)
            z[..., head, :] = others if mode == "mean_others" else 0.0
            return (z.view(x.shape),)

        handle = vlm.decoder.layers[layer].self_attn.o_proj.register_forward_pre_hook(pre_hook)
    try:
        logits = vlm.model(**inputs).logits[0, -1]
    finally:
        if handle is not None:
            handle.remove()
    ids = vlm.tokenizer(pair.answer, add_special_tokens=False)["input_ids"]
    probs = torch.softmax(logits.double(), dim=-1)
    return float(probs[ids[0]]), int(probs.argmax()) in ids


def release_scores(vlm, pairs, mode: str = "mean_others") -> dict[str, torch.Tensor]:
    d = torch.zeros(len(pairs), vlm.num_layers, vlm.num_heads, dtype=torch.float64)
    correct = []
    for i, pair in enumerate(pairs):
        base, ok = release_probs(vlm, pair)
        correct.append(ok)
        for layer in range(vlm.num_layers):
            for head in range(vlm.num_heads):
                d[i, layer, head] = base - release_probs(vlm, pair, (layer, head), mode)[0]
    c = torch.tensor(correct)
    return {
        "positive": d[c].clamp(min=0).mean(0),
        "negative": (-d[~c]).clamp(min=0).mean(0),
        "signed": d.mean(0),
        "n_correct": int(c.sum()),
    }


def mixed(vlm, pairs, n: int = 2) -> list:
    """Up to n pairs the model answers right and n it answers wrong (both kinds, so both statistics are tested)."""
    ok = [release_probs(vlm, p)[1] for p in pairs]
    right = [p for p, c in zip(pairs, ok, strict=True) if c]
    wrong = [p for p, c in zip(pairs, ok, strict=True) if not c]
    assert right and wrong, "the embedded model should get some of these pairs right and some wrong"
    return right[:n] + wrong[:n]


# -- exactness ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,mode",
    [
        ("tiny-llava", "mean_others"),
        ("tiny-instructblip", "mean_others"),
        pytest.param("tiny-llava", "zero", marks=pytest.mark.slow),
    ],
)
def test_release_protocol_equals_hand_written_release_loop(models, synth_pairs, name, mode):
    vlm = models[name]
    pairs = mixed(vlm, synth_pairs)
    ref = release_scores(vlm, pairs, mode)
    got = run_discovery(
        vlm,
        pairs,
        DiscoveryConfig(
            method="ablation", protocol="release", ablation_mode=mode, batch_size=13, pair_batch=3
        ),
    ).scores
    assert got.protocol == "release" and got.counts["all"]["positive"]["n"] == ref["n_correct"]
    for stat in ("positive", "negative", "signed"):
        assert ref[stat].abs().max() > 1e-3  # the heads matter, so agreement is informative
        torch.testing.assert_close(got.get("all", stat).double(), ref[stat], atol=1e-6, rtol=0)
    assert (got.get("all", "negative") >= 0).all()  # the release's negative score is a non-negative gain
    top = int(ref["negative"].argmax())
    assert got.negative_heads("all", 1)[0][:2] == (top // vlm.num_heads, top % vlm.num_heads)


def test_release_prompts(models, synth_pairs):
    for vlm in models.values():
        assert release_prompt(vlm, "Is it red?") == PROMPTS[vlm.family].format(q="Is it red?")
    llava = models["tiny-llava"]
    assert release_prompt(llava, "Is it red?", instruction="") == "USER: <image>\nIs it red?\nASSISTANT:"
    with pytest.raises(ValueError, match="release has prompts for"):
        release_prompt(dataclasses.replace(llava, family="qwen2_vl"), "Is it red?")
    default = run_discovery(llava, synth_pairs[:2], DiscoveryConfig(method="ablation", batch_size=64)).scores
    assert default.protocol == "default" and not default.negative_is_gain


def test_release_protocol_rejects_what_the_release_does_not_do():
    for bad in (
        {"method": "patching"},
        {"filter": True},
        {"ablation_mode": "dataset_mean"},
        {"ablation_image": "edited"},
    ):
        with pytest.raises(ValueError, match="protocol 'release'"):
            DiscoveryConfig(protocol="release", **bad).validate()
    with pytest.raises(ValueError, match="unknown protocol"):
        DiscoveryConfig(protocol="paper").validate()


def test_release_negative_ranking_and_its_fallback(tmp_path):
    """Release negative scores are gains (largest first); with no wrong example the ranking falls back to the signed
    score, where the most negative is the most negative head; the protocol survives a save/load."""
    nan = torch.full((2, 2), float("nan"))
    signed = torch.tensor([[0.3, -0.2], [0.1, -0.5]])
    gains = {"signed": signed, "positive": nan, "negative": torch.tensor([[0.0, 0.3], [0.05, 0.1]])}
    scores = HeadScores("ablation", {"all": gains}, protocol="release")
    assert [h[:2] for h in scores.negative_heads("all", 5)] == [(0, 1), (1, 1), (1, 0)]
    assert [h[:2] for h in scores.positive_heads("all", 5)] == [(0, 0), (1, 0)]  # fallback: signed > 0
    all_right = HeadScores("ablation", {"all": {**gains, "negative": nan}}, protocol="release")
    assert [h[:2] for h in all_right.negative_heads("all", 5)] == [(1, 1), (0, 1)]
    assert [h[:2] for h in all_right.ranked_heads("all", "negative", 3)] == [(1, 1), (0, 1), (1, 0)]
    scores.save(tmp_path)
    loaded = HeadScores.load(tmp_path)
    assert loaded.protocol == "release" and loaded.negative_heads("all", 5) == scores.negative_heads("all", 5)


# -- closed form ----------------------------------------------------------------------------------------------------
def test_closed_form_release_constants():
    signed = torch.tensor([[0.3, -0.2], [1.7, -1.4]])
    release = HeadScores("ablation", {"all": {"signed": signed}}, protocol="release")
    torch.testing.assert_close(
        init_scales_from_scores(release, "closed_form"), torch.tensor([[1.3, 0.8], [2.0, 0.0]])
    )  # clip(1 + score, 0, 2)
    torch.testing.assert_close(
        init_scales_from_scores(release, "closed_form", eps=0.25), torch.tensor([[1.3, 1.0], [2.0, 0.0]])
    )  # |score| < eps keeps scale 1
    default = HeadScores("ablation", {"all": {"signed": signed}})
    torch.testing.assert_close(
        init_scales_from_scores(default, "closed_form"), 1 + 0.5 * signed / 1.7
    )  # normalised, lambda 0.5, within (0.5, 1.5)
    torch.testing.assert_close(
        init_scales_from_scores(default, "closed_form", protocol="release"),
        init_scales_from_scores(release, "closed_form"),
    )
    with pytest.raises(ValueError, match="lo <= hi"):
        init_scales_from_scores(release, "closed_form", clip=(2.0, 0.0))


def test_cli_release_protocol_writes_release_scores_and_scales(models, synth_pairs, tmp_path, capsys):
    from vseam_pl.discover import main

    manifest = write_pairs(tmp_path / "pairs.jsonl", synth_pairs[:3])
    out = tmp_path / "run"
    assert (
        main(
            [
                "--model",
                str(CHECKPOINTS / "tiny-llava"),
                "--pairs",
                str(manifest),
                "--out",
                str(out),
                "--protocol",
                "release",
                "--init-scales",
                "closed_form",
                "--top-k",
                "4",
            ]
        )
        == 0
    )
    printed = capsys.readouterr()
    summary = json.loads(printed.out.strip().splitlines()[-1])
    scores = HeadScores.load(out)
    assert summary["protocol"] == scores.protocol == "release"
    # issue 30.10: the console says what the lists measure, and why release "negative" scores are >= 0
    assert "negative (--protocol release)" in printed.err
    if ">= 0 by construction" in printed.err:  # some pair answered wrongly: the release's gain
        assert all(score >= 0 for _, _, score in summary["negative"])
    else:  # none: the signed fallback, said so
        assert "gain is undefined" in printed.err
    assert json.loads((out / "head_scores.json").read_text())["negative_sign"].startswith("gain")
    expected = (1 + scores.signed().double()).clamp(0, 2).float()
    torch.testing.assert_close(HeadModulation.load(out / "init_scales.safetensors").scales.detach(), expected)
    assert (
        main(
            [
                "--model",
                str(CHECKPOINTS / "tiny-llava"),
                "--pairs",
                str(manifest),
                "--out",
                str(tmp_path / "x"),
                "--protocol",
                "release",
                "--method",
                "patching",
            ]
        )
        == 2
    )
    assert "protocol 'release'" in capsys.readouterr().err
    sets = tmp_path / "sets"
    assert (
        main(
            [
                "--model",
                str(CHECKPOINTS / "tiny-llava"),
                "--pairs",
                str(manifest),
                "--out",
                str(sets),
                "--protocol",
                "release",
                "--method",
                "set_ablation",
                "--scores",
                str(out),
                "--set-k",
                "2",
                "--random-sets",
                "2",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["set_ablation"]
    written = json.loads((sets / "set_ablation.json").read_text())
    assert written["sets"]["positive"]["heads"] == [
        list(h[:2]) for h in scores.ranked_heads("all", "positive", 2)
    ]
    assert printed["positive"]["mean_drop"] == written["sets"]["positive"]["mean_drop"]
    assert (sets / "plots" / "set_ablation.png").exists() and not (sets / "head_scores.safetensors").exists()


# -- set ablation ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def set_probs(vlm, pair, heads, mode) -> tuple[float, bool]:
    with ablate_heads(vlm, heads, mode):
        return release_probs(vlm, pair)


def test_set_ablation_equals_ablate_heads_loop(models, synth_pairs, tmp_path):
    vlm = models["tiny-llava"]
    pairs = synth_pairs[:5]
    scores = run_discovery(vlm, pairs, DiscoveryConfig(method="ablation", protocol="release")).scores
    cfg = SetAblationConfig(
        k=3, random_sets=3, seed=7, mode="zero", protocol="release", pair_batch=2, n_resamples=500
    )
    result = run_set_ablation(vlm, pairs, scores, cfg, out_dir=tmp_path)
    s = result.summary
    assert [tuple(h) for h in s["sets"]["positive"]["heads"]] == [
        h[:2] for h in scores.ranked_heads("all", "positive", 3)
    ]
    assert len(s["sets"]) == 5
    base = [release_probs(vlm, p) for p in pairs]
    for name, entry in s["sets"].items():
        heads = [tuple(h) for h in entry["heads"]]
        assert len(set(heads)) == 3
        ref = [set_probs(vlm, p, heads, "zero") for p in pairs]
        torch.testing.assert_close(
            torch.tensor(s["examples"][name]["p"]), torch.tensor([p for p, _ in ref]), atol=1e-6, rtol=0
        )
        assert entry["accuracy"] == pytest.approx(sum(c for _, c in ref) / len(pairs))
        assert entry["mean_drop"] == pytest.approx(
            sum(b[0] - r[0] for b, r in zip(base, ref, strict=True)) / len(pairs), abs=1e-6
        )
        only_base = sum(b[1] and not r[1] for b, r in zip(base, ref, strict=True))
        only_set = sum(r[1] and not b[1] for b, r in zip(base, ref, strict=True))
        expected_p = binomtest(only_base, only_base + only_set).pvalue if only_base + only_set else 1.0
        assert entry["p_mcnemar_vs_base"] == pytest.approx(expected_p)
    drops = [s["sets"][f"random_{r:03d}"]["mean_drop"] for r in range(3)]
    assert s["random"]["mean_drop"] == pytest.approx(sum(drops) / 3)
    assert s["vs_random"]["positive"]["p_rank"] == pytest.approx(
        (1 + sum(d >= s["sets"]["positive"]["mean_drop"] for d in drops)) / 4
    )
    on_disk = json.loads((tmp_path / "set_ablation.json").read_text())
    assert on_disk["sets"]["negative"]["heads"] == s["sets"]["negative"]["heads"]
    with Image.open(tmp_path / "plots" / "set_ablation.png") as im:
        assert im.size[0] > 100
    again, _ = head_sets(scores, cfg)
    other, _ = head_sets(scores, dataclasses.replace(cfg, seed=8))
    assert [tuple(h) for h in s["sets"]["random_000"]["heads"]] == again["random_000"] != other["random_000"]


# -- patching normalisation ---------------------------------------------------------------------------------------
def test_patching_warns_when_edits_are_reversed(models, synth_pairs):
    """tiny-llava follows object edits (LD_clean - LD_edited >> 0); with clean and edited images swapped every edit
    effect is negative, so sum-normalised scores flip sign: a warning with the numbers, and the alternatives."""
    vlm = models["tiny-llava"]
    objects = [p for p in synth_pairs if p.level == "object"][:3]
    reversed_ = [
        dataclasses.replace(p, clean_image=p.edited_image, edited_image=p.clean_image) for p in objects
    ]
    cfg = DiscoveryConfig(method="patching", batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EditEffectWarning)
        straight = run_discovery(vlm, objects, cfg).scores  # the model follows these: no warning
    with pytest.warns(EditEffectWarning, match=r"group all: sum of LD_clean - LD_edited = -\d.* <= 0"):
        flipped = run_discovery(vlm, reversed_, cfg).scores
    assert flipped.counts["all"]["edit"]["nonpositive"] == 3 and flipped.meta["warnings"]
    # unnormalised: the mean effect in nats; per pair: the mean of each pair's own normalised score
    none = (
        run_discovery(vlm, reversed_, dataclasses.replace(cfg, patching_norm="none")).scores.signed().double()
    )
    edit = flipped.counts["all"]["edit"]
    torch.testing.assert_close(flipped.signed().double(), none * 3 / edit["sum"], atol=1e-5, rtol=1e-5)
    with pytest.warns(EditEffectWarning):
        singles = [run_discovery(vlm, [p], cfg).scores.signed().double() for p in reversed_]
    per_pair = run_discovery(
        vlm, reversed_, dataclasses.replace(cfg, patching_norm="per_pair")
    ).scores.signed()
    torch.testing.assert_close(per_pair.double(), sum(singles) / 3, atol=1e-5, rtol=1e-5)
    assert straight.counts["all"]["edit"]["sum"] > 0


# -- the callback ---------------------------------------------------------------------------------------------------
def test_callback_release_protocol_closed_form_and_set_ablation(synth_pairs, tmp_path):
    import lightning.pytorch as pl
    from test_discovery_callback import TinyModulated

    module = TinyModulated(str(CHECKPOINTS / "tiny-llava"))
    callback = HeadDiscovery(
        list(synth_pairs[:3]),
        DiscoveryConfig(protocol="release"),
        out_dir=tmp_path / "run",
        log_figures=False,
        init_scales="closed_form",
        set_ablation={"k": 2, "random_sets": 2},
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        logger=False,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module)
    scores = HeadScores.load(tmp_path / "run")
    assert scores.protocol == "release"
    torch.testing.assert_close(module.modulation.scales.detach(), (1 + scores.signed()).clamp(0, 2))
    summary = json.loads((tmp_path / "run" / "set_ablation.json").read_text())
    assert summary["settings"]["protocol"] == "release" and len(summary["sets"]) == 4


def test_summary_legend_says_what_each_list_measures():
    from vseam_pl.discover import summary_legend

    default = summary_legend("ablation", "default", negative_is_gain=False)
    assert "positive: heads whose ablation lowers" in default and "< 0" in default and ">= 0" not in default
    release = summary_legend("ablation", "release", negative_is_gain=True)
    assert ">= 0 by construction" in release and "red" in release
    fallback = summary_legend("ablation", "release", negative_is_gain=False)
    assert "gain is undefined" in fallback and ">= 0" not in fallback
    patching = summary_legend("patching", "default", negative_is_gain=False)
    assert "patched into the edited run" in patching and "score < 0" in patching
