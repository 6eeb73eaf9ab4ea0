"""Measure the pretraining stream's shift (docs/embedded-models.md): "yes" share of yes/no answers, share of objects
of their place's two most typical classes, and share of questions about large objects, i.i.d. vs realistic.

    python scripts/shift_stats.py --n 4000
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from vseam_pl.synth import SceneWorld
from vseam_pl.synth.shift import SHIFTS, draw_question, salience_of
from vseam_pl.synth.world import PLACE_PRIORS


def stream_stats(name: str, n: int, seed: int = 0) -> dict[str, float]:
    shift, world, rng = SHIFTS[name], SceneWorld(64), random.Random(seed)
    answers, sizes, typical, objects = Counter(), Counter(), 0, 0
    for _ in range(n):
        scene = world.sample_scene(rng, theme=shift.theme)
        prior = PLACE_PRIORS[scene.place]
        top2 = sorted(prior, key=lambda c: -prior[c])[:2]
        typical += sum(o.name in top2 for o in scene.objects)
        objects += len(scene.objects)
        qa = draw_question(world.qa_pairs(scene, rng), scene, rng, shift, 2.0)
        if qa.answer in ("yes", "no"):
            answers[qa.answer] += 1
        if (size := salience_of(qa, scene)) is not None:
            sizes[size] += 1
    return {
        "yes_share": answers["yes"] / sum(answers.values()),
        "typical_object_share": typical / objects,
        "large_object_question_share": sizes["large"] / sum(sizes.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4000, help="examples drawn per stream")
    args = p.parse_args()
    for name in ("iid", "realistic"):
        stats = stream_stats(name, args.n)
        print(name, " ".join(f"{k} {100 * v:.1f}%" for k, v in stats.items()))


if __name__ == "__main__":
    main()
