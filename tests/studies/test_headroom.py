"""`vseam headroom` (`vseam_pl.studies.headroom`): the readout statistics against hand-computed values, and a run on a
tiny random model whose accuracy must equal evaluation's own answers on the same questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vseam_pl.studies.headroom import (
    best_threshold_accuracy,
    main,
    probe_auroc,
    readout_stats,
    yes_no_index,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_readout_stats_match_hand_computed_values():
    margins = torch.tensor([-2.0, -1.0, 0.5, 1.0, 3.0])
    is_yes = torch.tensor([False, True, False, True, True])
    stats = readout_stats(margins, is_yes)
    assert stats["n"] == 5
    assert stats["accuracy"] == pytest.approx(3 / 5)  # says yes to 0.5, 1, 3; wrong on -1 and 0.5
    assert stats["yes_rate"] == pytest.approx(3 / 5)
    assert stats["truth_yes_rate"] == pytest.approx(3 / 5)
    assert stats["auroc"] == pytest.approx(5 / 6)  # of the 6 (yes, no) pairs only (-1, 0.5) is misordered
    assert stats["best_threshold_accuracy"] == pytest.approx(4 / 5)  # cut at -2 (or at 0.5)


def test_best_threshold_never_splits_equal_margins():
    # a cut between the two zeros would score 3/3; no threshold can separate equal margins
    assert best_threshold_accuracy(
        torch.tensor([0.0, 0.0, 1.0]), torch.tensor([False, True, True])
    ) == pytest.approx(2 / 3)
    # all "yes" (threshold below every margin) is a candidate too
    assert best_threshold_accuracy(torch.tensor([1.0, 2.0]), torch.tensor([True, True])) == 1.0


def test_auroc_is_undefined_with_one_answer_only():
    assert readout_stats(torch.tensor([0.3, -1.0]), torch.tensor([True, True]))["auroc"] is None


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        (("Yes", "No"), (0, 1)),
        (("no", "yes"), (1, 0)),
        (("yes", "no", "maybe"), None),
        (("red", "blue"), None),
        (None, None),
    ],
)
def test_only_exact_yes_no_sets_are_scored(candidates, expected):
    assert yes_no_index(candidates) == expected


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from vseam_pl.synth import generate_benchmarks

    return generate_benchmarks(
        tmp_path_factory.mktemp("world") / "synth", seed=3, n_train=8, n_val=4, n_test=12
    )


def test_headroom_run_agrees_with_evaluation_answers(tiny_llava_dir, tiny_world, tmp_path):
    from vseam_pl.data import build_datamodule
    from vseam_pl.scoring import predict
    from vseam_pl.vlm import load_vlm

    rows = main(
        ["--models", str(tiny_llava_dir), "--data_root", str(tiny_world), "--out", str(tmp_path), "--probe"]
    )
    assert all(r["probe_auroc"] is None or 0 <= r["probe_auroc"] <= 1 for r in rows)
    assert any(r["probe_layer"] is not None for r in rows)
    saved = json.loads((tmp_path / "headroom.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)) and saved["split"] == "test"
    assert "| gqa | object |" in (tmp_path / "headroom.md").read_text()
    assert "probe AUROC (layer)" in (tmp_path / "headroom.md").read_text()

    vlm = load_vlm(str(tiny_llava_dir), attn_implementation="eager")
    for bench in ("gqa", "pope"):
        dm = build_datamodule(bench, root=str(tiny_world), batch_size=64, num_workers=0)
        dm.setup("test")
        examples = [
            ex for b in dm.test_dataloader() for ex in b.examples if yes_no_index(ex.record.candidates)
        ]
        answers = predict(
            vlm,
            [ex.record.question for ex in examples],
            [ex.image for ex in examples],
            [ex.record.candidates for ex in examples],
        )
        correct = [a.lower() == ex.record.answer.lower() for a, ex in zip(answers, examples, strict=True)]
        said_yes = [a.lower() == "yes" for a in answers]
        overall = next(r for r in rows if r["benchmark"] == bench and r["group"] == "all")
        assert overall["n"] == len(examples) > 0
        assert overall["accuracy"] == pytest.approx(sum(correct) / len(correct))
        assert overall["yes_rate"] == pytest.approx(sum(said_yes) / len(said_yes))
        groups = [r for r in rows if r["benchmark"] == bench and r["group"] != "all"]
        assert sum(r["n"] for r in groups) == len(examples)
        assert all(r["accuracy"] <= r["best_threshold_accuracy"] for r in rows)


def test_probe_finds_a_planted_direction_and_not_noise():
    g = torch.Generator().manual_seed(0)

    def split(n: int, signal: float) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.rand(n, generator=g) < 0.5
        x = torch.randn(n, 3, 8, generator=g)  # 3 layers, 8 features
        x[:, 2, 5] += signal * (y.float() * 2 - 1)  # the answer written along one direction of layer 2 only
        return x, y

    found = probe_auroc(split(200, 3.0), split(100, 3.0), split(200, 3.0))
    assert found["probe_layer"] == 2 and found["probe_auroc"] > 0.95
    noise = probe_auroc(split(200, 0.0), split(100, 0.0), split(200, 0.0))
    assert 0.35 < noise["probe_auroc"] < 0.65


def test_residuals_are_the_decoder_layer_outputs_at_the_last_prompt_token(tiny_llava_dir):
    from tests.helpers import make_images
    from vseam_pl.encoding import encode
    from vseam_pl.interventions import last_prompt_activations
    from vseam_pl.prompts import build_prompts
    from vseam_pl.vlm import load_vlm

    vlm = load_vlm(str(tiny_llava_dir), attn_implementation="eager")
    prompts = build_prompts(
        vlm, ["Is there a dog?", "Is the cat on the left of the very large red box?"], None
    )
    images = make_images(2, seed=4)
    enc = encode(vlm, prompts, images)
    got = last_prompt_activations(vlm, enc, "resid")
    with torch.no_grad():  # reference: transformers' own hidden states (index 0 is the embeddings)
        out = vlm.model(**enc.to(vlm.device, vlm.model.dtype).inputs, output_hidden_states=True)
    pos = enc.last_prompt_positions()
    want = torch.stack([h[torch.arange(2), pos] for h in out.hidden_states[1:]], dim=1)
    assert got.shape == (2, vlm.num_layers, want.shape[-1])
    # the last hidden state is after the final norm in some families; compare the layers before it
    torch.testing.assert_close(got[:, :-1], want[:, :-1].float(), atol=1e-5, rtol=1e-5)
