"""`vseam compare` (`vseam_pl.studies.compare`): every method on the same test examples, the output schema, trainable-parameter counts,
McNemar p-values against the zero-shot model recomputed from the saved per-example results, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vseam_pl.stats import cluster_permutation_test, mcnemar_exact
from vseam_pl.studies import compare

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=4, n_train=16, n_val=4, n_test=10
    )


@pytest.fixture(scope="module")
def compared(tiny_llava_dir, tiny_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    args = [
        "--models",
        str(tiny_llava_dir),
        "--data_root",
        str(tiny_world),
        "--out",
        str(tmp / "docs"),
        "--runs_dir",
        str(tmp / "runs"),
        "--steps",
        "2",
        "--batch_size",
        "4",
        "--fraction",
        "1.0",
        "--test_batches",
        "0",
        "--random_seeds",
        "0",
        "1",
        "--top_k",
        "2",
        "--discovery_pairs",
        "4",
        "--num_workers",
        "0",
        "--lr",
        "0.3",
        "--lora_lr",
        "0.05",
        "--iti_ks",
        "2",
        "48",
        "--iti_alphas",
        "1",
        "15",
        "--iti_questions",
        "12",
        "--val_batches",
        "1",
        "--val_every",
        "1",
    ]
    return tmp, args, compare.main(args)


def test_comparison_schema_counts_and_p_values(compared, tiny_llava_dir):
    tmp, _, result = compared
    saved = json.loads((tmp / "docs" / "comparison.json").read_text())
    assert saved["command"] == result["command"] and saved["command"].startswith("vseam compare ")
    (model,) = saved["models"]
    assert model["model"] == str(tiny_llava_dir) and model["discovery"]["pairs"] == 4
    rows = model["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("zero_shot", None),
        ("closed_form", None),
        ("learned_ones", None),
        ("learned_discovery", None),
        ("random_heads", 0),
        ("random_heads", 1),
        ("discovered_heads", None),
        ("ia3", None),
        ("lora", None),
        ("iti_mass_mean", None),
        ("iti_learned", None),
        ("lofit", None),
    ]
    assert all(set(r) == set(saved["row_keys"]) for r in rows)
    k = model["discovery"]["heads_selected"]
    assert 1 <= k <= 4  # top-2 positive + top-2 negative on the 4x4 grid
    params = {r["method"]: r["trainable_params"] for r in rows}
    assert params == {
        "zero_shot": 0,
        "closed_form": 0,
        "learned_ones": 16,
        "learned_discovery": 16,
        "random_heads": k,
        "discovered_heads": k,
        "ia3": 4 * 64,
        "lora": 4 * 2 * (4 * 64 + 64 * 4),
        "iti_mass_mean": 0,
        "iti_learned": k * 16,
        "lofit": 4 * 4 * 16 + k * 16,  # every head's scaling vector (selection), then k bias vectors
    }
    steps = {r["method"]: r["train_steps"] for r in rows}
    assert steps["zero_shot"] == steps["closed_form"] == steps["iti_mass_mean"] == 0
    assert all(
        steps[m] == 2
        for m in (
            "learned_ones",
            "learned_discovery",
            "random_heads",
            "discovered_heads",
            "ia3",
            "lora",
            "iti_learned",
            "lofit",
        )
    )

    # Every trained method is selected on validation (before training and after each step): the tested values are
    # the best pass if it beats the frozen model there, else the identity, whose answers are then the zero-shot's.
    runs = tmp / "runs" / Path(tiny_llava_dir).name
    zero = {o["key"]: o["correct"] for o in json.loads((runs / "zero_shot.json").read_text())["outcomes"]}
    for r in rows:
        decision = r["decision"]
        if steps[r["method"]] == 0:
            assert decision is None
            continue
        assert decision["used"] in ("selected", "identity") and decision["n"] > 0
        assert decision["val_identity"] is not None and decision["p_value"] is not None
        name = r["method"] if r["seed"] is None else f"{r['method']}_seed{r['seed']}"
        outs = json.loads((runs / f"{name}.json").read_text())["outcomes"]
        if decision["used"] == "identity":
            assert all(o["correct"] == zero[o["key"]] for o in outs), r["method"]
        else:
            assert decision["selected_step"] in (0, 1, 2) and decision["delta"] > 0
    md = (tmp / "docs" / "comparison.md").read_text()
    assert "| tested values |" in md and "{" not in md.split("```")[2]  # every placeholder filled in
    kept = sum(r["decision"] is not None and r["decision"]["used"] == "identity" for r in rows)
    assert f"{kept} of {sum(r['decision'] is not None for r in rows)} trained runs" in md

    n = rows[0]["n"]
    assert n > 10 and all(r["n"] == n for r in rows)  # the same test examples for every method
    assert rows[0]["p_value"] == 1.0 and rows[0]["delta"] == 0.0
    for r in rows:
        name = r["method"] if r["seed"] is None else f"{r['method']}_seed{r['seed']}"
        outs = json.loads((runs / f"{name}.json").read_text())["outcomes"]
        mine = [o["correct"] for o in outs]
        ref = [zero[o["key"]] for o in outs]
        assert r["p_value"] == pytest.approx(mcnemar_exact(mine, ref))
        images = [o["image_id"] for o in outs]
        assert all(images) and r["n_images"] == len(set(images)) < n  # several questions per image
        assert r["p_value_images"] == pytest.approx(cluster_permutation_test(mine, ref, images))
        assert r["accuracy"] == pytest.approx(sum(mine) / n)
        assert r["method_only"] == sum(a and not b for a, b in zip(mine, ref, strict=True))
        assert set(r["levels"]) == {"object", "attribute", "relation"}

    # ITI: K and alpha chosen on validation from the swept grid (K capped at the 16 heads), the best setting's
    # validation accuracy; LoFiT: k heads by the norm of their scaling vectors.
    iti = next(r for r in rows if r["method"] == "iti_mass_mean")["selection"]
    assert [(g["k"], g["alpha"]) for g in iti["sweep"]] == [(2, 1.0), (2, 15.0), (16, 1.0), (16, 15.0)]
    assert iti["chosen"] == max(iti["sweep"], key=lambda g: g["val_accuracy"])
    assert 0.0 <= iti["probe_val_accuracy_top"] <= 1.0
    lofit = next(r for r in rows if r["method"] == "lofit")["selection"]
    assert len(lofit["vector_norms_top"]) == k and lofit["vector_norms_top"] == sorted(
        lofit["vector_norms_top"], reverse=True
    )
    md = (tmp / "docs" / "comparison.md").read_text()
    assert f"K={iti['chosen']['k']}, alpha={iti['chosen']['alpha']:g}" in md
    assert (
        saved["command"] in md
        and "| random_heads (mean ± std, 2 seeds) |" in md
        and "| lora |" in md
        and "| lofit |" in md
    )


def test_rerun_skips_finished_methods(compared, capsys):
    tmp, args, result = compared
    stamps = {p: p.stat().st_mtime_ns for p in (tmp / "runs").rglob("*.json")}
    capsys.readouterr()
    again = compare.main(args)
    assert capsys.readouterr().out.count("done already") == 12  # every planned run
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["models"] == result["models"]
    with pytest.raises(
        ValueError, match=r"zero_shot\.json: computed with settings"
    ):  # other budget: not reused
        compare.main([*args, "--steps", "3"])
    with pytest.raises(ValueError, match="cached discovery is 'ablation' on 4 pairs"):
        compare.main([*args, "--discovery_pairs", "5"])


def test_rows_need_the_same_examples_as_zero_shot():
    def run(method, outcomes):
        return {
            "method": method,
            "seed": None,
            "trainable_params": 0,
            "train_steps": 0,
            "seconds": 0.0,
            "outcomes": [
                {"key": k, "level": "object", "group": "Animal", "zero_shot": z, "correct": c}
                for k, z, c in outcomes
            ],
        }

    zero = run("zero_shot", [(1, True, True), (2, False, False)])
    with pytest.raises(ValueError, match="different examples than the zero-shot run"):
        compare.model_rows([zero, run("ia3", [(1, True, True), (3, False, True)])])
    with pytest.raises(ValueError, match="frozen-model answers differ from the zero-shot run on 1 examples"):
        compare.model_rows([zero, run("ia3", [(1, False, True), (2, False, True)])])
    with pytest.raises(ValueError, match="needs the zero_shot run"):
        compare.model_rows([run("ia3", [(1, True, True)])])
    rows = compare.model_rows([zero, run("lora", [(1, True, False), (2, False, True)])])
    assert rows[1]["method_only"] == 1 and rows[1]["zero_shot_only"] == 1 and rows[1]["p_value"] == 1.0
