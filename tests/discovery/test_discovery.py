"""Head discovery: batched exact methods vs hand-written per-head loops, planted heads, resume, outputs, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from tests.helpers import make_images
from vseam_pl.discovery import (
    DiscoveryConfig,
    DiscoveryInterrupted,
    HeadScores,
    apply_init_scales,
    init_scales_from_scores,
    jaccard,
    overlap_analysis,
    run_discovery,
)
from vseam_pl.discovery.data import CandidateIndex
from vseam_pl.discovery.patching import answer_indices, encode_pair
from vseam_pl.encoding import encode
from vseam_pl.interventions import capture, hooks, run_rows
from vseam_pl.interventions.ablation import ablate_heads, head_output_means
from vseam_pl.interventions.modulation import HeadModulation
from vseam_pl.pairs import PairError, edited_index, images_of, load_pairs, prepare_pairs, write_pairs
from vseam_pl.records import ImagePair
from vseam_pl.scoring import forward_logits, predict
from vseam_pl.vlm import load_vlm

QUESTIONS = [
    ("is there a dog in the image?", "Animal"),
    ("is the car red?", "Color"),
    ("is the cat left of the bus?", "Spatial"),
    ("is there a bird in the image?", "Animal"),
]


def write_pair_manifest(root: Path, n: int = 6, seed: int = 0) -> Path:
    """n yes/no pairs over random images, three categories (object / attribute / relation levels)."""
    root.mkdir(parents=True, exist_ok=True)
    images = make_images(2 * n, seed=seed)
    pairs = []
    for i in range(n):
        question, category = QUESTIONS[i % len(QUESTIONS)]
        images[2 * i].save(root / f"clean{i}.png")
        images[2 * i + 1].save(root / f"edited{i}.png")
        answer = "yes" if i % 2 == 0 else "no"
        pairs.append(
            ImagePair(
                f"p{i}",
                question,
                str(root / f"clean{i}.png"),
                str(root / f"edited{i}.png"),
                answer,
                "no" if answer == "yes" else "yes",
                None,
                category,
                ("yes", "no"),
            )
        )
    return write_pairs(root / "pairs.jsonl", pairs)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread than on shared, contended cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_pair_manifest(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def vlm(tiny_llava_dir):
    return load_vlm(str(tiny_llava_dir))


@pytest.fixture(scope="module")
def pairs(manifest):
    return load_pairs(manifest)


@contextmanager
def planted(vlm, layer: int, head: int, factor: float) -> Iterator[None]:
    """Multiply one head's o_proj columns by `factor` (negative: harmful, 0: silenced), restored afterwards."""
    w = vlm.o_proj(layer).weight
    cols = slice(head * vlm.head_dim, (head + 1) * vlm.head_dim)
    saved = w[:, cols].clone()
    with torch.no_grad():
        w[:, cols] *= factor
    try:
        yield
    finally:
        with torch.no_grad():
            w[:, cols] = saved


def p_correct(vlm, item, image: str = "clean") -> torch.Tensor:
    """Full-model forward (no replay), candidate-normalised probability of the clean answer."""
    enc = encode(vlm, [item.prompt], images_of([item], image))
    logits = forward_logits(vlm, enc)[:, -1]
    return CandidateIndex.of([item]).logprobs(logits)[0, item.correct].exp()


# -- exactness ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["mean_others", "zero", "dataset_mean"])
@torch.no_grad()
def test_batched_ablation_equals_per_head_loop(vlm, pairs, mode):
    items = prepare_pairs(vlm, pairs[:2])
    enc = encode(vlm, [it.prompt for it in items], images_of(items, "clean"))
    means = head_output_means(vlm, [enc.inputs]) if mode == "dataset_mean" else None
    ref = torch.zeros(vlm.num_layers, vlm.num_heads, dtype=torch.float64)
    for item in items:
        base = p_correct(vlm, item)
        for layer in range(vlm.num_layers):
            for head in range(vlm.num_heads):
                with ablate_heads(vlm, [(layer, head)], mode, means):
                    ref[layer, head] += float(base - p_correct(vlm, item))
    ref /= len(items)
    got = run_discovery(
        vlm, pairs[:2], DiscoveryConfig(method="ablation", ablation_mode=mode, batch_size=7, pair_batch=2)
    ).scores
    assert ref.abs().max() > 1e-4  # the heads do something, so equality is informative
    torch.testing.assert_close(got.signed(), ref.float(), atol=1e-5, rtol=0)
    correct = torch.tensor([bool(p_correct(vlm, it) > 0.5) for it in items])
    assert got.counts["all"]["positive"]["n"] == int(correct.sum())
    assert got.counts["all"]["negative"]["n"] == int((~correct).sum())


