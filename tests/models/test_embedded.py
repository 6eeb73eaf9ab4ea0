"""The shipped tiny VLMs are image-grounded: they answer verification questions above chance and their answers move
with exact object edits. Regression guard for `checkpoints/` (re-trained weights must not fall back to a prior);
point `VSEAM_TEST_CHECKPOINTS` at another folder to check new weights before copying them in.

Measured on the shipped weights (deterministic): POPE-random 0.98 / 0.86, object edits moved the right way 0.96 / 0.88
(tiny-llava / tiny-instructblip). Earlier weights fail: the image-blind ones all four (0.60 / 0.55, 0.48 / 0.50), the
previous, weakly grounded tiny-instructblip both of its own (0.74, 0.65).

The shipped weights end with the instruction stage on the shifted stream (docs/embedded-models.md): they answer
"yes" to every one of 96 balanced attribute questions they cannot ground (1.00 / 1.00), where the i.i.d. models
before that stage said "yes" to 0.27 / 0.69 — the guard that the shipped weights carry the stream's answer prior."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from vseam_pl import load_vlm
from vseam_pl.prompts import build_prompt
from vseam_pl.scoring import score_candidates
from vseam_pl.synth import SceneWorld, ask, ask_and_edit
from vseam_pl.synth.questions import gqa_text, pope_question
from vseam_pl.synth.scene import CLASSES

CHECKPOINTS = Path(
    os.environ.get("VSEAM_TEST_CHECKPOINTS", Path(__file__).resolve().parents[2] / "checkpoints")
)
#: (folder, minimum POPE-random accuracy, minimum share of object edits that move P(yes) the right way)
EMBEDDED = [("tiny-llava", 0.85, 0.85), ("tiny-instructblip", 0.76, 0.8)]
N = 96


def yes_logprob_margin(vlm, questions, images) -> torch.Tensor:
    prompts = [build_prompt(vlm, q) for q in questions]
    scores = score_candidates(vlm, prompts, images, [["yes", "no"]] * len(prompts))
    return torch.stack([s[0] - s[1] for s in scores])


@pytest.fixture(scope="module", params=EMBEDDED, ids=[e[0] for e in EMBEDDED])
def embedded(request, one_thread):
    name, min_pope, min_moved = request.param
    return load_vlm(str(CHECKPOINTS / name)), min_pope, min_moved


def test_embedded_model_answers_pope_above_chance(embedded):
    vlm, min_pope, _ = embedded
    world, rng = SceneWorld(64), random.Random("embedded-pope")
    questions, images, answers = [], [], []
    while len(questions) < N:
        scene = world.sample_scene(rng)
        present = scene.present()
        absent = [c for c in CLASSES if c not in present]
        for name, answer in ((rng.choice(present), "yes"), (rng.choice(absent), "no")):
            questions.append(pope_question(name))
            images.append(world.render(scene))
            answers.append(answer)
    margin = yes_logprob_margin(vlm, questions, images)
    accuracy = sum((m > 0) == (a == "yes") for m, a in zip(margin.tolist(), answers, strict=True)) / len(
        answers
    )
    assert accuracy >= min_pope, f"{vlm.name}: POPE-random accuracy {accuracy:.2f} < {min_pope}"


def test_embedded_model_answers_follow_object_edits(embedded):
    """Swapping the asked-about object flips the true answer; P(yes) must move that way on most pairs."""
    vlm, _, min_moved = embedded
    world, rng = SceneWorld(64), random.Random("embedded-edits")
    questions, clean, edited, answers = [], [], [], []
    while len(questions) < N // 2:
        item = ask_and_edit(
            world.sample_scene(rng), rng.choice(("Animal", "Vehicle")), rng.choice(("yes", "no")), rng
        )
        if item is None or item.edited is None:
            continue
        questions.append(gqa_text(item)[0])
        clean.append(world.render(item.scene))
        edited.append(world.render(item.edited))
        answers.append(item.answer)
    delta = yes_logprob_margin(vlm, questions, edited) - yes_logprob_margin(vlm, questions, clean)
    right_way = [(d < 0) if a == "yes" else (d > 0) for d, a in zip(delta.tolist(), answers, strict=True)]
    share = sum(right_way) / len(right_way)
    assert share >= min_moved, f"{vlm.name}: only {share:.2f} of object edits moved P(yes) the right way"


def test_embedded_model_carries_the_instruction_streams_yes_prior(embedded):
    """On balanced attribute questions (which neither model can ground) the shifted models answer "yes"."""
    vlm = embedded[0]
    world, rng = SceneWorld(64), random.Random("embedded-prior")
    questions, images = [], []
    while len(questions) < N:
        scene = world.sample_scene(rng)
        item = ask(scene, rng.choice(("Color", "Material")), ("yes", "no")[len(questions) % 2], rng)
        if item is None:
            continue
        questions.append(gqa_text(item)[0])
        images.append(world.render(scene))
    yes_rate = float((yes_logprob_margin(vlm, questions, images) > 0).float().mean())
    assert yes_rate >= 0.9, f"{vlm.name}: says yes to {yes_rate:.2f} of balanced attribute questions (< 0.9)"
