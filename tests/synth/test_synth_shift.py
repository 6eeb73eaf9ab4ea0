"""The pretraining/benchmark shift (`vseam_pl.synth.shift`): the control stream is today's stream bit for bit, and the
realistic shift has the answer prior, themes and salience skew it claims."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from functools import cache

import pytest

from vseam_pl.synth import Scene, SceneObject, SceneWorld
from vseam_pl.synth.shift import (
    IID,
    REALISTIC,
    StreamShift,
    cooccurring_absent,
    draw_question,
    salience_of,
    shift_from,
)
from vseam_pl.synth.world import PLACE_PRIORS

WORLD = SceneWorld(64)


@cache
def stream(shift: StreamShift, n: int, seed: int = 0) -> tuple:
    rng, out = random.Random(seed), []
    for _ in range(n):
        scene = WORLD.sample_scene(rng, theme=shift.theme)
        out.append((scene, draw_question(WORLD.qa_pairs(scene, rng), scene, rng, shift, 2.0)))
    return tuple(out)


def test_the_control_stream_is_the_pre_shift_stream_bit_for_bit():
    """The i.i.d. draw is the one-call draw the shipped weights were trained on (written out here by hand)."""
    old_rng, new = random.Random(7), stream(IID, 200, seed=7)
    for scene, qa in new:
        old_scene = WORLD.sample_scene(old_rng)
        pairs = WORLD.qa_pairs(old_scene, old_rng)
        weights = [2.0 if q.answer in ("yes", "no") else 1.0 for q in pairs]
        assert (scene, qa) == (old_scene, old_rng.choices(pairs, weights=weights)[0])


def test_realistic_stream_answers_yes_about_seventy_percent_of_the_time():
    answers = Counter(qa.answer for _, qa in stream(REALISTIC, 1500) if qa.answer in ("yes", "no"))
    iid = Counter(qa.answer for _, qa in stream(IID, 1500) if qa.answer in ("yes", "no"))
    assert answers["yes"] / sum(answers.values()) == pytest.approx(0.70, abs=0.04)
    assert iid["yes"] / sum(iid.values()) == pytest.approx(0.5, abs=0.05)


def test_themed_scenes_make_the_places_typical_class_more_common():
    def typical_share(theme: float) -> float:
        rng, hits, total = random.Random(1), 0, 0
        for _ in range(1000):
            scene = WORLD.sample_scene(rng, theme=theme)
            top = max(PLACE_PRIORS[scene.place].values())
            hits += sum(PLACE_PRIORS[scene.place][o.name] == top for o in scene.objects)
            total += len(scene.objects)
        return hits / total

    assert typical_share(REALISTIC.theme) > typical_share(1.0) + 0.15


def test_salience_skews_questions_toward_large_objects():
    def large_share(shift: StreamShift) -> float:
        sizes = Counter(salience_of(qa, scene) for scene, qa in stream(shift, 1500))
        return sizes["large"] / (sizes["large"] + sizes["small"])

    assert large_share(REALISTIC) > large_share(IID) + 0.1


def test_salience_reads_the_sizes_of_the_named_present_objects():
    rng = random.Random(3)
    for _ in range(100):
        scene = WORLD.sample_scene(rng)
        for qa in WORLD.qa_pairs(scene, rng):
            named = {o.size for o in scene.objects if o.name in qa.question.lower().replace("?", " ").split()}
            expected = None if not named else ("small" if "small" in named else "large")
            if not any(
                w.endswith("s") for w in qa.question.split()
            ):  # plurals are checked by the stream tests
                assert salience_of(qa, scene) == expected, qa.question


@pytest.mark.parametrize("bad", [{"yes_share": 1.0}, {"salience": 0.0}, {"theme": 0.0}, {"yes_share": -0.1}])
def test_a_shift_outside_its_range_is_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        StreamShift(**bad)


def test_named_shifts_and_overrides():
    assert shift_from("iid") == IID
    assert shift_from("realistic", yes_share=0.6).yes_share == 0.6
    assert shift_from("realistic", theme=None) == REALISTIC
    with pytest.raises(ValueError, match="unknown stream shift 'skewed'"):
        shift_from("skewed")


def test_the_cooccurring_negative_is_the_places_most_typical_absent_class():
    boat = SceneObject("boat", "red", "wood", "large", 4, 4, 24, 24)
    water = Scene(place="water", objects=(boat,), image_size=64)
    assert cooccurring_absent(water) == "fish"  # water: boat 4, fish 4 (present boat excluded), bird 3
    road = Scene(place="road", objects=(replace(boat, name="car"), replace(boat, name="bus")), image_size=64)
    assert cooccurring_absent(road) == "bike"  # road: car 4, bus 3, bike 3 -> bike