@torch.no_grad()
def test_batched_patching_equals_per_head_loop(vlm, pairs):
    items = prepare_pairs(vlm, pairs[:2])
    clean, edited = answer_indices(items)
    enc_c, enc_e = encode_pair(vlm, items)
    cands = CandidateIndex.of(items)

    def ld(enc) -> torch.Tensor:
        lp = cands.logprobs(forward_logits(vlm, enc)[torch.arange(2), enc.last_prompt_positions()])
        return (lp.gather(1, clean[:, None]) - lp.gather(1, edited[:, None])).squeeze(1).double()

    cache: dict[int, torch.Tensor] = {}
    with hooks(vlm, "head", lambda layer, z: cache.__setitem__(layer, z.clone())):
        ld_c = ld(enc_c)
    ld_e = ld(enc_e)
    num = torch.zeros(vlm.num_layers, vlm.num_heads, dtype=torch.float64)
    for layer in range(vlm.num_layers):
        for head in range(vlm.num_heads):

            def patch(lay: int, z: torch.Tensor, head=head) -> torch.Tensor:
                z = z.clone()
                z[:, :, head] = cache[lay][:, :, head]
                return z

            with hooks(vlm, "head", patch, [layer]):
                num[layer, head] = (ld(enc_e) - ld_e).sum()
    ref = num / (ld_c - ld_e).sum()
    got = run_discovery(vlm, pairs[:2], DiscoveryConfig(method="patching", batch_size=5)).scores
    torch.testing.assert_close(got.signed(), ref.float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("model_dir", ["tiny_llava_dir", "tiny_instructblip_dir", "tiny_llava_gqa_dir"])
@torch.no_grad()
def test_decoder_replay_reproduces_model_logits(request, manifest, model_dir):
    model = load_vlm(str(request.getfixturevalue(model_dir)))
    items = prepare_pairs(model, load_pairs(manifest, limit=3))
    run = capture(
        model, encode(model, [it.prompt for it in items], images_of(items, "clean")), residuals=True
    )
    for start in range(model.num_layers):
        torch.testing.assert_close(
            run_rows(model, run, torch.tensor([2, 0, 1]), start), run.logits[[2, 0, 1]], atol=1e-4, rtol=1e-4
        )


@torch.no_grad()
def test_instructblip_patching_equals_hook_loop_on_one_head(tiny_instructblip_dir, pairs):
    """InstructBLIP (query tokens prepended by the processor): batched patching of every head vs a direct hook."""
    model = load_vlm(str(tiny_instructblip_dir))
    items = prepare_pairs(model, pairs[:2])
    got = run_discovery(model, pairs[:2], DiscoveryConfig(method="patching", batch_size=6)).scores.signed()
    clean, edited = answer_indices(items)
    enc_c, enc_e = encode_pair(model, items)
    cands = CandidateIndex.of(items)
    cache: dict[int, torch.Tensor] = {}

    def ld(enc) -> torch.Tensor:
        lp = cands.logprobs(forward_logits(model, enc)[torch.arange(2), enc.last_prompt_positions()])
        return (lp.gather(1, clean[:, None]) - lp.gather(1, edited[:, None])).squeeze(1).double()

    with hooks(model, "head", lambda layer, z: cache.__setitem__(layer, z.clone())):
        ld_c = ld(enc_c)
    ld_e = ld(enc_e)
    layer, head = 2, 1

    def patch(lay: int, z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z[:, :, head] = cache[lay][:, :, head]
        return z

    with hooks(model, "head", patch, [layer]):
        expected = float((ld(enc_e) - ld_e).sum() / (ld_c - ld_e).sum())
    assert float(got[layer, head]) == pytest.approx(expected, abs=1e-4, rel=1e-4)
    assert got.abs().max() > 0


def test_attribution_ranks_like_patching(vlm, pairs):
    exact = run_discovery(vlm, pairs, DiscoveryConfig(method="patching", batch_size=16)).scores.signed()
    approx = run_discovery(vlm, pairs, DiscoveryConfig(method="attribution")).scores.signed()
    assert spearmanr(exact.flatten(), approx.flatten()).statistic >= 0.8


def test_edited_to_clean_direction_is_the_noising_effect(vlm, pairs):
    """Both directions estimate the same heads' role: on this model their rankings agree broadly."""
    fwd = run_discovery(vlm, pairs, DiscoveryConfig(method="patching", batch_size=16)).scores.signed()
    back = run_discovery(
        vlm, pairs, DiscoveryConfig(method="patching", batch_size=16, direction="edited_to_clean")
    ).scores.signed()
    assert not torch.allclose(fwd, back)
    assert spearmanr(fwd.flatten(), back.flatten()).statistic > 0.5


# -- planted heads -------------------------------------------------------------------------------------------------
EMBEDDED = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny-llava"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The trained tiny LLaVA and fresh synthetic-world pairs (in distribution: it was trained on that world)."""
    if not (EMBEDDED / "model.safetensors").exists():
        pytest.skip(f"{EMBEDDED} is not there yet (the lead's trained model)")
    from vseam_pl.synth.writers import generate_benchmarks

    root = generate_benchmarks(tmp_path_factory.mktemp("synth"), seed=123, n_train=1, n_val=1, n_test=8)
    return load_vlm(str(EMBEDDED)), load_pairs(root / "test" / "pairs" / "pairs.jsonl", limit=8)


@pytest.fixture(params=["random", pytest.param("embedded", marks=pytest.mark.slow)])
def model_and_pairs(request):
    if request.param == "random":
        return request.getfixturevalue("vlm"), request.getfixturevalue("pairs")
    return request.getfixturevalue("embedded")


@pytest.mark.parametrize("mode", ["mean_others", "zero"])
def test_ablation_finds_planted_harmful_and_silenced_heads(model_and_pairs, mode):
    """Harmful = the most helpful head with its output negated and amplified: it now pushes answers the wrong way,
    so on the examples the model gets wrong removing it raises p(correct) the most (the `negative` statistic that
    ranks negative heads). Silenced = its o_proj columns zeroed: ablating it changes nothing."""
    vlm, pairs = model_and_pairs
    cfg = DiscoveryConfig(method="ablation", ablation_mode=mode, batch_size=32, pair_batch=4)
    before = run_discovery(vlm, pairs, cfg).scores
    (hl, hh, _), (sl, sh, _) = before.positive_heads("all", 2)
    with planted(vlm, hl, hh, -4.0), planted(vlm, sl, sh, 0.0):
        after = run_discovery(vlm, pairs, cfg).scores
    assert int(after.get("all", "negative").argmin()) == hl * vlm.num_heads + hh
    assert after.negative_heads("all", 1)[0][:2] == (hl, hh)
    assert abs(float(after.signed()[sl, sh])) < 1e-6 < float(after.signed().abs().max())


@pytest.mark.parametrize("method", ["patching", "attribution"])
def test_patching_finds_planted_harmful_and_silenced_heads(model_and_pairs, method):
    """For patching, a head is harmful when putting its clean output into the edited run moves the answer *against*
    the model's own clean-vs-edited effect. To make that well defined whatever the weights, the model is first
    reduced to heads with direct effects only: every head of the earlier layers and every last-layer head with a
    negative score is silenced (o_proj columns zeroed; at the answer position image information only arrives through
    heads, so the remaining last-layer heads carry the whole edit effect, nearly additively). Then one helpful head
    with score s < 1/2 is negated (and amplified by 2 when 3 s < 0.8, so the overall effect keeps its sign): it must
    come out as the most negative head, every silenced head at 0."""
    vlm, pairs = model_and_pairs
    cfg = DiscoveryConfig(method=method, batch_size=32, pair_batch=4)
    last = vlm.num_layers - 1
    silenced = [(layer, head) for layer in range(last) for head in range(vlm.num_heads)]
    with ExitStack() as stack:
        for layer, head in silenced:
            stack.enter_context(planted(vlm, layer, head, 0.0))
        for _ in range(
            3
        ):  # silencing changes the others' scores a little: repeat until no last-layer head is < 0
            before = run_discovery(vlm, pairs, cfg).scores
            negative = [
                (last, h)
                for h in range(vlm.num_heads)
                if (last, h) not in silenced and float(before.signed()[last, h]) < 0
            ]
            if not negative:
                break
            for layer, head in negative:
                stack.enter_context(planted(vlm, layer, head, 0.0))
            silenced += negative
        helpful = sorted(
            (float(before.signed()[last, h]), h) for h in range(vlm.num_heads) if (last, h) not in silenced
        )
        assert len(helpful) >= 2 and all(v > 0 for v, _ in helpful) and helpful[0][0] < 0.5
        share, hh = helpful[0]
        with planted(vlm, last, hh, -2.0 if 3 * share < 0.8 else -1.0):
            after = run_discovery(vlm, pairs, cfg).scores
    assert after.negative_heads("all", 1)[0][:2] == (last, hh)
    assert int(after.signed().argmin()) == last * vlm.num_heads + hh
    assert all(abs(float(after.signed()[layer, head])) < 1e-6 for layer, head in silenced)
    assert all(float(after.signed()[last, h]) > 0 for _, h in helpful[1:])


# -- resume, outputs -----------------------------------------------------------------------------------------------
def test_resume_after_interruption_gives_identical_scores(vlm, pairs, tmp_path):
    cfg = DiscoveryConfig(method="ablation", batch_size=32, pair_batch=2)
    full = run_discovery(vlm, pairs, cfg, out_dir=tmp_path / "full", plots=False)
    assert full.chunks_computed == 3
    with pytest.raises(DiscoveryInterrupted):
        run_discovery(vlm, pairs, cfg, out_dir=tmp_path / "run", stop_after_chunks=2, plots=False)
    assert (tmp_path / "run" / "partial" / "rank0-of-1.pt").exists()
    assert not (tmp_path / "run" / "head_scores.safetensors").exists()
    resumed = run_discovery(vlm, pairs, cfg, out_dir=tmp_path / "run", resume=True, plots=False)
    assert resumed.chunks_computed == 1  # the two finished chunks were not recomputed
    for g in full.scores.groups:
        for stat in ("signed", "positive", "negative"):
            assert torch.equal(
                full.scores.get(g, stat).nan_to_num(7.0), resumed.scores.get(g, stat).nan_to_num(7.0)
            )
    with pytest.raises(ValueError, match="partial results were computed from other inputs"):
        run_discovery(vlm, pairs[:5], cfg, out_dir=tmp_path / "run", resume=True)


def test_resume_refuses_partial_results_of_changed_pairs(vlm, tmp_path):
    """Same pair ids, other inputs: the partial results are not reused, and the error says which pair changed."""
    from dataclasses import replace

    pairs = load_pairs(write_pair_manifest(tmp_path / "pairs", n=4))
    cfg = DiscoveryConfig(method="ablation", batch_size=32, pair_batch=2)
    out = tmp_path / "run"
    with pytest.raises(DiscoveryInterrupted):
        run_discovery(vlm, pairs, cfg, out_dir=out, stop_after_chunks=1, plots=False)
    swapped = [
        replace(p, clean_image=p.edited_image, edited_image=p.clean_image, answer=p.edited_answer,
                edited_answer=p.answer)
        for p in pairs
    ]  # fmt: skip
    with pytest.raises(ValueError, match="pair 'p0' changed"):
        run_discovery(vlm, swapped, cfg, out_dir=out, resume=True, plots=False)
    edited = Path(pairs[3].edited_image)
    saved = edited.read_bytes()
    make_images(1, seed=9)[0].save(edited)  # the same paths and fields, other pixels
    with pytest.raises(ValueError, match="pair 'p3' changed .*image bytes"):
        run_discovery(vlm, pairs, cfg, out_dir=out, resume=True, plots=False)
    edited.write_bytes(saved)
    assert run_discovery(vlm, pairs, cfg, out_dir=out, resume=True, plots=False).chunks_computed == 1

    state = out / "partial" / "rank0-of-1.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match=f"{state}: unreadable partial discovery results"):
        run_discovery(vlm, pairs, cfg, out_dir=out, resume=True, plots=False)


def test_outputs_on_disk(vlm, pairs, tmp_path):
    result = run_discovery(vlm, pairs, DiscoveryConfig(method="attribution", top_k=3), out_dir=tmp_path)
    loaded = HeadScores.load(tmp_path)
    assert loaded.method == "attribution" and loaded.groups == result.scores.groups
    assert loaded.groups == [
        "all",
        "level:object",
        "level:attribute",
        "level:relation",
        "category:Animal",
        "category:Color",
        "category:Spatial",
    ]
    for g in loaded.groups:
        torch.testing.assert_close(loaded.signed(g), result.scores.signed(g))
    summary = json.loads((tmp_path / "head_scores.json").read_text())
    assert summary["counts"]["level:object"]["signed"]["n"] == 3  # 3 Animal questions of 6
    pos = summary["heads"]["all"]["positive"]
    assert 0 < len(pos) <= 3 and all(s > 0 for _, _, s in pos) and pos == sorted(pos, key=lambda x: -x[2])
    neg = summary["heads"]["all"]["negative"]
    assert all(s < 0 for _, _, s in neg) and neg == sorted(neg, key=lambda x: x[2])
    profiles = json.loads((tmp_path / "layer_profiles.json").read_text())
    assert len(profiles["all"]["positive_sum"]) == vlm.num_layers
    overlap = json.loads((tmp_path / "overlap.json").read_text())
    assert len(overlap["positive"]["matrix"]) == 6 and overlap["positive"]["matrix"][0][0] == 1.0
    for name in ("heatmap_all_signed", "heatmap_level_object_signed", "layer_profiles", "overlap_negative"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as im:
            assert im.size[0] > 100


def test_vseam_filter_counts_match_predict(vlm, pairs):
    result = run_discovery(vlm, pairs, DiscoveryConfig(method="attribution", filter=True))
    images_c = [Image.open(p.clean_image).convert("RGB") for p in pairs]
    images_e = [Image.open(p.edited_image).convert("RGB") for p in pairs]
    qs, cands = [p.question for p in pairs], [p.candidates for p in pairs]
    pred_c, pred_e = predict(vlm, qs, images_c, cands), predict(vlm, qs, images_e, cands)
    right = [c == p.answer for c, p in zip(pred_c, pairs, strict=True)]
    wrong = [e != p.edited_answer for e, p in zip(pred_e, pairs, strict=True)]
    kept = sum(r and w for r, w in zip(right, wrong, strict=True))
    assert result.filter_report == {
        "total": 6,
        "right_on_clean": sum(right),
        "wrong_on_edited": sum(wrong),
        "kept": kept,
    }
    assert result.scores.counts["all"]["signed"]["n"] == kept


# -- scales, overlap ------------------------------------------------------------------------------------------------
def test_init_scales_rules_and_in_place_write():
    score = torch.tensor([[0.2, -0.4], [0.0, 0.1]])
    closed = init_scales_from_scores(score, "closed_form", lam=1.0, clip=(0.7, 1.3), eps=0.0)
    torch.testing.assert_close(closed, torch.tensor([[1.3, 0.7], [1.0, 1.25]]))
    raw = init_scales_from_scores(score, "closed_form", lam=2.0, clip=(0.0, 10.0), normalize=False)
    torch.testing.assert_close(raw, 1 + 2 * score)
    topk = init_scales_from_scores(score, "topk", k=1, up=1.5, down=0.5)
    torch.testing.assert_close(topk, torch.tensor([[1.5, 0.5], [1.0, 1.0]]))
    mod = HeadModulation(2, 2, 4)
    param = mod.scales
    apply_init_scales(mod, topk)
    assert mod.scales is param and torch.equal(mod.scales.data, topk)
    with pytest.raises(ValueError, match="shape"):
        apply_init_scales(mod, torch.ones(3, 2))
    with pytest.raises(ValueError, match="unknown init rule"):
        init_scales_from_scores(score, "bogus")


def test_overlap_analysis_within_and_across_levels():
    z = torch.zeros(2, 4)

    def grid(pos: list[int], neg: list[int]) -> torch.Tensor:
        s = z.clone().flatten()
        s[pos], s[neg] = 1.0, -1.0
        return s.view(2, 4)

    scores = HeadScores(
        "patching",
        {
            "level:object": {"signed": grid([0, 1], [7])},
            "level:attribute": {"signed": grid([2, 3], [7])},
            "category:Animal": {"signed": grid([0, 1], [7])},
            "category:Shape": {"signed": grid([0, 4], [7])},
            "category:Color": {"signed": grid([2, 3], [7])},
        },
    )
    a = overlap_analysis(scores, k=2)
    assert a["groups"] == [
        "level:object",
        "level:attribute",
        "category:Animal",
        "category:Shape",
        "category:Color",
    ]
    assert a["positive"]["within_level_category_mean"] == pytest.approx(
        jaccard({0, 1}, {0, 4})
    )  # Animal vs Shape
    assert a["positive"]["across_level_category_mean"] == pytest.approx(0.0)
    assert a["negative"]["across_level_category_mean"] == pytest.approx(1.0)
    assert a["positive"]["matrix"][0][2] == 1.0 and a["positive"]["matrix"][0][1] == 0.0


# -- errors and CLI ------------------------------------------------------------------------------------------------
def test_bad_pairs_raise_clear_errors(vlm, manifest, tmp_path):
    lines = manifest.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["answer"] = "maybe"
    (tmp_path / "pairs.jsonl").write_text("\n".join([lines[0], json.dumps(bad)]) + "\n")
    with pytest.raises(PairError, match=r"pairs.jsonl:2: field 'answer' 'maybe' is not one of"):
        prepare_pairs(vlm, load_pairs(tmp_path))
    missing = json.loads(lines[0])
    missing["edited_image"] = "nowhere.png"
    (tmp_path / "pairs.jsonl").write_text(json.dumps(missing) + "\n")
    with pytest.raises(PairError, match=r"pairs.jsonl:1: field 'edited_image': image file not found"):
        run_discovery(vlm, load_pairs(tmp_path), DiscoveryConfig(method="patching"))
    with pytest.raises(ValueError, match="unknown discovery method"):
        run_discovery(vlm, load_pairs(manifest), DiscoveryConfig(method="lesion"))
    with pytest.raises(ValueError, match="unknown level"):
        load_pairs(manifest, levels=["scene"])


def test_cli_writes_outputs_and_init_scales(tiny_llava_dir, manifest, tmp_path, capsys):
    from vseam_pl.discover import main

    out = tmp_path / "run"
    code = main(
        [
            "--model",
            str(tiny_llava_dir),
            "--pairs",
            str(manifest),
            "--method",
            "patching",
            "--out",
            str(out),
            "--levels",
            "object",
            "relation",
            "--top-k",
            "3",
            "--batch-size",
            "16",
            "--limit",
            "4",
            "--init-scales",
            "topk",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == "patching" and summary["pairs"] == 4 and len(summary["positive"]) <= 3
    scores = HeadScores.load(out)
    assert [g for g in scores.groups if g.startswith("level:")] == ["level:object", "level:relation"]
    mod = HeadModulation.load(out / "init_scales.safetensors")
    assert set(mod.scales.unique().tolist()) <= {0.5, 1.0, 1.5} and (mod.scales == 1.5).sum() == len(
        summary["positive"]
    )
    assert (
        main(["--model", str(tiny_llava_dir), "--pairs", str(tmp_path / "none.jsonl"), "--out", str(out)])
        == 2
    )
    assert "no pairs manifest" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "no-model"), "--pairs", str(manifest), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("correct", "edited", "n", "expected"),
    [(0, None, 2, 1), (1, None, 2, 0), (0, 2, 3, 2), (0, None, 3, None), (1, 1, 2, None), (0, 0, 3, None)],
)
def test_edited_index_is_the_known_or_the_other_of_two(correct, edited, n, expected):
    assert edited_index(correct, edited, n) == expected
